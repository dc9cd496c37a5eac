"""An overloaded monitor blames itself, not the network.

The loop is starved on purpose: a busy section of code that holds it for seconds, as a saturated
CPU or a flood of requests would. A poll cut off at its deadline meanwhile is "unknown: monitor
overloaded", moves no check and counts nothing towards ``hard_after``; ``MonitorOverloaded`` fires
once with the lag and resolves; ``uptimewatch_event_loop_lag_seconds`` says how late the loop ran.
The end-to-end tests poll healthy agents that run in their own process (the benchmark's), over
SNMP and ICMP, and check that no site ever leaves ``up``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, wait_until, write_yaml
from tests.fixtures.ports import free_udp_port
from tests.test_health import MINUTE, T0, all_ok, make_model, ping, snmp
from tests.test_scheduler import Sink, device, running
from uptimewatch.alerts.rules import Evaluator
from uptimewatch.app import run_daemon
from uptimewatch.config.alerting import AlertingConfig
from uptimewatch.looplag import LoopLag, Overload
from uptimewatch.model.health import SiteState
from uptimewatch.model.observation import ErrorKind, Observation, ProbeError
from uptimewatch.scheduler import Scheduler

REPO = Path(__file__).resolve().parents[1]


def block(seconds: float) -> None:
    """The busy section: holds the event loop (and everything on it) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def starve(seconds: float) -> None:
    """Run :func:`block` as one callback of the loop, and let the loop go on after it."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def busy() -> None:
        block(seconds)
        done.set_result(None)

    loop.call_soon(busy)
    await done


def lag_monitor(threshold: float = 0.5, clear_after: float = 0.5) -> LoopLag:
    return LoopLag(threshold=lambda: threshold, clear_after=lambda: clear_after, period=0.02)


# -- the measurement ---------------------------------------------------------------------------------


async def test_the_lag_of_a_busy_section_is_measured_and_the_spell_ends() -> None:
    lag = lag_monitor(threshold=0.5, clear_after=0.5)
    lag.start()
    try:
        await asyncio.sleep(0.1)
        before = time.monotonic()
        assert lag.late_since(before) is None
        assert lag.overload() is None
        await starve(0.8)
        await asyncio.sleep(0.05)  # the timer has woken and noted it
        late = lag.late_since(before)
        assert late is not None
        assert 0.7 <= late <= 1.5
        assert lag.recent() >= 0.7
        spell = lag.overload()
        assert spell is not None
        assert spell.lag >= 0.7
        assert spell.since <= before + 0.1
        await asyncio.sleep(1.2)  # on time for longer than clear_after, and than the stall's drain
        assert lag.overload() is None
        assert lag.late_since(time.monotonic() - 0.2) is None, "the stall and its drain are older"
    finally:
        lag.stop()


async def test_a_stall_in_progress_counts_before_the_timer_has_woken() -> None:
    """A poll's deadline that fires right after a busy section runs before the lag timer: the
    time since the timer was due must already say how late the loop is."""
    lag = lag_monitor()
    lag.start()
    seen: list[float | None] = []
    try:
        await asyncio.sleep(0.05)
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def busy_then_ask() -> None:
            block(0.7)
            seen.append(lag.late_since(start))
            done.set_result(lag.overload())

        loop.call_soon(busy_then_ask)
        spell = await done
    finally:
        lag.stop()
    assert seen[0] is not None
    assert seen[0] >= 0.6
    assert spell is not None


async def test_a_short_hiccup_is_not_an_overload() -> None:
    lag = lag_monitor(threshold=0.5)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await starve(0.15)
        await asyncio.sleep(0.05)
        assert lag.late_since(start) is None
        assert lag.overload() is None
        assert 0.1 <= lag.recent() < 0.5
    finally:
        lag.stop()


# -- the scheduler -------------------------------------------------------------------------------------


class SlowButHealthy:
    """A probe whose device answers after 0.3 s, every time."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, dev: Any) -> Observation:
        self.started.set()
        await asyncio.sleep(0.3)
        return Observation(dev.site_id, dev.device_id, "icmp", time.time(), 0.3, {"ok": True})


@pytest.mark.parametrize("measured", [True, False], ids=["loop-lag-measured", "unmeasured"])
async def test_a_deadline_passed_while_the_loop_was_late_is_overloaded_not_timeout(measured: bool) -> None:
    lag = lag_monitor()
    lag.start()
    probe = SlowButHealthy()
    sink = Sink()
    sched = Scheduler({"icmp": probe}, sink, max_concurrency=10, overload=lag if measured else None)
    sched.reconcile([device("d1", interval=60.0, timeout=1.0)])
    try:
        async with running(sched):
            assert sched.trigger("site-1", "d1") == 1
            await probe.started.wait()
            await starve(1.5)  # past the 1 s deadline, with the answer due at 0.3 s
            await wait_until(lambda: bool(sink.observations), timeout=5)
    finally:
        lag.stop()
    error = sink.observations[0].error
    assert error is not None
    if measured:
        assert error.kind is ErrorKind.OVERLOADED
        assert error.message.startswith("unknown: monitor overloaded (its event loop ran 1."), error.message
        assert sched.stats().overloaded == {"icmp": 1}
    else:  # what the daemon said before it measured its loop: the device's fault
        assert error.kind is ErrorKind.TIMEOUT
        assert sched.stats().overloaded == {"icmp": 0}


async def test_a_real_timeout_on_a_punctual_loop_stays_a_timeout() -> None:
    lag = lag_monitor()
    lag.start()

    async def silent(dev: Any) -> Observation:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sink = Sink()
    sched = Scheduler({"icmp": silent}, sink, max_concurrency=10, overload=lag)
    sched.reconcile([device("dead", interval=60.0, timeout=0.3)])
    try:
        async with running(sched):
            sched.trigger("site-1", "dead")
            await wait_until(lambda: bool(sink.observations), timeout=5)
    finally:
        lag.stop()
    error = sink.observations[0].error
    assert error is not None
    assert error.kind is ErrorKind.TIMEOUT


# -- the health model ------------------------------------------------------------------------------------


def test_an_overloaded_poll_moves_no_check_and_counts_nothing_towards_hard_after() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    t = T0 + MINUTE
    # two real silences: soft, two attempts of the three hard_after asks
    for _ in range(2):
        assert model.ingest(ping("s1", "bts1", t, loss=1.0)) == []
        t += MINUTE
    before = model.snapshot().sites["s1"]
    overloaded = ProbeError(
        ErrorKind.OVERLOADED, "unknown: monitor overloaded (its event loop ran 2.5 s late)"
    )
    for probe in ("icmp", "snmp"):
        obs = snmp("s1", "bts1", t, error=overloaded)
        obs = Observation(obs.site_id, obs.device_id, probe, t, 2.5, error=overloaded)
        assert model.ingest(obs) == []
    after = model.snapshot().sites["s1"]
    assert after == before, "nothing moved, not even the last probe results"
    bts = after.device("bts1")
    assert bts is not None
    reach = bts.check("icmp.reachable")
    assert reach is not None
    assert (reach.state, reach.hard, reach.attempts) == (before.devices[0].checks[0].state, False, 2)
    # the streak goes on where it was: the third real silence turns it hard
    changes = model.ingest(ping("s1", "bts1", t + MINUTE, loss=1.0))
    assert [(c.old, c.new) for c in changes if c.kind == "site"] == [(SiteState.UP, SiteState.DOWN)]


# -- the rule ---------------------------------------------------------------------------------------------


class Spell:
    def __init__(self, overload: Overload | None) -> None:
        self.value = overload

    def overload(self) -> Overload | None:
        return self.value


def test_monitor_overloaded_is_one_alert_about_the_daemon() -> None:
    evaluator = Evaluator(AlertingConfig(), "hb")
    empty = make_model()[0].snapshot()  # nothing polled: no site alert
    assert not evaluator.evaluate(empty, 0.0).candidates, "no view, no alert"
    evaluator.monitor = Spell(None)
    assert not evaluator.evaluate(empty, 0.0).candidates
    evaluator.monitor = Spell(Overload(lag=2.61, since=10.0, last=12.0))
    (cand,) = evaluator.evaluate(empty, 0.0).candidates.values()
    assert cand.name == "MonitorOverloaded"
    assert cand.severity == "warning"
    assert dict(cand.labels) == {"province": "hb", "alertname": "MonitorOverloaded", "severity": "warning"}
    assert cand.value == 2.6
    off = Evaluator(
        AlertingConfig.model_validate({"builtins": {"MonitorOverloaded": {"enabled": False}}}), "hb"
    )
    off.monitor = Spell(Overload(lag=2.61, since=10.0, last=12.0))
    assert not off.evaluate(empty, 0.0).candidates


# -- the daemon, polling healthy agents in their own process -------------------------------------------------

AGENT_DEVICES = 120
SITES = AGENT_DEVICES // 2
PROFILE = "bench-ups10"  # bench/probes: the UPS-MIB objects the benchmark's agents serve


@pytest.fixture(scope="module")
def agents() -> Iterator[int]:
    """The benchmark's simulated power plants (127.64.x.y), answering from their own process."""
    port = free_udp_port()
    cmd = [
        sys.executable,
        str(REPO / "bench" / "agents.py"),
        "--devices",
        str(AGENT_DEVICES),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), f"agents did not start: {line!r} (exit {proc.poll()})"
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def province(tmp_path: Path, port: int, **scheduler: Any) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from agents import COMMUNITY, device_address  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "bench"))
    sites = []
    for k in range(SITES):
        sites.append(
            {
                "id": f"s{k:03d}",
                "name": f"Trạm {k}",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [
                    {
                        "id": f"p{j}",
                        "role": "power",
                        "address": device_address(2 * k + j),
                        "profile": "bench-ups10",
                    }
                    for j in range(2)
                ],
            }
        )
    data = {
        "province": {"id": "test", "name": "Tỉnh Thử Nghiệm"},
        "server": {"listen": f"127.0.0.1:{free_tcp_port()}"},
        "profiles_dir": str(REPO / "bench" / "probes"),
        "storage": {"path": str(tmp_path / "state.sqlite")},
        "scheduler": {"overload_clear_after": "3s", **scheduler},
        "defaults": {
            "interval": "1s",
            "timeout": "1.5s",
            "hard_after": 1,  # one false timeout would turn a site down at once
            "snmp": {"port": port, "community": COMMUNITY, "timeout": "1s", "retries": 0},
            "icmp": {"enabled": True, "count": 3, "interval": "0.2s", "timeout": "0.5s"},
        },
        "carriers": [{"id": "vnpt", "name": "VNPT"}],
        "districts": [{"id": "d1", "name": "Huyện Mai Châu"}],
        "sites": sites,
        "alerting": {"evaluation_interval": "0.5s"},
    }
    return write_yaml(tmp_path / "config.yaml", data)


class SiteChanges(logging.Handler):
    """Every site or device state change the daemon logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name == "uptimewatch.app" and ("->" in message or "→" in message):
            self.lines.append(message)


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    assert values, name
    return sum(values)


async def alerts(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/api/v1/alerts") as resp:
        body = await resp.json()
    return body["alerts"] if isinstance(body, dict) else body


@pytest.mark.root
async def test_a_starved_loop_turns_no_site_from_up_and_alerts_once(
    tmp_path: Path, agents: int, caplog: pytest.LogCaptureFixture
) -> None:
    config = province(tmp_path, agents)
    changes = SiteChanges()
    caplog.set_level(logging.INFO, logger="uptimewatch.app")  # state changes are logged at INFO
    logging.getLogger("uptimewatch.app").addHandler(changes)
    try:
        async with run_daemon(config) as daemon, aiohttp.ClientSession() as http:

            def all_up() -> bool:
                snap = daemon.snapshot()
                return all(s.state is SiteState.UP for s in snap.sites.values())

            await wait_until(all_up, timeout=60)
            await asyncio.sleep(2)  # a few cycles in the steady state
            assert all_up()
            changes.lines.clear()
            assert await metric(http, daemon.url, "uptimewatch_event_loop_lag_seconds") < 0.5

            # starve it three times, 2.5 s each, a second apart: polls in flight miss their deadline
            for _ in range(3):
                await starve(2.5)
                assert all_up(), [
                    s.site_id for s in daemon.snapshot().sites.values() if s.state is not SiteState.UP
                ]
                await asyncio.sleep(1.0)
                assert all_up()
            lag = await metric(http, daemon.url, "uptimewatch_event_loop_lag_seconds")
            overloaded = await metric(http, daemon.url, "uptimewatch_scheduler_overloaded_polls_total")
            assert lag >= 2.0
            assert overloaded > 0, "the starvation must have caught polls in flight"

            async def firing() -> list[dict[str, Any]]:
                return [a for a in await alerts(http, daemon.url) if a["state"] == "firing"]

            now_firing = await firing()
            assert [a["name"] for a in now_firing] == ["MonitorOverloaded"], now_firing
            assert now_firing[0]["labels"]["alertname"] == "MonitorOverloaded"

            async def resolved() -> bool:
                return not await firing()

            await wait_until(resolved, timeout=30)
            assert all_up()
            assert changes.lines == [], changes.lines
            history = [a for a in await alerts(http, daemon.url) if a["name"] != "MonitorOverloaded"]
            assert history == [], history
    finally:
        logging.getLogger("uptimewatch.app").removeHandler(changes)


@pytest.mark.root
async def test_a_flood_of_api_requests_turns_no_site_from_up(
    tmp_path: Path, agents: int, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 concurrent API requests, from another process as a real client would send them."""
    config = province(tmp_path, agents)
    changes = SiteChanges()
    caplog.set_level(logging.INFO, logger="uptimewatch.app")
    logging.getLogger("uptimewatch.app").addHandler(changes)
    try:
        async with run_daemon(config) as daemon, aiohttp.ClientSession() as http:

            def all_up() -> bool:
                return all(s.state is SiteState.UP for s in daemon.snapshot().sites.values())

            await wait_until(all_up, timeout=60)
            await asyncio.sleep(2)
            changes.lines.clear()
            flood = await asyncio.create_subprocess_exec(
                sys.executable, "-c", FLOOD, f"{daemon.url}/api/v1/sites", "2000", stdout=subprocess.PIPE
            )
            out, _ = await flood.communicate()
            answered = int(out.decode().split()[0])
            assert answered > 0
            await asyncio.sleep(1.5)  # the polls cut off meanwhile have reported
            assert all_up()
            assert changes.lines == [], changes.lines
            lag = await metric(http, daemon.url, "uptimewatch_event_loop_lag_seconds")
            print(f"flood: {out.decode().strip()} answered; event loop lag {lag:.2f} s")
    finally:
        logging.getLogger("uptimewatch.app").removeHandler(changes)


FLOOD = r"""
import asyncio, sys, aiohttp
url, n = sys.argv[1], int(sys.argv[2])
async def main():
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def one():
            nonlocal ok
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as r:
                    await r.read()
                    ok += r.status == 200
            except Exception:
                pass
        await asyncio.gather(*(one() for _ in range(n)))
    print(ok, n)
asyncio.run(main())
"""
