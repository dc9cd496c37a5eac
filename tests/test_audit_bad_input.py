"""Audit: bad input never crashes the daemon.

One daemon watches a good device (snmpsim, a real recording) beside devices that misbehave: an
agent answering garbage, one whose answers are cut short, one answering with the wrong request
ids (small UDP responders in this test, the last two relaying snmpsim's real answers), and a device
whose recording has the wrong types for profile fields. Meanwhile a malformed MQTT telemetry
payload and a malformed trap arrive, and a device profile file gets a YAML error before a reload.
Each time the daemon stays up, the good device keeps being polled, and the problem is visible in
/metrics, the API or the reload answer. ``uptimewatch run`` on a read-only or full disk exits 1
with one clear line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.snmpsim import SnmpsimEndpoint, SnmpsimFactory, corpus_recording, free_udp_port
from uptimewatch.app import Daemon, run_daemon

REPO = Path(__file__).resolve().parents[1]
TOPIC = "sites/gw/telemetry"
GOOD_RECORDING = "cetpower"
#: OIDs of UPS-MIB the ups-mib profile reads as numbers and enums
WRONG_TYPES = {
    "1.3.6.1.2.1.33.1.2.3.0": "4|plenty",  # upsEstimatedMinutesRemaining: OCTET STRING
    "1.3.6.1.2.1.33.1.2.4.0": "6|1.3.6.1.4.1.9",  # upsEstimatedChargeRemaining: an OID
    "1.3.6.1.2.1.33.1.2.5.0": "4x|ff00fe",  # upsBatteryVoltage: binary bytes
    "1.3.6.1.2.1.33.1.4.1.0": "4|battery",  # upsOutputSource: a word, not the enum's number
}


# -- a misbehaving SNMP agent ----------------------------------------------------------------------


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the BER element at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return tag, pos + 2 + n, pos + 2 + n + length


def _request_id(message: bytes) -> tuple[int, int]:
    """Where the request-id's value sits in a v1/v2c message: SEQUENCE {version, community, PDU {id ...}}."""
    _tag, pos, _end = _tlv(message, 0)
    _tag, _start, pos = _tlv(message, pos)  # version
    _tag, _start, pos = _tlv(message, pos)  # community
    _tag, pos, _end = _tlv(message, pos)  # the PDU
    _tag, start, end = _tlv(message, pos)
    return start, end


class BadAgent(asyncio.DatagramProtocol):
    """``garbage``: answers every request with junk. ``truncated`` and ``wrong-id`` relay the request
    to a real agent and spoil its answer: cut in half, or with another request id."""

    def __init__(self, mode: str, upstream: tuple[str, int]) -> None:
        self.mode = mode
        self.upstream = upstream
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._relay: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, tuple[str, int]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    async def start_relay(self) -> None:
        agent = self

        class Relay(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                agent.answer(data)

        loop = asyncio.get_running_loop()
        self._relay, _ = await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", 0))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.requests += 1
        if self.mode == "garbage":
            self.transport.sendto(b"\x00\xffnot BER at all\x13\x37", addr)
            self.transport.sendto(b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01", addr)  # a 2 GiB SEQUENCE
            self.transport.sendto(b"\x30\x03\x02\x01", addr)  # ends inside an element
            return
        start, end = _request_id(data)
        self._pending[data[start:end]] = addr
        assert self._relay is not None
        self._relay.sendto(data, self.upstream)

    def answer(self, data: bytes) -> None:
        assert self.transport is not None
        start, end = _request_id(data)
        addr = self._pending.pop(data[start:end], None)
        if addr is None:
            return
        if self.mode == "truncated":
            self.transport.sendto(data[: len(data) // 2], addr)
        else:
            wrong = bytes(b ^ 0x5A for b in data[start:end])
            self.transport.sendto(data[:start] + wrong + data[end:], addr)

    def close(self) -> None:
        for transport in (self.transport, self._relay):
            if transport is not None:
                transport.close()


@contextlib.asynccontextmanager
async def bad_agent(mode: str, upstream: SnmpsimEndpoint) -> AsyncIterator[tuple[BadAgent, int]]:
    loop = asyncio.get_running_loop()
    agent = BadAgent(mode, (upstream.host, upstream.port))
    _transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", 0))
    assert agent.transport is not None
    port = int(agent.transport.get_extra_info("sockname")[1])
    if mode != "garbage":
        await agent.start_relay()
    try:
        yield agent, port
    finally:
        agent.close()


# -- helpers ---------------------------------------------------------------------------------------


def _wrong_types_recording() -> str:
    lines = []
    for line in corpus_recording(GOOD_RECORDING).read_text(encoding="utf-8").splitlines():
        oid = line.partition("|")[0]
        lines.append(f"{oid}|{WRONG_TYPES[oid]}" if oid in WRONG_TYPES else line)
    return "\n".join(lines) + "\n"


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


async def _device(base: str, site: str, device: str = "dev") -> dict[str, Any]:
    status, body = await _get(f"{base}/api/v1/sites/{site}")
    assert status == 200, body
    found: dict[str, Any] = next(d for d in json.loads(body)["devices"] if d["device_id"] == device)
    return found


async def _metrics(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = await _get(base + "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for (n, ls), v in metrics.items() if n == name and want <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _good_polls(daemon: Daemon) -> int:
    return daemon.scheduler.stats().polls.get("snmp", 0)


def _site(site_id: str, port: int, community: str, **snmp: Any) -> dict[str, Any]:
    return {
        "id": site_id,
        "name": f"Trạm {site_id}",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [
            {
                "id": "dev",
                "role": "power",
                "address": "127.0.0.1",
                "snmp": {"port": port, "community": community, "timeout": "0.5s", "retries": 0, **snmp},
            }
        ],
    }


# -- the daemon among bad input --------------------------------------------------------------------


async def test_bad_input_is_reported_and_never_stops_the_daemon(
    tmp_path: Path, snmpsim: SnmpsimEndpoint, snmpsim_factory: SnmpsimFactory, mosquitto: Mosquitto
) -> None:
    typed = await asyncio.to_thread(snmpsim_factory, {"wrongtypes": _wrong_types_recording()}, v3=False)
    profiles = tmp_path / "profiles"
    await asyncio.to_thread(shutil.copytree, REPO / "probes", profiles)
    trap_port = free_udp_port()
    async with (
        bad_agent("garbage", snmpsim) as (garbage, garbage_port),
        bad_agent("truncated", snmpsim) as (truncated, truncated_port),
        bad_agent("wrong-id", snmpsim) as (wrong_id, wrong_id_port),
    ):
        sites = [
            _site("good", snmpsim.port, GOOD_RECORDING),
            _site("garbage", garbage_port, GOOD_RECORDING),
            _site("truncated", truncated_port, GOOD_RECORDING),
            _site("wrongid", wrong_id_port, GOOD_RECORDING),
            _site("types", typed.port, "wrongtypes"),
            {
                "id": "gw",
                "name": "Trạm gw",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [
                    {
                        "id": "gateway",
                        "role": "power",
                        "address": "127.0.0.1",
                        "snmp_enabled": False,
                        "telemetry": {"topic": TOPIC, "profile": "site-gateway-json", "interval": "1h"},
                    }
                ],
            },
        ]
        data = province_config(
            sites,
            listen=f"127.0.0.1:{free_tcp_port()}",
            defaults={"interval": "1s", "timeout": "3s", "hard_after": 1, "icmp": {"enabled": False}},
        )
        data["profiles_dir"] = "profiles"
        data["server"]["metrics_detail"] = "full"  # uptimewatch_snmp_up is read below
        data["storage"] = {"path": str(tmp_path / "state.sqlite")}
        data["mqtt"] = {"host": mosquitto.host, "port": mosquitto.port, "client_id": "uw-bad-input"}
        data["telemetry"] = {"enabled": True}
        data["traps"] = {"enabled": True, "listen": f"127.0.0.1:{trap_port}", "communities": ["public"]}
        config = write_yaml(tmp_path / "config.yaml", data)

        async with run_daemon(config) as daemon:
            base = daemon.url

            async def judged() -> bool:
                snap = daemon.snapshot()
                return all(
                    "snmp" in {p for d in snap.sites[s].devices for p in d.probes}
                    for s in ("good", "garbage", "truncated", "wrongid", "types")
                )

            await wait_until(judged, timeout=30)
            assert all(agent.requests for agent in (garbage, truncated, wrong_id))

            # malformed telemetry and a malformed trap (from a device address: it gets parsed)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="uw-bad-pub") as client:
                assert daemon.telemetry_in is not None
                await asyncio.wait_for(daemon.telemetry_in.connected.wait(), 10)
                await client.publish(TOPIC, b"{not json", qos=1)
                await client.publish(TOPIC, b"\xff\xfe\x00binary", qos=1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"\x30\x82\x00\x10garbage-trap", ("127.0.0.1", trap_port))
                sock.sendto(b"\x30\x05\x02\x01\x01\x04", ("127.0.0.1", trap_port))

            async def counted() -> dict[Any, float] | None:
                m = await _metrics(base)
                traps = _value(m, "uptimewatch_traps_received_total", result="malformed")
                mqtt = _value(m, "uptimewatch_telemetry_messages_total", topic=TOPIC, result="malformed")
                return m if traps >= 2 and mqtt >= 2 else None

            m = await wait_until(counted, timeout=15)
            assert _value(m, "uptimewatch_snmp_up", site="good", device="dev") == 1
            for site in ("garbage", "truncated", "wrongid"):
                assert _value(m, "uptimewatch_snmp_up", site=site, device="dev") == 0, site
                status, body = await _get(f"{base}/api/v1/sites/{site}")
                assert status == 200
                site_status = json.loads(body)
                assert site_status["state"] in ("down", "degraded"), body
                assert "SNMP" in site_status["reason"], body

            # wrong types: the device answers, the bad values are dropped and named
            device = await _device(base, "types")
            problems = " ".join(device["problems"]) if "problems" in device else json.dumps(device)
            assert "power.battery_minutes_remaining: expected a number" in problems, device
            assert "power.battery_charge_percent" in problems, device
            assert device["fields"]["power.battery_minutes_remaining"] is None
            assert _value(m, "uptimewatch_snmp_up", site="types", device="dev") == 1
            good = await _device(base, "good")
            assert good["fields"]["power.battery_minutes_remaining"] == 6000

            # a profile file with a YAML error: the reload is refused, the running profiles stay
            broken = profiles / "ups-mib.yaml"
            text = await asyncio.to_thread(broken.read_text, encoding="utf-8")
            await asyncio.to_thread(broken.write_text, text + "\nscalars: [unclosed\n", encoding="utf-8")
            async with aiohttp.ClientSession() as http, http.post(base + "/-/reload") as resp:
                answer = json.loads(await resp.text())
                assert resp.status == 400, answer
            assert "ups-mib.yaml" in answer["message"], answer

            before = _good_polls(daemon)
            await wait_until(lambda: _good_polls(daemon) >= before + 10, timeout=15)
            m = await _metrics(base)
            assert _value(m, "uptimewatch_config_last_reload_successful") == 0
            assert _value(m, "uptimewatch_snmp_up", site="good", device="dev") == 1
            good = await _device(base, "good")
            assert good["fields"]["power.battery_minutes_remaining"] == 6000
            status, _ = await _get(base + "/healthz")
            assert status == 200
            reasons = {
                s: (await _device(base, s))["probes"]["snmp"] for s in ("garbage", "truncated", "wrongid")
            }
            print("\nwhat the API says about the bad agents:", json.dumps(reasons, ensure_ascii=False))


# -- the state store cannot be written at start -----------------------------------------------------


def _run_on_mounted_tmpfs(tmp_path: Path, options: str) -> subprocess.CompletedProcess[str]:
    """``uptimewatch run`` with its state directory on a tmpfs mounted with ``options``, inside a mount
    namespace of its own (gone with the process: nothing to unmount)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a read-only or tiny file system")
    state = tmp_path / "state"
    state.mkdir()
    data = province_config(
        [
            {
                "id": "s1",
                "name": "S",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [{"id": "x", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
            }
        ],
        listen=f"127.0.0.1:{free_tcp_port()}",
    )
    data["storage"] = {"path": str(state / "uptimewatch.sqlite")}
    config = write_yaml(tmp_path / "config.yaml", data)
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && exec "$2" -m uptimewatch.cli run -c "$3"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    started = time.monotonic()
    done = subprocess.run(
        [*cmd, str(state), sys.executable, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 60
    return done


@pytest.mark.root
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("ro,size=64k", "cannot open the state store"),
        # the disk fills while the store prepares its file or while the parts create their
        # tables, as the page allocation goes: either way the error names the state store
        ("size=8k", "(cannot prepare the state store|the state store \\(storage.path\\) failed)"),
    ],
    ids=["read-only", "disk-full"],
)
def test_run_exits_1_with_a_clear_error_when_the_store_cannot_be_written(
    tmp_path: Path, options: str, expected: str
) -> None:
    done = _run_on_mounted_tmpfs(tmp_path, options)
    assert done.returncode == 1, done.stderr
    assert re.search(f"uptimewatch: cannot start: {expected}", done.stderr), done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_run_exits_1_when_the_store_path_is_a_corrupt_file(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is not a database " * 200)
    data = province_config(
        [
            {
                "id": "s1",
                "name": "S",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [{"id": "x", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
            }
        ],
        listen=f"127.0.0.1:{free_tcp_port()}",
    )
    data["storage"] = {"path": str(state)}
    config = write_yaml(tmp_path / "config.yaml", data)
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"uptimewatch: cannot start: cannot open the state store {state}: file is not a database" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr, done.stderr
