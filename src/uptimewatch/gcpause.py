"""The one owner of the cycle collector's policy: it switches the collector off and on again,
settles the heap after a configuration (re)load, and keeps the collector's passes short.

Building hundreds of thousands of small acyclic objects in one go (a config load, a snapshot, the
/metrics text) lets the cycle collector walk the whole heap several times meanwhile and find
nothing: a third to a half of the work. :func:`no_cycle_collection` pauses it for such a stretch.
The pauses nest and overlap across threads (a reload parses in a worker thread while a scrape
renders in another): the collector comes back when the last one ends, and only if it was on when
the first began.

A pass of the collector walks every tracked object not frozen; when it comes due, it runs in
whichever piece of work allocates then, on the event loop as well. After a load everything is
frozen (:func:`settle_after_load`), but the health model keeps building long-lived status objects
(a full change cycle at 100,000 devices is about a million), and the next full pass over them took
half a second inside a /metrics scrape. :func:`promote` collects what is not frozen and freezes the
survivors: called often (:func:`promote_every`, and after each step that builds many objects) it
keeps that set, and so every pass, small. The price: an object frozen while alive that later
becomes part of an unreachable cycle is not reclaimed (the model's objects are acyclic and die by
reference counting, which freezing does not touch).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many pauses run now, and whether the collector was on before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.resume = False


_PAUSES = _Pauses()
log = logging.getLogger(__name__)


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause the cycle collector for the body (reference counting frees memory as usual)."""
    state = _PAUSES
    with state.lock:
        if state.depth == 0:
            state.resume = gc.isenabled()
            gc.disable()
        state.depth += 1
    try:
        yield
    finally:
        with state.lock:
            state.depth -= 1
            if state.depth == 0 and state.resume:
                gc.enable()


def paused() -> bool:
    """Whether a pause is running."""
    return _PAUSES.depth > 0


def _malloc_trim() -> object:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


_TRIM = _malloc_trim()


def settle_after_load() -> None:
    """After a (re)load: keep what it built out of every later cycle-collector pass (config and
    model objects live until the next reload), and give the memory the parse used and freed back
    to the system.

    Parsing a province file builds a YAML node graph several times the size of what is kept; the C
    allocator keeps those freed pages (in the worker thread's own arena) unless asked: at 300,000
    devices that is gigabytes of RSS holding nothing."""
    gc.freeze()
    trim = _TRIM
    if callable(trim):
        try:
            trim(0)
        except OSError:  # pragma: no cover - a C library that refuses: the memory stays
            log.debug("malloc_trim failed", exc_info=True)


def promote() -> None:
    """Collect the objects not frozen (those built since the last call), then freeze the
    survivors so later passes skip them. Costs in proportion to what was built since; nothing
    while a pause runs (the collector is off on purpose there)."""
    if paused():
        return
    gc.collect()
    gc.freeze()


async def promote_every(period: float) -> None:
    """Run :func:`promote` every ``period`` seconds, for ever (a task of the daemon)."""
    while True:
        await asyncio.sleep(period)
        promote()
