"""The one place that switches Python's cycle collector off and on again.

Building hundreds of thousands of small acyclic objects in one go (a config load, a snapshot, the
/metrics text) lets the cycle collector walk the whole heap several times meanwhile and find
nothing: a third to a half of the work. :func:`no_cycle_collection` pauses it for such a stretch.
The pauses nest and overlap across threads (a reload parses in a worker thread while a scrape
renders in another): the collector comes back when the last one ends, and only if it was on when
the first began.
"""

from __future__ import annotations

import gc
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
