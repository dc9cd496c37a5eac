"""When each device is polled, by which probe, under which deadline.

One dispatcher task walks a heap of ``(due, job)`` entries and starts a poll task only when a poll
is due, so 300,000 scheduled jobs cost 300,000 small records rather than 300,000 sleeping tasks.

Timing rules:

* Due times are ``base + k * interval`` on the monotonic clock, so a job never drifts, however
  long its polls take.
* Each job's phase is a stable hash of (site, device, probe), aligned to wall time: after a
  restart a device is polled at the same second of its interval, and the polls of a province
  spread evenly instead of bunching at start-up.
* A job still polling (or still waiting for a concurrency slot) when its next cycle is due skips
  that cycle and counts it as missed; polls never queue up behind a slow device.
* Every poll runs under the device's deadline; a timeout or a probe bug becomes an Observation,
  so the health model always hears about the device. Deadlines are kept by the dispatcher too,
  not by a timer per poll: one FIFO per timeout value (polls start in time order, so each FIFO is
  sorted), swept when the dispatcher wakes, which it does at most :data:`DEADLINE_SLACK` after a
  deadline. A poll past its deadline is cancelled and observed as a timeout.
* A poll that timed out while the event loop ran late (``overload``, a
  :class:`~uptimewatch.looplag.LoopLag`) is ``overloaded``, not ``timeout``: a reply may have
  waited in the socket for us. The health model holds nothing against the device for it.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import heapq
import logging
import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from msgspec.structs import replace

from .config.resolve import ResolvedDevice
from .model.observation import ErrorKind, Observation, ProbeError
from .model.stats import LAG_BUCKETS, SchedulerStats

log = logging.getLogger(__name__)

ProbeFn = Callable[[ResolvedDevice], Awaitable[Observation]]
Applies = Callable[[ResolvedDevice], bool]
Sink = Callable[[Observation], None]
JobKey = tuple[str, str, str]  # (site_id, device_id, probe)


def polled_by(kind: str) -> Applies:
    """The rule of a protocol: it polls the devices that have a target of its kind."""
    return lambda device: device.polls(kind)


def applicability(kinds: Iterable[str]) -> dict[str, Applies]:
    """The applicability rules of the registered protocols (``probing.registry.Registry.kinds``)."""
    return {kind: polled_by(kind) for kind in kinds}


#: The rules for the built-in protocols, when the caller gives none (the daemon passes the
#: registry's); a poll of a kind without a rule is refused, so a typo does not go unnoticed.
PROBE_APPLIES: Mapping[str, Applies] = applicability(("snmp", "icmp"))


class Overload(Protocol):
    """What the scheduler asks the loop-lag monitor (:class:`uptimewatch.looplag.LoopLag`)."""

    def late_since(self, start: float) -> float | None:
        """The loop's worst lag since ``start`` (the scheduler's clock) if it was overloaded."""
        ...


#: A zero interval would make the dispatcher spin; the config does not forbid it, so clamp here.
MIN_INTERVAL = 0.05
#: How late a poll past its deadline may be cancelled: deadlines that close together are swept in
#: one wake-up of the dispatcher rather than one each.
DEADLINE_SLACK = 0.05
#: The dispatcher wakes at most once per this many seconds: polls due closer together than that
#: start in one wake-up (up to this much late, which the lag histogram shows) instead of one each.
DISPATCH_TICK = 0.001


def phase_of(site_id: str, device_id: str, probe: str, interval: float) -> float:
    """The job's offset within its interval, in ``[0, interval)``; identical in every process.

    blake2b rather than ``hash()`` (randomized per process) or crc32 (linear, so sequential
    device names land in clusters).
    """
    digest = hashlib.blake2b(f"{site_id}\0{device_id}\0{probe}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 * interval


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value == round(value, 1) else f"{value:g}"


class _State(enum.Enum):
    IDLE = 0
    QUEUED = 1  # due, waiting for a concurrency slot
    RUNNING = 2


class _Job:
    __slots__ = (
        "base",
        "device",
        "expired",
        "interval",
        "k",
        "key",
        "poll",
        "probe",
        "queued_due",
        "removed",
        "scheduled",
        "state",
        "task",
        "ticket",
    )

    def __init__(self, key: JobKey, device: ResolvedDevice) -> None:
        self.key = key
        self.probe = key[2]
        self.device = device
        self.interval = 0.0
        self.base = 0.0  # monotonic time of cycle 0
        self.k = 0  # index of the cycle whose entry sits in the heap
        self.ticket = 0  # names the job's one live heap entry; a new ticket orphans the old entries
        self.state = _State.IDLE
        self.scheduled = True  # whether the running or queued poll is a regular cycle (vs. trigger)
        self.queued_due = 0.0
        self.removed = False
        self.task: asyncio.Task[None] | None = None
        self.poll = 0  # the id of the poll running or queued (the deadline entries name it)
        self.expired = 0  # the id of a poll the dispatcher cancelled at its deadline


class Scheduler:
    """Polls every applicable (device, probe) pair at the device's interval.

    ``probes`` maps a probe name to the function that polls one device; ``sink`` receives every
    Observation synchronously. ``max_concurrency`` caps in-flight polls per probe name (one int
    applies to each). ``applies`` says which devices a probe name polls; probe names without a
    ProbeFn are simply not scheduled, so the app can leave out a kind it cannot run (ICMP
    without privileges).

    ``clock`` must advance with the event loop's time (it is the loop's by default); ``wall``
    gives ``Observation.started_at`` and anchors the phases.
    """

    def __init__(
        self,
        probes: Mapping[str, ProbeFn],
        sink: Sink,
        *,
        max_concurrency: Mapping[str, int] | int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        applies: Mapping[str, Applies] = PROBE_APPLIES,
        overload: Overload | None = None,
    ) -> None:
        unknown = sorted(set(probes) - set(applies))
        if unknown:
            raise ValueError(f"no applicability rule for probe(s) {', '.join(unknown)}")
        if isinstance(max_concurrency, int):
            caps = dict.fromkeys(probes, max_concurrency)
        else:
            missing = sorted(set(probes) - set(max_concurrency))
            if missing:
                raise ValueError(f"max_concurrency has no limit for probe(s) {', '.join(missing)}")
            caps = {name: max_concurrency[name] for name in probes}
        bad = sorted(name for name, cap in caps.items() if cap < 1)
        if bad:
            raise ValueError(f"max_concurrency must be at least 1 for {', '.join(bad)}")

        self._probes = dict(probes)
        self._applies = {name: applies[name] for name in probes}
        self._sink = sink
        self._clock = clock
        self._wall = wall
        self._overload = overload
        self._cap = caps
        self._active = dict.fromkeys(probes, 0)
        self._pending: dict[str, deque[_Job]] = {name: deque() for name in probes}

        self._jobs: dict[JobKey, _Job] = {}
        # Entries are (due, ticket): atomic values only, so the cyclic GC stops tracking them.
        # Every entry lives a whole interval; entries holding the job itself would fill the old
        # generation and trigger full collections that stall the loop at large job counts.
        self._heap: list[tuple[float, int]] = []
        self._by_ticket: dict[int, _Job] = {}
        self._tickets = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # deadlines of the polls running: per timeout value, (deadline, poll id) in start order;
        # ``_in_flight`` maps the poll id to its job until the poll ends
        self._deadlines: dict[float, deque[tuple[float, int]]] = {}
        self._in_flight: dict[int, _Job] = {}
        self._poll_ids = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._next_deadline = math.inf  # the earliest deadline in ``_deadlines``
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False

        self._lag_counts = [0] * (len(LAG_BUCKETS) + 1)
        self._lag_sum = 0.0
        self._polls = dict.fromkeys(probes, 0)
        self._missed = dict.fromkeys(probes, 0)
        self._deadline = dict.fromkeys(probes, 0)
        self._overloaded = dict.fromkeys(probes, 0)
        self._targets = dict.fromkeys(probes, 0)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            return
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._arm(self._clock())

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking new work, give in-flight polls ``grace`` seconds, then cancel the rest."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        self._loop = None
        for queue in self._pending.values():
            for job in queue:
                if job.state is _State.QUEUED:
                    job.state = _State.IDLE
            queue.clear()
        tasks = set(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace)
        if late:
            log.warning("scheduler stop: cancelling %d poll(s) still running after %.1f s", len(late), grace)
            for task in late:
                task.cancel()
            # a probe that swallows cancellation must not hold shutdown hostage either
            _, stuck = await asyncio.wait(late, timeout=max(grace, 1.0))
            if stuck:
                log.error("scheduler stop: %d poll(s) ignored cancellation; abandoning them", len(stuck))

    # -- configuration ------------------------------------------------------------------------

    def reconcile(self, devices: Sequence[ResolvedDevice]) -> None:
        """Make the job set match ``devices``: add new jobs, drop gone ones, keep the phase of the
        rest. A job whose interval changed is re-phased; other changes apply from its next poll."""
        wanted: dict[JobKey, ResolvedDevice] = {}
        for device in devices:
            for name, applies in self._applies.items():
                if applies(device):
                    wanted[(device.site_id, device.device_id, name)] = device

        for key in [key for key in self._jobs if key not in wanted]:
            self._remove(self._jobs.pop(key))

        now = self._clock()
        offset = self._wall() - now
        added = rephased = 0
        for key, device in wanted.items():
            job = self._jobs.get(key)
            interval = max(device.interval, MIN_INTERVAL)
            if job is None:
                job = self._jobs[key] = _Job(key, device)
                self._targets[job.probe] += 1
                added += 1
            else:
                job.device = device
                if job.interval == interval:
                    continue
                rephased += 1
            self._place(job, interval, now, offset)

        # entries of removed or re-phased jobs linger until their due time; rebuild when they
        # outnumber the live ones (only after large reloads)
        if len(self._heap) > 2 * len(self._jobs) + 1024:
            self._heap = [entry for entry in self._heap if entry[1] in self._by_ticket]
            heapq.heapify(self._heap)
        self._poke()
        log.info("scheduler reconciled: %d jobs (%d added, %d re-phased)", len(self._jobs), added, rephased)

    def _place(self, job: _Job, interval: float, now: float, offset: float) -> None:
        """First due time at or after ``now`` whose wall time sits at the job's phase."""
        phase = phase_of(job.key[0], job.key[1], job.probe, interval)
        wait = (phase - (now + offset)) % interval
        job.interval = interval
        job.base = now + wait
        job.k = 0
        self._by_ticket.pop(job.ticket, None)
        self._tickets += 1
        job.ticket = self._tickets
        self._by_ticket[job.ticket] = job
        heapq.heappush(self._heap, (job.base, job.ticket))

    def _remove(self, job: _Job) -> None:
        job.removed = True
        del self._by_ticket[job.ticket]
        self._targets[job.probe] -= 1
        if job.task is not None:
            # its result would describe a device the health model no longer has
            job.task.cancel()

    # -- triggering ---------------------------------------------------------------------------

    def trigger(self, site_id: str, device_id: str, probe: str | None = None) -> int:
        """Poll the device now, out of cycle. Returns how many polls were started or queued;
        a probe already polling that device is not polled twice."""
        if not self._running:
            return 0
        names: Iterable[str] = self._probes if probe is None else (probe,)
        now = self._clock()
        started = 0
        for name in names:
            job = self._jobs.get((site_id, device_id, name))
            if job is None or job.state is not _State.IDLE:
                continue
            self._start(job, now, scheduled=False)
            started += 1
        return started

    def next_due(self, site_id: str, device_id: str, probe: str) -> float | None:
        """Monotonic time of the job's next regular cycle, or None if there is no such job."""
        job = self._jobs.get((site_id, device_id, probe))
        return None if job is None else job.base + job.k * job.interval

    # -- statistics ---------------------------------------------------------------------------

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            lag_counts=tuple(self._lag_counts),
            lag_sum=self._lag_sum,
            polls=dict(self._polls),
            missed_cycles=dict(self._missed),
            deadline_exceeded=dict(self._deadline),
            overloaded=dict(self._overloaded),
            in_flight=sum(self._active.values()),
            targets=dict(self._targets),
        )

    # -- dispatching --------------------------------------------------------------------------

    def _poke(self) -> None:
        """Wake the dispatcher now (the heap's first entry may have moved earlier)."""
        if self._loop is not None:
            self._arm(self._clock())

    def _arm(self, when: float) -> None:
        """One timer for the dispatcher, at the earliest moment anything asks for (``when`` on
        the scheduler's clock)."""
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_later(max(when - self._clock(), 0.0), self._dispatch)

    def _dispatch(self) -> None:
        """Start the polls that are due, cancel those past their deadline, and sleep until the
        next of either."""
        self._timer = None
        self._timer_at = math.inf
        if not self._running:
            return
        heap = self._heap
        by_ticket = self._by_ticket
        now = self._clock()
        while heap and heap[0][0] <= now:
            due, ticket = heapq.heappop(heap)
            job = by_ticket.get(ticket)
            if job is None:
                continue
            try:
                self._fire(job, due, now)
            except Exception:
                log.exception("scheduler: cannot dispatch site %s device %s probe %s", *job.key)
        if self._next_deadline <= now:
            self._next_deadline = self._sweep(now)
        wake = min(heap[0][0] if heap else math.inf, self._next_deadline + DEADLINE_SLACK)
        if wake < math.inf:
            self._arm(max(wake, now + DISPATCH_TICK))

    def _sweep(self, now: float) -> float:
        """Cancel the polls whose deadline has passed; returns the next deadline (inf if none)."""
        in_flight = self._in_flight
        first = math.inf
        for timeout, queue in list(self._deadlines.items()):
            while queue and queue[0][0] <= now:
                _deadline, poll = queue.popleft()
                job = in_flight.get(poll)
                if job is not None and job.poll == poll and job.task is not None:
                    job.expired = poll
                    job.task.cancel()
            if queue:
                first = min(first, queue[0][0])
            else:
                del self._deadlines[timeout]
        return first

    def _fire(self, job: _Job, due: float, now: float) -> None:
        interval = job.interval
        # the loop stalled past whole cycles: poll for the latest one, the earlier ones are missed
        behind = int((now - due) // interval)
        if behind > 0:
            self._missed[job.probe] += behind
            job.k += behind
            due = job.base + job.k * interval
        job.k += 1
        heapq.heappush(self._heap, (job.base + job.k * interval, job.ticket))

        if job.state is _State.IDLE:
            self._start(job, due, scheduled=True)
        elif job.state is _State.QUEUED:
            # the waiting poll now stands for this newer cycle; the older one is lost
            self._missed[job.probe] += 1
            job.queued_due = due
            job.scheduled = True
        elif job.scheduled:
            self._missed[job.probe] += 1
        # else: an out-of-cycle poll is running and serves this cycle too

    def _start(self, job: _Job, due: float, *, scheduled: bool) -> None:
        name = job.probe
        job.scheduled = scheduled
        if self._active[name] >= self._cap[name]:
            job.state = _State.QUEUED
            job.queued_due = due
            self._pending[name].append(job)
            return
        self._active[name] += 1
        job.state = _State.RUNNING
        self._poll_ids += 1
        poll = job.poll = self._poll_ids
        timeout = job.device.timeout
        deadline = self._clock() + timeout
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        queue.append((deadline, poll))
        earliest = deadline < self._next_deadline
        if earliest:
            self._next_deadline = deadline
        self._in_flight[poll] = job
        task = asyncio.create_task(self._poll(job, due, scheduled, poll))
        job.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if earliest and deadline + DEADLINE_SLACK < self._timer_at:
            self._arm(deadline + DEADLINE_SLACK)

    def _overloaded_poll(self, obs: Observation, start: float) -> Observation:
        """``obs`` timed out; if the loop was late meanwhile, the answer may be ours to blame."""
        assert self._overload is not None
        lag = self._overload.late_since(start)
        if lag is None:
            return obs
        self._overloaded[obs.probe] += 1
        why = f"unknown: monitor overloaded (its event loop ran {lag:.1f} s late during the poll)"
        return replace(obs, error=ProbeError(ErrorKind.OVERLOADED, why))

    def _drain(self, name: str) -> None:
        queue = self._pending[name]
        while queue and self._running and self._active[name] < self._cap[name]:
            job = queue.popleft()
            if job.removed or job.state is not _State.QUEUED:
                continue
            self._start(job, job.queued_due, scheduled=job.scheduled)

    async def _poll(self, job: _Job, due: float, scheduled: bool, poll: int) -> None:
        name = job.probe
        device = job.device
        start = self._clock()
        if scheduled:
            lag = max(start - due, 0.0)
            self._lag_counts[bisect_left(LAG_BUCKETS, lag)] += 1
            self._lag_sum += lag
        started_at = self._wall()
        try:
            try:
                obs = await self._probes[name](device)
                if not isinstance(obs, Observation):
                    raise TypeError(f"probe returned {type(obs).__name__}, not an Observation")
            except asyncio.CancelledError:
                # the dispatcher's deadline, unless someone else cancels too (stop, removal)
                task = asyncio.current_task()
                if job.expired != poll or task is None or task.uncancel() > 0 or job.removed:
                    raise
                self._deadline[name] += 1
                obs = Observation(
                    site_id=device.site_id,
                    device_id=device.device_id,
                    probe=name,
                    started_at=started_at,
                    duration_s=self._clock() - start,
                    error=ProbeError(
                        ErrorKind.TIMEOUT, f"no result within {_seconds(device.timeout)} s (deadline)"
                    ),
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "probe %s failed on site %s device %s (a bug: probes return errors as data)",
                name,
                device.site_id,
                device.device_id,
            )
            obs = Observation(
                site_id=device.site_id,
                device_id=device.device_id,
                probe=name,
                started_at=started_at,
                duration_s=self._clock() - start,
                error=ProbeError(ErrorKind.INTERNAL, f"probe failed: {type(exc).__name__}: {exc}"),
            )
        finally:
            del self._in_flight[poll]
            job.state = _State.IDLE
            job.task = None
            self._active[name] -= 1
            self._drain(name)

        self._polls[name] += 1
        if job.removed:
            return
        if obs.error is not None and obs.error.kind is ErrorKind.TIMEOUT and self._overload is not None:
            obs = self._overloaded_poll(obs, start)
        try:
            self._sink(obs)
        except Exception:
            log.exception(
                "observation sink failed for site %s device %s probe %s",
                device.site_id,
                device.device_id,
                name,
            )
