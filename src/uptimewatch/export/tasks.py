"""Metrics of the daemon's background work: supervised loops and the ledger's write queue."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..supervisor import TaskStats


class QueueStats(Protocol):
    """The ledger's write queue (``uptimewatch.ledger.LedgerStats``)."""

    @property
    def pending(self) -> int: ...

    @property
    def dropped(self) -> Mapping[str, int]: ...


class TaskCollector(Collector):
    def __init__(
        self,
        get_tasks: Callable[[], Sequence[TaskStats]],
        get_ledger: Callable[[], QueueStats] | None = None,
    ) -> None:
        self._get_tasks = get_tasks
        self._get_ledger = get_ledger

    def collect(self) -> Iterator[Metric]:
        tasks = self._get_tasks()
        restarts = CounterMetricFamily(
            "uptimewatch_task_restarts",
            "Restarts of a background task after it crashed (the crash is logged with its traceback).",
            labels=["task"],
        )
        up = GaugeMetricFamily(
            "uptimewatch_task_up",
            "1 while a background task runs, 0 while it waits to restart after a crash.",
            labels=["task"],
        )
        for t in tasks:
            restarts.add_metric([t.name], t.restarts)
            up.add_metric([t.name], 1.0 if t.up else 0.0)
        yield restarts
        yield up
        if self._get_ledger is not None:
            ledger = self._get_ledger()
            yield GaugeMetricFamily(
                "uptimewatch_ledger_pending_changes",
                "State changes waiting to be written to the ledger (bounded; grows while the store fails).",
                value=ledger.pending,
            )
            dropped = CounterMetricFamily(
                "uptimewatch_ledger_dropped_changes",
                "State changes the ledger gave up: overflow (the bounded queue was full) or poison"
                " (a change that cannot be written, set aside so the rest could be).",
                labels=["reason"],
            )
            for reason, n in sorted(ledger.dropped.items()):
                dropped.add_metric([reason], n)
            yield dropped

    def describe(self) -> Iterator[Metric]:
        return iter(())
