"""Supervised background work: a loop that crashes is logged with its context, counted and
restarted with backoff, and while a vital one waits to restart the daemon is not ready.

Every long-lived loop of the daemon (ledger writer, alert engine with its time-to-dark rule,
outbox channel workers, telemetry subscriber, MQTT link, scheduler) runs under
:meth:`Supervisor.spawn` instead of a bare ``asyncio.create_task``. A bare task that raises just
ends: nobody notices until asyncio prints "Task exception was never retrieved" at exit, and the
work it did (writing the ledger, sending notices) silently stops.

A loop that returns normally has finished (it was told to stop) and is not restarted;
cancelling the returned task stops it for good. ``uptimewatch_task_restarts_total{task}`` and
``uptimewatch_task_up{task}`` come from :meth:`Supervisor.stats`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .redact import redact

log = logging.getLogger(__name__)

Loop = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TaskStats:
    name: str
    vital: bool
    up: bool
    restarts: int
    last_error: str | None


@dataclass
class _Entry:
    name: str
    vital: bool
    context: str
    up: bool = True
    down_since: float | None = None
    last_error: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Supervisor:
    """Restarts crashed loops: ``initial_backoff`` doubling to ``max_backoff`` (with jitter), back
    to ``initial_backoff`` once a run lasted ``stable_after`` seconds."""

    def __init__(
        self,
        *,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        stable_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._restarts: dict[str, int] = {}  # by name, across respawns (a reload restarts workers)

    def spawn(self, name: str, loop: Loop, *, vital: bool = False, context: str = "") -> asyncio.Task[None]:
        """Run ``loop()`` until it returns or the task is cancelled, restarting it when it raises.
        ``context`` goes into the crash log (which site, channel or broker the loop serves)."""
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry(name, vital, context)
        entry.vital, entry.context, entry.up, entry.down_since = vital, context, True, None
        self._restarts.setdefault(name, 0)
        task = asyncio.create_task(self._supervise(entry, loop), name=name)
        entry.tasks.add(task)
        task.add_done_callback(lambda t: self._finished(entry, t))
        return task

    def _finished(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        entry.tasks.discard(task)
        if not entry.tasks:
            # stopped on purpose: neither up nor a fault; a later spawn under the name revives it
            entry.up, entry.down_since = True, None
            if self._entries.get(entry.name) is entry:
                del self._entries[entry.name]

    async def _supervise(self, entry: _Entry, loop: Loop) -> None:
        delay = self.initial_backoff
        while True:
            started = self._clock()
            entry.up, entry.down_since = True, None
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._clock() - started >= self.stable_after:
                    delay = self.initial_backoff
                self._restarts[entry.name] = self._restarts.get(entry.name, 0) + 1
                entry.up, entry.down_since = False, self._clock()
                entry.last_error = redact(f"{type(exc).__name__}: {exc}")
                wait = delay * random.uniform(0.8, 1.2)
                log.error(
                    "background task %s%s crashed (restart %d, in %.1f s)",
                    entry.name,
                    f" ({entry.context})" if entry.context else "",
                    self._restarts[entry.name],
                    wait,
                    exc_info=True,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.max_backoff)
            else:
                return

    # -- what the daemon reads ---------------------------------------------------------------------

    def stats(self) -> list[TaskStats]:
        """Every loop known by name: the running ones and those that ever restarted."""
        out: dict[str, TaskStats] = {}
        for name, restarts in self._restarts.items():
            entry = self._entries.get(name)
            if entry is None and not restarts:
                continue  # stopped for good (a channel a reload removed) and never crashed
            out[name] = TaskStats(
                name,
                entry.vital if entry else False,
                entry.up if entry else True,
                restarts,
                entry.last_error if entry else None,
            )
        return [out[k] for k in sorted(out)]

    def vital_down(self) -> list[TaskStats]:
        """Vital loops waiting to restart after a crash: the daemon is not ready meanwhile."""
        return [s for s in self.stats() if s.vital and not s.up]
