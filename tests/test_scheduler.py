"""The scheduler against real asyncio time: small intervals, probe functions that record calls.

Bounds are generous on purpose (a loaded CI box may stall the loop for tens of milliseconds);
what is asserted is behaviour (grid alignment, skips, caps, cancellation), never speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from pydantic import SecretStr

from uptimewatch.config.models import Role, SnmpVersion
from uptimewatch.config.resolve import BUILTIN, IcmpTarget, ResolvedDevice, SnmpTarget
from uptimewatch.model.observation import ErrorKind, Observation
from uptimewatch.model.stats import LAG_BUCKETS
from uptimewatch.scheduler import PROBE_APPLIES, Scheduler, phase_of

ProbeFn = Callable[[ResolvedDevice], Awaitable[Observation]]


def device(
    device_id: str,
    *,
    site_id: str = "site-1",
    interval: float = 0.2,
    timeout: float = 5.0,
    snmp: bool = False,
    icmp: bool = True,
    address: str = "127.0.0.1",
) -> ResolvedDevice:
    snmp_target = None
    if snmp:
        snmp_target = SnmpTarget(
            host=address,
            port=161,
            version=SnmpVersion.V2C,
            community=SecretStr("public"),
            user=None,
            auth_protocol=None,
            auth_key=None,
            priv_protocol=None,
            priv_key=None,
            context="",
            timeout=1.0,
            retries=0,
            max_repetitions=25,
            max_rows=100,
            max_requests=10,
        )
    icmp_target = IcmpTarget(address, 1, 0.0, 1.0, 56) if icmp else None
    assert BUILTIN.thresholds is not None
    return ResolvedDevice(
        site_id=site_id,
        device_id=device_id,
        role=Role.BTS,
        name=device_id,
        address=address,
        profile="generic",
        interval=interval,
        timeout=timeout,
        hard_after=3,
        snmp=snmp_target,
        icmp=icmp_target,
        thresholds=BUILTIN.thresholds,
    )


class Recorder:
    """A real probe function: records each call's start time, sleeps as told, returns an Observation."""

    def __init__(
        self, probe: str = "icmp", delays: dict[str, float] | None = None, default_delay: float = 0.0
    ) -> None:
        self.probe = probe
        self.delays = delays or {}
        self.default_delay = default_delay
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.cancelled: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, dev: ResolvedDevice) -> Observation:
        self.calls[dev.device_id].append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(dev.device_id, self.default_delay))
        except asyncio.CancelledError:
            self.cancelled.append(dev.device_id)
            raise
        finally:
            self.in_flight -= 1
        return Observation(dev.site_id, dev.device_id, self.probe, time.time(), 0.0, {"ok": True})


class Sink:
    def __init__(self) -> None:
        self.observations: list[Observation] = []

    def __call__(self, obs: Observation) -> None:
        self.observations.append(obs)

    def of(self, device_id: str) -> list[Observation]:
        return [o for o in self.observations if o.device_id == device_id]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    # polling keeps the probes under test plain functions, with no events threaded through them
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(sched: Scheduler, grace: float = 0.5) -> AsyncIterator[Scheduler]:
    await sched.start()
    try:
        yield sched
    finally:
        await sched.stop(grace)


def assert_on_grid(times: list[float], first_due: float, interval: float, slack: float = 0.08) -> None:
    """Each call starts at first_due + k*interval for a whole k, a little late at most."""
    for t in times:
        k = round((t - first_due) / interval)
        assert 0 <= t - (first_due + k * interval) < slack, (t, first_due, k)


async def test_polls_follow_a_fixed_grid_without_drift_even_when_polls_are_slow() -> None:
    # each poll eats 75% of the interval: a "sleep interval after the poll" loop would drift
    # 0.15 s per cycle, 1.5 s over the run
    probe = Recorder(delays={"a": 0.15})
    sink = Sink()
    sched = Scheduler({"icmp": probe}, sink, max_concurrency=10)
    sched.reconcile([device("a", interval=0.2)])
    first_due = sched.next_due("site-1", "a", "icmp")
    assert first_due is not None
    async with running(sched):
        await wait_until(lambda: len(probe.calls["a"]) >= 11)
    calls = probe.calls["a"]
    for k, t in enumerate(calls[:11]):
        assert first_due + k * 0.2 <= t < first_due + k * 0.2 + 0.08, (k, t - first_due)
    stats = sched.stats()
    assert stats.missed_cycles["icmp"] == 0
    assert stats.polls["icmp"] >= 10
    assert stats.lag_count >= 11
    assert all(o.ok for o in sink.observations)


def test_phases_are_stable_hashed_and_spread_over_the_interval() -> None:
    devices = [device(f"bts-{i:04d}", site_id=f"site-{i // 4}", interval=60.0) for i in range(1000)]
    phases = [phase_of(d.site_id, d.device_id, "icmp", 60.0) for d in devices]
    assert all(0.0 <= p < 60.0 for p in phases)
    bins = [0] * 10
    for p in phases:
        bins[int(p // 6.0)] += 1
    assert min(bins) >= 60, bins  # 100 each expected
    assert max(bins) <= 140, bins
    assert len({round(p, 9) for p in phases}) == 1000
    assert phase_of("site-0", "bts-0000", "icmp", 60.0) != phase_of("site-0", "bts-0000", "snmp", 60.0)

    def first_dues(mono: float, wall: float) -> list[float]:
        sched = Scheduler(
            {"icmp": Recorder()}, Sink(), max_concurrency=10, clock=lambda: mono, wall=lambda: wall
        )
        sched.reconcile(devices)
        dues = [sched.next_due(d.site_id, d.device_id, "icmp") for d in devices]
        assert all(due is not None and mono <= due < mono + 60.0 for due in dues)
        # wall time of each first poll sits at the job's phase
        return [(due + wall - mono) % 60.0 for due in dues if due is not None]

    first = first_dues(1000.0, 1_700_000_000.0)
    # a second instance, as after a restart at another time, polls each device at the same phase
    second = first_dues(52.5, 1_700_003_917.25)
    for p, a, b in zip(phases, first, second, strict=True):
        assert min(abs(a - p), 60.0 - abs(a - p)) < 1e-5
        assert min(abs(b - p), 60.0 - abs(b - p)) < 1e-5


async def test_deadline_turns_a_silent_probe_into_a_timeout_observation() -> None:
    started = asyncio.Event()

    async def never_answers(dev: ResolvedDevice) -> Observation:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sink = Sink()
    sched = Scheduler({"icmp": never_answers}, sink, max_concurrency=10)
    sched.reconcile([device("dead", interval=0.3, timeout=0.1)])
    async with running(sched):
        await wait_until(lambda: len(sink.observations) >= 1)
    obs = sink.observations[0]
    assert (obs.site_id, obs.device_id, obs.probe) == ("site-1", "dead", "icmp")
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.TIMEOUT
    assert obs.error.message == "no result within 0.1 s (deadline)"
    assert obs.duration_s >= 0.09
    stats = sched.stats()
    assert stats.deadline_exceeded["icmp"] >= 1
    assert stats.polls["icmp"] >= 1


async def test_a_hanging_device_does_not_delay_another() -> None:
    probe = Recorder(delays={"hung": 3600.0})
    sink = Sink()
    sched = Scheduler({"icmp": probe}, sink, max_concurrency=10)
    sched.reconcile([device("hung", interval=0.2, timeout=30.0), device("fine", interval=0.2)])
    fine_due = sched.next_due("site-1", "fine", "icmp")
    assert fine_due is not None
    async with running(sched, grace=0.1):
        await wait_until(lambda: len(probe.calls["fine"]) >= 6 and len(probe.calls["hung"]) >= 1)
        await asyncio.sleep(0.3)
        hung_missed = sched.stats().missed_cycles["icmp"]
    assert probe.calls["hung"]
    assert len(probe.calls["hung"]) == 1
    assert hung_missed >= 1  # its later cycles were skipped, not queued
    fine = probe.calls["fine"]
    assert len(fine) >= 7
    assert_on_grid(fine, fine_due, 0.2)
    assert [round((b - a) / 0.2) for a, b in itertools.pairwise(fine)] == [1] * (len(fine) - 1)
    assert len(sink.of("fine")) == len(fine)
    assert probe.cancelled == ["hung"]  # stop() cancelled the straggler
    assert sink.of("hung") == []


async def test_concurrency_cap_is_respected_per_probe() -> None:
    snmp = Recorder("snmp", default_delay=0.05)
    icmp = Recorder("icmp", default_delay=0.05)
    sink = Sink()
    sched = Scheduler({"snmp": snmp, "icmp": icmp}, sink, max_concurrency={"snmp": 3, "icmp": 1, "mqtt": 7})
    # 40 devices x 0.05 s per 0.3 s is ~7 polls wanted in flight per probe: both caps are hit
    sched.reconcile([device(f"d{i}", interval=0.3, snmp=True) for i in range(40)])
    assert sched.stats().targets == {"snmp": 40, "icmp": 40}
    in_flight_seen: list[int] = []
    async with running(sched):
        for _ in range(100):
            in_flight_seen.append(sched.stats().in_flight)
            await asyncio.sleep(0.01)
    assert snmp.max_in_flight == 3
    assert icmp.max_in_flight == 1
    assert max(in_flight_seen) <= 4
    stats = sched.stats()
    assert stats.missed_cycles["icmp"] > 0  # 1 slot cannot serve 40 devices every 0.3 s
    assert stats.in_flight == 0


async def test_a_poll_outlasting_its_interval_skips_cycles_and_counts_them() -> None:
    probe = Recorder(delays={"slow": 0.5})
    sched = Scheduler({"icmp": probe}, Sink(), max_concurrency=10)
    sched.reconcile([device("slow", interval=0.2)])
    first_due = sched.next_due("site-1", "slow", "icmp")
    assert first_due is not None
    async with running(sched):
        await wait_until(lambda: len(probe.calls["slow"]) >= 4)
        missed = sched.stats().missed_cycles["icmp"]
    calls = probe.calls["slow"]
    assert_on_grid(calls, first_due, 0.2)
    # a 0.5 s poll on a 0.2 s grid: the next poll waits for the next due time after it ends
    gaps = [round((b - a) / 0.2) for a, b in itertools.pairwise(calls)]
    assert gaps[:3] == [3, 3, 3]
    assert missed >= 2 * 3


async def test_a_full_concurrency_cap_counts_missed_cycles_and_keeps_the_latest() -> None:
    hold = asyncio.Event()
    calls: dict[str, list[float]] = defaultdict(list)

    async def probe(dev: ResolvedDevice) -> Observation:
        calls[dev.device_id].append(time.monotonic())
        if dev.device_id == "hog":
            await hold.wait()
        return Observation(dev.site_id, dev.device_id, "icmp", time.time(), 0.0)

    sched = Scheduler({"icmp": probe}, Sink(), max_concurrency=1)
    # the hog's own cycle is an hour away; only its triggered poll takes the single slot
    sched.reconcile([device("hog", interval=86400.0), device("quick", interval=0.2)])
    quick_due = sched.next_due("site-1", "quick", "icmp")
    assert quick_due is not None
    async with running(sched):
        await wait_until(lambda: len(calls["quick"]) >= 1)
        assert sched.trigger("site-1", "hog") == 1
        held_from = time.monotonic()
        await asyncio.sleep(1.0)
        before_release = len(calls["quick"])
        held_until = time.monotonic()
        assert sched.stats().missed_cycles["icmp"] >= 3  # ~5 cycles due, one kept waiting
        hold.set()
        await wait_until(lambda: len(calls["quick"]) >= before_release + 2)
    assert not [t for t in calls["quick"] if held_from + 0.05 < t < held_until]
    # the waiting poll ran for the latest cycle it stood for, so it is still on the grid
    assert_on_grid(calls["quick"], quick_due, 0.2, slack=0.1)


async def test_reconcile_adds_removes_and_keeps_phases() -> None:
    mono, wall = 500.0, 1_700_000_000.0
    sched = Scheduler(
        {"icmp": Recorder(), "snmp": Recorder("snmp")},
        Sink(),
        max_concurrency=10,
        clock=lambda: mono,
        wall=lambda: wall,
    )
    sched.reconcile([device("a", interval=60.0), device("b", interval=60.0, snmp=True)])
    assert sched.stats().targets == {"icmp": 2, "snmp": 1}
    a_due = sched.next_due("site-1", "a", "icmp")

    mono += 7.0  # a reload a little later
    wall += 7.0
    changed_a = device("a", interval=60.0, address="127.0.0.2", timeout=2.0)
    sched.reconcile([changed_a, device("c", interval=30.0)])
    assert sched.next_due("site-1", "a", "icmp") == a_due  # unchanged interval: phase kept
    assert sched.next_due("site-1", "b", "icmp") is None
    assert sched.next_due("site-1", "b", "snmp") is None
    c_due = sched.next_due("site-1", "c", "icmp")
    assert c_due is not None
    assert mono <= c_due < mono + 30.0
    assert sched.stats().targets == {"icmp": 2, "snmp": 0}

    sched.reconcile([replace(changed_a, interval=45.0), device("c", interval=30.0)])
    new_a_due = sched.next_due("site-1", "a", "icmp")
    assert new_a_due is not None
    assert mono <= new_a_due < mono + 45.0
    assert abs((new_a_due + wall - mono) % 45.0 - phase_of("site-1", "a", "icmp", 45.0)) < 1e-6
    assert sched.next_due("site-1", "c", "icmp") == c_due  # the other job is not re-phased


async def test_reconcile_while_running_stops_removed_jobs_and_keeps_the_rest_on_grid() -> None:
    probe = Recorder(delays={"gone": 3600.0})
    sink = Sink()
    sched = Scheduler({"icmp": probe}, sink, max_concurrency=10)
    keep = device("keep", interval=0.2)
    sched.reconcile([keep, device("gone", interval=0.2, timeout=30.0)])
    keep_due = sched.next_due("site-1", "keep", "icmp")
    assert keep_due is not None
    async with running(sched):
        await wait_until(lambda: len(probe.calls["keep"]) >= 2 and len(probe.calls["gone"]) >= 1)
        sched.reconcile([keep, device("new", interval=0.2)])
        await wait_until(lambda: probe.cancelled == ["gone"])
        await wait_until(lambda: len(probe.calls["keep"]) >= 5 and len(probe.calls["new"]) >= 2)
    assert len(probe.calls["gone"]) == 1
    assert sink.of("gone") == []  # its in-flight poll was cancelled, not reported
    assert_on_grid(probe.calls["keep"], keep_due, 0.2)
    assert sched.stats().targets == {"icmp": 2}


async def test_trigger_polls_now_and_only_what_exists() -> None:
    snmp, icmp = Recorder("snmp", delays={"x": 0.2}), Recorder("icmp")
    sink = Sink()
    sched = Scheduler({"snmp": snmp, "icmp": icmp}, sink, max_concurrency=10)
    sched.reconcile([device("x", interval=86400.0, snmp=True)])
    assert sched.trigger("site-1", "x") == 0  # not started: nothing runs
    async with running(sched):
        due = sched.next_due("site-1", "x", "snmp")
        assert due is not None
        asked_at = time.monotonic()
        assert sched.trigger("site-1", "x", "snmp") == 1
        assert sched.trigger("site-1", "x", "snmp") == 0  # already polling: not twice
        assert sched.trigger("site-1", "nope") == 0
        assert sched.trigger("site-1", "x", "mqtt") == 0
        await wait_until(lambda: len(snmp.calls["x"]) == 1)
        assert asked_at <= snmp.calls["x"][0] < due  # out of cycle, before its regular time
        await wait_until(lambda: len(sink.observations) == 1)
        assert sched.trigger("site-1", "x") == 2  # both probes when none is named
        await wait_until(lambda: len(sink.observations) == 3)
    assert {(o.probe, o.device_id) for o in sink.observations} == {("snmp", "x"), ("icmp", "x")}
    assert sched.stats().lag_count == 0  # out-of-cycle polls are not schedule lag


async def test_stop_waits_for_quick_polls_and_cancels_stragglers_within_grace() -> None:
    probe = Recorder(delays={"quick": 0.1, "stuck": 3600.0})
    sink = Sink()
    sched = Scheduler({"icmp": probe}, sink, max_concurrency=10)
    sched.reconcile([device("quick", interval=86400.0), device("stuck", interval=86400.0)])
    await sched.start()
    try:
        assert sched.trigger("site-1", "stuck") == 1
        assert sched.trigger("site-1", "quick") == 1
        await wait_until(lambda: probe.in_flight == 2)
    finally:
        began = time.monotonic()
        await sched.stop(grace=0.5)
        took = time.monotonic() - began
    assert 0.4 < took < 3.0  # waited for the grace period, then gave up on the straggler
    assert probe.cancelled == ["stuck"]
    assert [o.device_id for o in sink.observations] == ["quick"]  # finished within grace
    assert sched.stats().in_flight == 0
    assert sched.trigger("site-1", "quick") == 0  # stopped: no new work


async def test_probe_exception_becomes_internal_observation_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def buggy(dev: ResolvedDevice) -> Observation:
        if dev.device_id == "bad":
            raise RuntimeError("profile field went missing")
        return Observation(dev.site_id, dev.device_id, "icmp", time.time(), 0.0)

    sink = Sink()
    sched = Scheduler({"icmp": buggy}, sink, max_concurrency=10)
    sched.reconcile([device("bad", interval=0.2), device("good", interval=0.2)])
    with caplog.at_level(logging.ERROR, logger="uptimewatch.scheduler"):
        async with running(sched):
            await wait_until(lambda: len(sink.of("bad")) >= 2 and len(sink.of("good")) >= 2)
    bad = sink.of("bad")[0]
    assert bad.error is not None
    assert bad.error.kind is ErrorKind.INTERNAL
    assert "profile field went missing" in bad.error.message
    assert all(o.ok for o in sink.of("good"))
    record = next(r for r in caplog.records if "failed on site" in r.getMessage())
    assert record.exc_info is not None
    assert "site-1" in record.getMessage()
    assert "bad" in record.getMessage()
    assert "icmp" in record.getMessage()


async def test_a_failing_sink_is_logged_and_polling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Observation] = []

    def sink(obs: Observation) -> None:
        seen.append(obs)
        if len(seen) == 1:
            raise ValueError("health model rejected it")

    sched = Scheduler({"icmp": Recorder()}, sink, max_concurrency=10)
    sched.reconcile([device("a", interval=0.2)])
    with caplog.at_level(logging.ERROR, logger="uptimewatch.scheduler"):
        async with running(sched):
            await wait_until(lambda: len(seen) >= 3)
    assert any("sink failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_applicability_registry_and_configuration_errors() -> None:
    assert set(PROBE_APPLIES) >= {"snmp", "icmp"}
    with pytest.raises(ValueError, match="no applicability rule for probe"):
        Scheduler({"mqtt": Recorder("mqtt")}, Sink(), max_concurrency=1)
    with pytest.raises(ValueError, match="no limit for probe"):
        Scheduler({"icmp": Recorder()}, Sink(), max_concurrency={"snmp": 1})
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler({"icmp": Recorder()}, Sink(), max_concurrency=0)

    # a new probe kind is one applicability rule; kinds without a function are not scheduled
    applies = {**PROBE_APPLIES, "mqtt": lambda d: d.role is Role.POWER}
    sched = Scheduler(
        {"mqtt": Recorder("mqtt"), "snmp": Recorder("snmp")}, Sink(), max_concurrency=5, applies=applies
    )
    sched.reconcile([replace(device("ups", snmp=True), role=Role.POWER), device("bts", snmp=False)])
    assert sched.stats().targets == {"mqtt": 1, "snmp": 1}
    assert sched.next_due("site-1", "ups", "icmp") is None


async def test_lag_histogram_buckets_every_scheduled_poll() -> None:
    probe = Recorder()
    sched = Scheduler({"icmp": probe}, Sink(), max_concurrency=10)
    sched.reconcile([device(f"d{i}", interval=0.2) for i in range(20)])
    async with running(sched):
        await wait_until(lambda: sched.stats().polls["icmp"] >= 60)
    stats = sched.stats()
    assert len(stats.lag_counts) == len(LAG_BUCKETS) + 1
    assert stats.lag_count >= stats.polls["icmp"]
    assert stats.lag_count == sum(len(c) for c in probe.calls.values())
    assert 0.0 <= stats.lag_sum < stats.lag_count * 0.2


async def test_twenty_thousand_jobs_are_each_polled_once_per_cycle() -> None:
    calls: dict[str, list[float]] = defaultdict(list)
    jobs_with_three = 0

    async def trivial(dev: ResolvedDevice) -> Observation:
        nonlocal jobs_with_three
        times = calls[dev.device_id]
        times.append(time.monotonic())
        if len(times) == 3:
            jobs_with_three += 1
        return Observation(dev.site_id, dev.device_id, "icmp", 0.0, 0.0)

    delivered = 0

    def sink(obs: Observation) -> None:
        nonlocal delivered
        delivered += 1

    devices = [device(f"d{i}", site_id=f"s{i // 8}", interval=1.0) for i in range(20_000)]
    sched = Scheduler({"icmp": trivial}, sink, max_concurrency=2000)
    sched.reconcile(devices)
    first_due = {d.device_id: sched.next_due(d.site_id, d.device_id, "icmp") for d in devices}
    async with running(sched):
        await wait_until(lambda: jobs_with_three == 20_000, timeout=30.0)
    for dev_id, due in first_due.items():
        assert due is not None
        times = calls[dev_id][:3]
        # never early, and never twice in one cycle; none skipped is the scheduler's own count
        # below (a wall-clock upper bound would only measure how busy the machine is)
        for k, t in enumerate(times):
            assert due + k <= t, (dev_id, k, t - due)
        assert all(b - a >= 0.5 for a, b in itertools.pairwise(times)), (dev_id, times)
    stats = sched.stats()
    assert stats.missed_cycles["icmp"] == 0
    assert stats.deadline_exceeded["icmp"] == 0
    assert delivered == stats.polls["icmp"] >= 60_000
