"""Counters the scheduler and the alert engine keep about themselves, as plain data the exporter
renders at scrape time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the scheduler lag histogram; +Inf is implied.
LAG_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """A consistent copy of the scheduler's counters.

    ``lag_counts[i]`` counts polls whose start lagged their due time by at most
    ``LAG_BUCKETS[i]`` and more than the previous bound (not cumulative); the last element
    counts the ones above the largest bound, so ``len(lag_counts) == len(LAG_BUCKETS) + 1``.
    """

    lag_counts: tuple[int, ...] = (0,) * (len(LAG_BUCKETS) + 1)
    lag_sum: float = 0.0
    polls: Mapping[str, int] = field(default_factory=dict)  # by probe name: polls finished
    missed_cycles: Mapping[str, int] = field(default_factory=dict)  # by probe name
    deadline_exceeded: Mapping[str, int] = field(default_factory=dict)  # by probe name
    overloaded: Mapping[str, int] = field(default_factory=dict)  # by probe: timeouts blamed on us
    in_flight: int = 0
    targets: Mapping[str, int] = field(default_factory=dict)  # by probe name: scheduled jobs

    @property
    def lag_count(self) -> int:
        return sum(self.lag_counts)


@dataclass(frozen=True, slots=True)
class AlertStats:
    """What the alert engine reports: alerts per (state, severity), notices handed over per kind,
    and when it last evaluated (the heartbeat: a stale value means alerting has stopped)."""

    counts: Mapping[tuple[str, str], int]
    notifications: Mapping[str, int]
    heartbeat_timestamp: float | None
