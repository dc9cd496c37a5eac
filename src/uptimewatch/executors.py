"""Bounded thread pools ("lanes") for the blocking work the daemon cannot avoid.

asyncio's default executor is one pool for everything, so 200 bcrypt checks queued by wrong
passwords would make a ``/metrics`` scrape wait behind them. Each kind of blocking work gets its
own lane here instead, with a fixed number of threads and a bound on the work waiting for them:

* ``auth``: bcrypt password checks (deliberately slow). A full lane refuses at once
  (:class:`LaneFull`), so a flood is answered 503 instead of queueing for minutes.
* ``render``: writing the ``/metrics`` text, reading the status page's static files.
* ``config``: reading and validating the configuration and profiles, TLS contexts, key files.
* ``dns``: ``getaddrinfo`` for device host names (a dead resolver blocks a thread for seconds).

Lanes are per process, like the default executor they replace; their threads start on first use.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

T = TypeVar("T")


class LaneFull(Exception):
    """The lane has as much work waiting as it may hold; try again later."""


@dataclass(frozen=True, slots=True)
class LaneStats:
    name: str
    workers: int
    pending: int  # running or waiting for a thread
    rejected: int  # refused because the lane was full


class Lane:
    """``workers`` threads, and at most ``workers + max_waiting`` calls admitted at once."""

    def __init__(self, name: str, workers: int, max_waiting: int) -> None:
        self.name = name
        self.workers = workers
        self.max_waiting = max_waiting
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._rejected = 0

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"uptimewatch-{self.name}")
            return self._pool

    @property
    def full(self) -> bool:
        return self._pending >= self.workers + self.max_waiting

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` on the lane; raises :class:`LaneFull` rather than queue
        beyond the bound. The call is not cancelled with the awaiting task (threads cannot be):
        it still counts against the bound until it returns."""
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                self._rejected += 1
                raise LaneFull(f"the {self.name} lane is busy ({self._pending} calls pending)")
            self._pending += 1
        try:
            job = self._executor().submit(functools.partial(func, *args, **kwargs))
        except BaseException:
            self._done(None)
            raise
        # on the pool's future, not asyncio's: a cancelled await does not stop the thread
        job.add_done_callback(self._done)
        return await asyncio.wrap_future(job)

    def _done(self, _job: object) -> None:
        with self._lock:
            self._pending -= 1

    def stats(self) -> LaneStats:
        return LaneStats(self.name, self.workers, self._pending, self._rejected)


AUTH: Final = Lane("auth", workers=2, max_waiting=16)
RENDER: Final = Lane("render", workers=2, max_waiting=64)
CONFIG: Final = Lane("config", workers=2, max_waiting=64)
DNS: Final = Lane("dns", workers=4, max_waiting=4096)
LANES: Final = (AUTH, RENDER, CONFIG, DNS)


async def getaddrinfo(
    host: str, port: int | str | None, *, family: int = 0, type: int = 0
) -> list[tuple[Any, ...]]:
    """``loop.getaddrinfo`` on the DNS lane; ``OSError`` (``socket.gaierror``) as usual, also
    when the lane is full (too many unanswered look-ups: the resolver is not answering)."""
    try:
        return await DNS.run(socket.getaddrinfo, host, port, family, type)
    except LaneFull as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
