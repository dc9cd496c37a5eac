"""Wall time for timestamps, the monotonic clock for durations, and the steps between them.

A NOC box's clock gets stepped: NTP corrects a clock that was an hour off, an operator sets it by
hand. Times people read and the store keeps (``fired_at``, ledger intervals, ``started_at``) are
wall time and must follow such a step; durations (an alert's ``for``, ``resolve_after``, a reminder
interval, a round-trip time) must not notice it. Go's ``time.Time`` carries both readings for that
reason; here a component that keeps wall-time stamps and measures durations between them reads
:class:`WallSteps`, which says by how much the wall clock jumped since the last reading, and moves
its own stamps by that much: durations stay what they were, stamps stay true in the new wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

#: A change of the wall clock against the monotonic clock, between two readings, smaller than this
#: is not a step: NTP slews the clock by at most 500 ppm, which follows the real time anyway.
STEP_TOLERANCE: Final = 0.5


class WallSteps:
    """Reads the wall clock and notices when it stepped against the monotonic clock.

    ``read()`` returns the wall time and the step (seconds, signed) since the previous reading,
    0.0 when there was none. With an injected wall clock and no monotonic clock, the injected clock
    stands for both: a test clock that jumps an hour ahead means an hour passed.
    """

    __slots__ = ("_monotonic", "_offset", "_tolerance", "_wall")

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        *,
        tolerance: float = STEP_TOLERANCE,
    ) -> None:
        self._wall = wall
        if monotonic is None:
            monotonic = time.monotonic if wall is time.time else wall
        self._monotonic = monotonic
        self._tolerance = tolerance
        self._offset: float | None = None

    @property
    def monotonic(self) -> Callable[[], float]:
        """The clock durations are measured on."""
        return self._monotonic

    def read(self) -> tuple[float, float]:
        wall = self._wall()
        offset = wall - self._monotonic()
        before, self._offset = self._offset, offset
        if before is None:
            return wall, 0.0
        step = offset - before
        return wall, step if abs(step) >= self._tolerance else 0.0
