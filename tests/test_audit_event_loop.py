"""Audit: the event loop never blocks.

The daemon watches a simulated province of 100 sites (the demo's simulator, in this process) plus
devices served by snmpsim from real recordings, under asyncio's debug mode, for about 20 s: polls,
a reload, a burst of API requests and /metrics scrapes. Two things are recorded:

- every callback asyncio reports as slow ("Executing <Handle ...> took X seconds"), with its
  source; the test prints them (``pytest -s``) and fails only on one far above normal (1 s), so a
  loaded 2-core machine does not make it flaky;
- through a Python audit hook, every blocking operation done *on the event loop's thread* after
  start-up: file opens (except module imports), sqlite connections, DNS look-ups, subprocesses and
  directory listings. Those must not happen at all, however fast they were this time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.daemon import free_tcp_port, wait_until
from tests.fixtures.snmpsim import SnmpsimEndpoint, free_udp_port
from uptimewatch.app import run_daemon
from uptimewatch.demo import SimClock, Simulator, SnmpAgent, generate_province
from uptimewatch.demo.device_models import load_models

SITES = 100
#: the demo's addresses moved out of the way of a demo someone may be running on this machine
FIRST_NET = 61
SLOW_BOUND = 1.0
#: audit events that block the thread that raises them
BLOCKING_EVENTS = frozenset(
    {
        "open",
        "sqlite3.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "subprocess.Popen",
        "os.listdir",
        "os.scandir",
        "os.system",
        "shutil.copyfile",
        "shutil.rmtree",
    }
)
SNMPSIM_RECORDINGS = ("cetpower", "iosxe_asr920", "eaton-xups", "siae-alfoplus2")


@dataclass
class LoopGuard:
    """Records blocking operations done on one thread while armed (audit hooks cannot be removed:
    this one stays installed for the session and only records while armed)."""

    thread: int = 0
    armed: bool = False
    seen: list[tuple[str, str, str, str]] = field(default_factory=list)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed or event not in BLOCKING_EVENTS or threading.get_ident() != self.thread:
            return
        detail = repr(args[0])[:200] if args else ""
        if event == "open" and isinstance(args[0], str | bytes | Path):
            path = str(args[0])
            # a first import of a module is a one-off read of code, not work the loop repeats
            if path.endswith((".py", ".pyc", ".so")) or "__pycache__" in path:
                return
        if event in ("open", "os.listdir") and str(args[0] if args else "").startswith("/proc/"):
            return  # procfs (the process collector) is kernel memory: it never waits on a disk
        if event == "socket.getaddrinfo" and _numeric(args[0]):
            return  # asyncio resolves numeric addresses inline, without DNS
        stack = traceback.extract_stack(limit=16)[:-1]
        self.seen.append((event, detail, _origin(stack), "".join(traceback.format_list(stack))))


def _origin(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame of uptimewatch's own code (else the innermost frame): who to blame."""
    ours = [f for f in stack if "/uptimewatch/" in f.filename and "/tests/" not in f.filename]
    frame = (ours or list(stack))[-1]
    return f"{frame.filename}:{frame.lineno} {frame.name}"


def _numeric(host: object) -> bool:
    import ipaddress

    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None:
        return True
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return False
    return True


_GUARD = LoopGuard()
sys.addaudithook(_GUARD.hook)


@contextlib.contextmanager
def loop_guard() -> Iterator[LoopGuard]:
    _GUARD.thread = threading.get_ident()
    _GUARD.seen = []
    _GUARD.armed = True
    try:
        yield _GUARD
    finally:
        _GUARD.armed = False


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode reports of slow callbacks."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[tuple[float, str]] = []
        self.recording = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.recording or not str(record.msg).startswith("Executing"):
            return
        args = record.args if isinstance(record.args, tuple) else ()
        took = float(args[-1]) if args and isinstance(args[-1], int | float) else 0.0
        self.reports.append((took, record.getMessage()))


def _province(tmp_path: Path, sim_port: int, snmpsim: SnmpsimEndpoint) -> tuple[Path, Any]:
    listen = f"127.0.0.1:{free_tcp_port()}"
    province = generate_province(SITES, snmp_port=sim_port, listen=listen, interval="3s", first_net=FIRST_NET)
    config: dict[str, Any] = province.config
    config["storage"] = {"path": str(tmp_path / "state.sqlite")}
    district = config["districts"][0]["id"]
    carrier = config["carriers"][0]["id"]
    for stem in SNMPSIM_RECORDINGS:
        config["sites"].append(
            {
                "id": f"rec-{stem}",
                "name": f"Trạm ghi {stem}",
                "district": district,
                "carrier": carrier,
                "devices": [
                    {
                        "id": "dev",
                        "role": "power" if stem != "iosxe_asr920" else "router",
                        "address": snmpsim.host,
                        "snmp": {"port": snmpsim.port, "community": stem, "timeout": "1s", "retries": 0},
                    }
                ],
            }
        )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path, province


async def _burst(base: str, site_ids: list[str]) -> None:
    paths = ["/api/v1/sites", "/api/v1/summary", "/api/v1/status/overview", "/api/v1/alerts", "/metrics"]
    paths += [f"/api/v1/sites/{sid}" for sid in site_ids[:40]]
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> None:
            async with http.get(base + path) as resp:
                assert resp.status == 200, path
                await resp.read()

        await asyncio.gather(*(get(p) for p in paths * 2))


async def test_the_event_loop_never_blocks(tmp_path: Path, snmpsim: SnmpsimEndpoint) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    sim_port = free_udp_port()
    config, province = _province(tmp_path, sim_port, snmpsim)
    models = await asyncio.to_thread(load_models)
    simulator = Simulator(province.sites, province.devices, models, SimClock(1.0))
    site_ids = [s["id"] for s in province.config["sites"]]
    try:
        async with SnmpAgent(simulator, sim_port), run_daemon(config) as daemon:
            base = daemon.url

            async def judged() -> bool:
                snap = daemon.snapshot()
                return sum(1 for s in snap.sites.values() if str(s.state.value) != "unknown") == len(site_ids)

            await wait_until(judged, timeout=30)
            slow.recording = True
            with loop_guard() as guard:
                await asyncio.sleep(4)
                await _burst(base, site_ids)
                # a reload that changes something: every job re-phased, the model reconfigured
                text = await asyncio.to_thread(config.read_text, encoding="utf-8")
                text = text.replace("interval: 3s", "interval: 2s", 1)
                await asyncio.to_thread(config.write_text, text, encoding="utf-8")
                async with aiohttp.ClientSession() as http, http.post(base + "/-/reload") as resp:
                    body = json.loads(await resp.text())
                    assert resp.status == 200, body
                await asyncio.sleep(4)
                await _burst(base, site_ids)
                polls_before = sum(daemon.scheduler.stats().polls.values())
                await asyncio.sleep(6)
                await _burst(base, site_ids)
                polls_after = sum(daemon.scheduler.stats().polls.values())
            slow.recording = False
    finally:
        logging.getLogger("asyncio").removeHandler(slow)
        loop.set_debug(False)

    assert polls_after > polls_before + len(site_ids), (polls_before, polls_after)
    report = sorted(slow.reports, reverse=True)
    print(f"\n{len(report)} slow callbacks (> {loop.slow_callback_duration} s) after start-up:")
    for took, message in report[:30]:
        print(f"  {took:.3f} s  {message[:400]}")
    print(f"{len(guard.seen)} blocking operations on the event loop thread, by origin:")
    origins: dict[tuple[str, str], list[str]] = {}
    for event, detail, origin, _stack in guard.seen:
        origins.setdefault((origin, event), []).append(detail)
    for (origin, event), details in sorted(origins.items()):
        print(f"  {len(details):4d} x {event} at {origin}: {', '.join(sorted(set(details))[:3])}")
    assert not guard.seen, "blocking calls on the event loop:\n" + "\n".join(
        f"{event} {detail}\n{stack}" for event, detail, _origin, stack in guard.seen[:5]
    )
    too_slow = [(took, message) for took, message in report if took > SLOW_BOUND]
    assert not too_slow, too_slow


def test_the_guard_sees_blocking_calls_on_its_thread_only(tmp_path: Path) -> None:
    """The audit hook itself: a file open on the guarded thread is recorded, one in another thread
    and an import are not (without this, the test above could pass by seeing nothing)."""
    target = tmp_path / "x.txt"
    target.write_text("x")
    with loop_guard() as guard:
        target.read_text()
        worker = threading.Thread(target=target.read_text)
        worker.start()
        worker.join()
    assert [(event, str(target) in detail) for event, detail, *_ in guard.seen] == [("open", True)]


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    yield
    _GUARD.armed = False
