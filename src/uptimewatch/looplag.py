"""How late the daemon's own event loop runs, so that an overloaded monitor blames itself.

A timer wakes every :data:`PERIOD` seconds and notes how late it woke: that is the loop's lag,
the time a callback that was ready had to wait (a busy section of code, a CPU the machine does
not give us, thousands of requests at once). A reply that reached the socket in time waits just
as long, so a poll that timed out while the loop was that late says nothing about the device.

The scheduler asks :meth:`LoopLag.late_since` about every timed-out poll (a stall counts for
the polls it overlaps, and for those started while its backlog drains: as long again after it);
the alert engine asks :meth:`LoopLag.overload` for ``MonitorOverloaded``; ``/metrics`` exports
:meth:`LoopLag.recent` as ``uptimewatch_event_loop_lag_seconds``. A stall still in progress
counts too: when the poll's deadline fires right after a long busy section, the timer has not
run yet, but the time since it was due says how late the loop is.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: seconds between two measurements
PERIOD = 0.1
#: lags below this are not kept (the loop is well); lags above any sensible threshold are
FLOOR = 0.02
#: how far back measurements are kept: longer than any poll and any clear-after delay
HORIZON = 900.0
#: samples are scanned back this far past a question's start for a stall whose drain reaches it
HORIZON_MAX_LAG = 60.0
#: the window of :meth:`LoopLag.recent`, the exported gauge
RECENT = 10.0


@dataclass(frozen=True, slots=True)
class Overload:
    """The loop has been late by at least the threshold within the clear-after window."""

    lag: float  # the worst lag in that window, seconds
    since: float  # monotonic time the loop was first found late, in this spell
    last: float  # monotonic time it was last found late


class LoopLag:
    """Measures the running event loop's lag. ``threshold`` and ``clear_after`` are read at each
    question, so a reload changes them at once."""

    def __init__(
        self,
        *,
        threshold: Callable[[], float],
        clear_after: Callable[[], float],
        period: float = PERIOD,
    ) -> None:
        self._threshold = threshold
        self._clear_after = clear_after
        self._period = period
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0
        self._samples: collections.deque[tuple[float, float]] = collections.deque()  # (woke at, lag)
        self._spell: tuple[float, float] | None = None  # (since, last) of the current overload
        self.worst = 0.0  # the largest lag seen since the start

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._handle is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._expected = loop.time() + self._period
        self._handle = loop.call_at(self._expected, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lag = max(0.0, now - self._expected)
        self._note(now, lag)
        self._expected = now + self._period
        self._handle = self._loop.call_at(self._expected, self._tick)

    def _note(self, now: float, lag: float) -> None:
        samples = self._samples
        if lag >= FLOOR:
            samples.append((now, lag))
            self.worst = max(self.worst, lag)
            if lag >= self._threshold():
                since = self._spell[0] if self._spell is not None else now - lag
                if self._spell is None:
                    log.warning(
                        "event loop %.2f s late: the monitor is overloaded; timeouts meanwhile are "
                        "unknown, not held against the devices",
                        lag,
                    )
                self._spell = (since, now)
        while samples and samples[0][0] < now - HORIZON:
            samples.popleft()
        if self._spell is not None and now - self._spell[1] > self._clear_after():
            log.warning(
                "event loop on time again after %.0f s of overload (worst lag %.2f s)",
                self._spell[1] - self._spell[0],
                self._worst_since(self._spell[0], now),
            )
            self._spell = None

    # -- questions ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _stalled(self, now: float) -> float:
        """How late the loop is right now: the measurement due but not yet run."""
        if self._handle is None:
            return 0.0
        return max(0.0, now - self._expected)

    def _worst_since(self, start: float, now: float) -> float:
        worst = self._stalled(now)
        # a sample woken at ``t`` with lag ``l`` covers the stall [t - l, t], and as long again
        # after it: the work that piled up meanwhile (polls due, replies queued, all at once)
        # takes about that long to drain, and a poll started then waits behind it
        for woke, lag in reversed(self._samples):
            if woke + lag < start:
                if woke + HORIZON_MAX_LAG < start:
                    break
                continue
            worst = max(worst, lag)
        return worst

    def recent(self, window: float = RECENT) -> float:
        """The worst lag of the last ``window`` seconds (the exported gauge)."""
        now = self._now()
        return self._worst_since(now - window, now)

    def late_since(self, start: float) -> float | None:
        """The worst lag since ``start`` (monotonic, the loop's clock) when it reached the
        threshold, else None: whether a poll that began at ``start`` and timed out now may have
        timed out because of us."""
        lag = self._worst_since(start, self._now())
        return lag if lag >= self._threshold() else None

    def overload(self) -> Overload | None:
        """The overload spell in progress: the loop was late by the threshold or more within the
        last ``clear_after`` seconds. A stall in progress starts or extends one."""
        now = self._now()
        stalled = self._stalled(now)
        # notes the stall in progress when it is one (the timer has not woken yet), else only
        # prunes and ends a spell whose clear-after delay has passed
        self._note(now, stalled if stalled >= self._threshold() else 0.0)
        if self._spell is None:
            return None
        since, last = self._spell
        return Overload(self._worst_since(since, now), since, last)
