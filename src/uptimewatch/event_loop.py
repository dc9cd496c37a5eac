"""Which event loop the daemon runs on: uvloop where it is installed (the ``fast`` extra), asyncio's
own otherwise, or whichever ``UPTIMEWATCH_EVENT_LOOP`` names (``asyncio`` or ``uvloop``).

Which one costs less depends on the work (``bench/poll_bench.py --loop``, bench/README.md). On
2026-12-04, interleaved runs: SNMP alone 6–16% less CPU on uvloop, ICMP alone 3–6% less, a cluster
node 10% less (nats-py's streams), but SNMP and ICMP together 13–19% more, for reasons not found
yet. asyncio's own loop stays supported: the in-process tests run on it, the daemons the tests
start run on uvloop (the test extra installs it), and ``tests/test_event_loop.py`` polls on both;
``UPTIMEWATCH_EVENT_LOOP=asyncio`` is the choice for a single node that pings and polls alike.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable

ENV = "UPTIMEWATCH_EVENT_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopError(Exception):
    """The event loop asked for cannot be had."""


def loop_factory(choice: str | None = None) -> tuple[str, LoopFactory | None]:
    """The loop's name and the factory for :class:`asyncio.Runner` (None: asyncio's own).

    ``choice`` defaults to ``$UPTIMEWATCH_EVENT_LOOP``, then ``auto``: uvloop if it imports."""
    wanted = (choice if choice is not None else os.environ.get(ENV, "")).strip().lower() or "auto"
    if wanted not in CHOICES:
        raise EventLoopError(f"{ENV}={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if wanted == "uvloop":
            raise EventLoopError(f"{ENV}=uvloop, but uvloop is not installed ({exc})") from exc
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory
