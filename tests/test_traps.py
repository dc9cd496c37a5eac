"""SNMP traps and informs into the running daemon, sent with net-snmp's snmptrap and snmpinform.

The device is polled once a day, so a poll within seconds of a trap can only be the trap's doing;
every test checks first that no regular poll is due during it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.snmpsim import SnmpsimEndpoint, free_udp_port
from uptimewatch.app import Daemon, run_daemon
from uptimewatch.probing.traps import profile_traps

COMMUNITY = "trap-community-7Qx"
V3_USER = "trapper"
V3_AUTH = "trap-auth-key-9f"
V3_PRIV = "trap-priv-key-3k"
ENGINE_ID = "0x80001f8880aabbccdd01"
VENDOR_TRAP = "1.3.6.1.4.1.99999.0.7"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
ON_BATTERY = "1.3.6.1.2.1.33.2.1"
AUTH_FAILURE = "1.3.6.1.6.3.1.1.5.5"  # a standard trap that says nothing about the device's state

VENDOR_PROFILE = f"""
name: test-vendor-ups
description: A UPS whose vendor alarm trap is named in its profile
scalars:
  device.sys_name: {{oid: 1.3.6.1.2.1.1.5.0, type: string}}
  power.battery_minutes_remaining: {{oid: 1.3.6.1.2.1.33.1.2.3.0, type: int, unit: min}}
traps:
  - {{oid: "{VENDOR_TRAP}", name: testVendorMainsFail, severity: critical}}
"""

pytestmark = pytest.mark.skipif(
    not (shutil.which("snmptrap") and shutil.which("snmpinform")), reason="net-snmp's snmp package missing"
)


def _config(tmp_path: Path, sim: SnmpsimEndpoint) -> tuple[Path, int]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "test-vendor-ups.yaml").write_text(VENDOR_PROFILE)
    trap_port = free_udp_port()
    snmp = {"port": sim.port, "community": "cetpower", "timeout": "0.5s", "retries": 0}
    sites = [
        {
            "id": "hub",
            "name": "Trạm Mai Châu",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "ups",
                    "role": "power",
                    "address": sim.host,
                    "profile": "test-vendor-ups",
                    "snmp": snmp,
                }
            ],
        }
    ]
    config = province_config(
        sites,
        listen=f"127.0.0.1:{free_tcp_port()}",
        defaults={"interval": "1d", "timeout": "5s", "hard_after": 1, "icmp": {"enabled": False}},
    )
    config["profiles_dir"] = "profiles"
    config["traps"] = {
        "enabled": True,
        "listen": f"127.0.0.1:{trap_port}",
        "communities": [COMMUNITY],
        "v3_users": [{"user": V3_USER, "auth_key": V3_AUTH, "priv_key": V3_PRIV}],
        "min_repoll_interval": "0s",
    }
    return write_yaml(tmp_path / "config.yaml", config), trap_port


async def _run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def _polls(daemon: Daemon) -> int:
    return daemon.scheduler.stats().polls.get("snmp", 0)


async def _trap_counts(daemon: Daemon) -> dict[str, float]:
    _status, body = await async_http("GET", daemon.url + "/metrics")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        if family.name == "uptimewatch_traps_received":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["result"]] = sample.value
    return out


@pytest.fixture
async def daemon(tmp_path: Path, snmpsim: SnmpsimEndpoint) -> AsyncIterator[tuple[Daemon, str]]:
    config, port = _config(tmp_path, snmpsim)
    async with run_daemon(config) as running:
        due = running.scheduler.next_due("hub", "ups", "snmp")
        assert due is not None
        # the daily poll's phase is a hash: make sure it cannot fall inside this test
        assert due - asyncio.get_running_loop().time() > 120 or due < asyncio.get_running_loop().time()
        yield running, f"127.0.0.1:{port}"


async def _expect_repoll(daemon: Daemon, before: int) -> None:
    await wait_until(lambda: _polls(daemon) > before, timeout=5)


async def _expect_no_repoll(daemon: Daemon, before: int) -> None:
    await asyncio.sleep(1.0)
    assert _polls(daemon) == before


async def test_v2c_and_v1_traps_repoll_the_device(daemon: tuple[Daemon, str]) -> None:
    running, target = daemon
    polls = _polls(running)
    code, out = await _run(
        "snmptrap", "-v2c", "-c", COMMUNITY, target, "", LINK_DOWN, "1.3.6.1.2.1.2.2.1.1.1", "i", "1"
    )
    assert code == 0, out
    await _expect_repoll(running, polls)

    # the re-poll is a real poll: the API shows its result for the device
    async def polled() -> dict[str, Any] | None:
        _status, body = await async_http("GET", running.url + "/api/v1/sites/hub")
        device = json.loads(body)["devices"][0]
        return device if "snmp" in device["probes"] else None

    device = await wait_until(polled, timeout=5)
    assert device["fields"]["device.sys_name"]

    polls = _polls(running)
    # an SNMPv1 linkDown (generic trap 2) becomes the same snmpTrapOID
    code, out = await _run(
        "snmptrap", "-v1", "-c", COMMUNITY, target, "1.3.6.1.4.1.8072", "127.0.0.1", "2", "0", ""
    )
    assert code == 0, out
    await _expect_repoll(running, polls)

    polls = _polls(running)
    code, out = await _run("snmptrap", "-v2c", "-c", COMMUNITY, target, "", VENDOR_TRAP)
    assert code == 0, out
    await _expect_repoll(running, polls)
    assert (await _trap_counts(running))["accepted"] == 3


async def test_strangers_and_wrong_credentials_are_counted_and_dropped(daemon: tuple[Daemon, str]) -> None:
    running, target = daemon
    polls = _polls(running)
    code, out = await _run("snmptrap", "-v2c", "-c", "not-the-community", target, "", ON_BATTERY)
    assert code == 0, out
    # a trap from another address: net-snmp binds its socket to 127.0.0.9 (all of 127/8 is local)
    code, out = await _run(
        "snmptrap", "-v2c", "-c", COMMUNITY, "--clientaddr=127.0.0.9", target, "", ON_BATTERY
    )
    assert code == 0, out
    v3_wrong = ["-v3", "-u", V3_USER, "-l", "authPriv", "-a", "SHA", "-A", "wrong-auth-key-1", "-x", "AES"]
    code, out = await _run("snmptrap", *v3_wrong, "-X", V3_PRIV, "-e", ENGINE_ID, target, "", ON_BATTERY)
    assert code == 0, out
    # accepted, but authenticationFailure does not change what a poll would read
    code, out = await _run("snmptrap", "-v2c", "-c", COMMUNITY, target, "", AUTH_FAILURE)
    assert code == 0, out
    await wait_until(lambda: _trap_counts(running), timeout=5)

    async def counted() -> dict[str, float] | None:
        counts = await _trap_counts(running)
        return counts if sum(counts.values()) >= 4 else None

    counts = await wait_until(counted, timeout=5)
    assert counts == {"accepted": 1, "unknown_source": 1, "bad_credentials": 2, "malformed": 0}
    await _expect_no_repoll(running, polls)


async def test_v3_trap_and_informs_are_authenticated_and_acknowledged(daemon: tuple[Daemon, str]) -> None:
    running, target = daemon
    v3 = ["-v3", "-u", V3_USER, "-l", "authPriv", "-a", "SHA", "-A", V3_AUTH, "-x", "AES", "-X", V3_PRIV]
    polls = _polls(running)
    # a trap comes from the device's own engine: any engine ID is learned for a configured user
    code, out = await _run("snmptrap", *v3, "-e", ENGINE_ID, target, "", ON_BATTERY)
    assert code == 0, out
    await _expect_repoll(running, polls)

    # informs wait for the acknowledgement: exit 0 means the daemon answered
    polls = _polls(running)
    code, out = await _run("snmpinform", *v3, "-t", "2", "-r", "1", target, "", "1.3.6.1.2.1.33.2.3")
    assert code == 0, out
    await _expect_repoll(running, polls)

    polls = _polls(running)
    code, out = await _run("snmpinform", "-v2c", "-c", COMMUNITY, "-t", "2", "-r", "1", target, "", LINK_DOWN)
    assert code == 0, out
    await _expect_repoll(running, polls)

    # a wrong community gets no acknowledgement: snmpinform times out
    code, _out = await _run(
        "snmpinform", "-v2c", "-c", "not-it", "-t", "0.3", "-r", "0", target, "", LINK_DOWN
    )
    assert code != 0
    counts = await _trap_counts(running)
    assert counts["accepted"] == 3
    assert counts["bad_credentials"] >= 1
    logs = json.dumps(counts)
    assert COMMUNITY not in logs


def test_profile_traps_are_read_from_the_profiles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VENDOR_PROFILE)
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    known = profile_traps(tmp_path)
    assert set(known) == {VENDOR_TRAP}
    assert known[VENDOR_TRAP].name == "testVendorMainsFail"
    assert known[VENDOR_TRAP].source == "test-vendor-ups"
