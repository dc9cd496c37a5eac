"""``uptimewatch demo`` end to end: simulator, scenario and daemon start, serve, and clean up."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from uptimewatch.demo import DemoOptions, run_demo

SITES = 8
QUICK_SCENARIO = (
    "name: quick\nspeed: 100\nsteps:\n"
    "  - {at: 20s, site: hub#0, mains: off, say: 'mất điện {site}'}\n"
    "  - {at: 1h, site: hub#0, mains: on}\n"
)


def free_udp_port() -> int:
    return free_port_below_ephemeral("127.16.1.1")


def free_tcp_port() -> int:
    return free_port_below_ephemeral("127.0.0.1")


def port_is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
        return True


class Lines(list[str]):
    """Collects the demo's output; ``wait_for`` wakes on each new line."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def append(self, line: str) -> None:
        super().append(line)
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self):
                self._changed.clear()
                await self._changed.wait()


async def snmpget(address: str, port: int, community: str, oid: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "snmpget", "-v2c", "-c", community, "-On", "-Oqv", "-t", "1", "-r", "1", f"{address}:{port}", oid,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


async def test_simulator_only_run_serves_runs_the_scenario_and_cleans_up(tmp_path: Path) -> None:
    scenario = tmp_path / "quick.yaml"
    scenario.write_text(QUICK_SCENARIO, encoding="utf-8")
    port = free_udp_port()
    opts = DemoOptions(
        sites=SITES,
        workdir=tmp_path / "demo",
        duration=1.5,
        snmp_port=port,
        scenario=scenario,
        daemon=False,
        nft_table=f"uwdemo_run_{os.getpid()}",
    )
    lines = Lines()
    task = asyncio.create_task(run_demo(opts, out=lines.append))
    await lines.wait_for("kịch bản 'quick'")  # the demo province reads Vietnamese
    # the hub's power plant (first site, device 2), community of the hub's carrier
    rc, out = await snmpget("127.16.1.2", port, "vnpt-hb-ro", "1.3.6.1.2.1.33.1.1.1.0")
    assert (rc, out) == (0, '"Eltek"')
    await lines.wait_for("[T+00:00]")  # the step at 20 s, at speed 100
    rc, out = await snmpget("127.16.1.2", port, "vnpt-hb-ro", "1.3.6.1.2.1.33.1.4.1.0")
    assert (rc, out) == (0, "5")  # upsOutputSource: battery
    assert await task == 0

    text = "\n".join(lines)
    assert f"{SITES} trạm, {3 * SITES} thiết bị mô phỏng" in text
    assert "mất điện Trạm HUB" in text
    assert "T+00:36" in text  # the 1 h step is announced (and not reached)
    assert (tmp_path / "demo" / "config.yaml").is_file()
    assert port_is_free("127.16.1.2", port)  # every socket closed


async def test_default_workdir_gets_an_editable_scenario_copy(tmp_path: Path) -> None:
    opts = DemoOptions(
        sites=2,
        workdir=tmp_path,
        duration=0.2,
        snmp_port=free_udp_port(),
        daemon=False,
        nft_table=f"uwdemo_run_{os.getpid()}",
    )
    assert await run_demo(opts, out=lambda _line: None) == 0
    copy = tmp_path / "scenario.yaml"
    assert "speed:" in copy.read_text(encoding="utf-8")
    copy.write_text("name: edited\nspeed: 5\nsteps: []\n", encoding="utf-8")
    lines: list[str] = []
    assert await run_demo(opts, out=lines.append) == 0
    assert any("kịch bản 'edited'" in line for line in lines)  # the edited copy is not overwritten


needs_daemon = pytest.mark.skipif(
    importlib.util.find_spec("uptimewatch.app") is None,
    reason="uptimewatch.app (the daemon) is not in this tree",
)


@needs_daemon
async def test_demo_with_daemon_reports_every_site(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    quiet = tmp_path / "quiet.yaml"  # the shipped scenario's first fault comes within seconds
    quiet.write_text("name: quiet\nspeed: 10\nsteps: []\n", encoding="utf-8")
    opts = DemoOptions(
        sites=SITES,
        listen=listen,
        workdir=tmp_path,
        duration=60,
        snmp_port=free_udp_port(),
        daemon=True,
        scenario=quiet,
        nft_table=f"uwdemo_run_{os.getpid()}",
        mqtt=False,
    )
    lines = Lines()
    task = asyncio.create_task(run_demo(opts, out=lines.append))
    try:
        await lines.wait_for("/api/v1/sites")
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                async with http.get(f"http://{listen}/api/v1/sites") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                states = {s["id"]: s["state"] for s in body["sites"]}
                if len(states) == SITES and all(state == "up" for state in states.values()):
                    break
                await asyncio.sleep(0.3)
        assert any(s["name"].startswith("Trạm HUB") for s in body["sites"])
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@needs_daemon
async def test_cli_demo_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port, listen = free_udp_port(), f"127.0.0.1:{free_tcp_port()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uptimewatch.cli", "--log-level", "WARNING", "demo", "--sites", "4",
        "--workdir", str(tmp_path), "--snmp-port", str(port), "--listen", listen,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any("/healthz" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "demo exited early:\n" + "".join(seen)
                seen.append(line)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            rest, _ = await proc.communicate()
        assert proc.returncode == 0, "".join(seen) + rest.decode()
        assert "đang dừng" in rest.decode()
        assert port_is_free("127.16.1.1", port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
