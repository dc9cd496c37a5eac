"""Weekly windows in local time: who is on shift (the duty roster) and when maintenance mutes alerts.

A window is a set of start days and an HH:MM range in the province's time zone; a range whose
end is not after its start runs past midnight into the next day, and belongs to the day it starts
(a night shift "mon 20:00-08:00" covers Monday evening and Tuesday morning).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..config.alerting import WEEKDAYS, RosterShift, clock_minutes


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight, 1..1440; <= start: crosses midnight

    @classmethod
    def of(cls, days: Iterable[str], start: str, end: str) -> Window:
        return cls(frozenset(WEEKDAYS.index(d) for d in days), clock_minutes(start), clock_minutes(end))

    def covers(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # crosses midnight (or a full 24 h when start == end)
        return (day in self.days and minute >= self.start) or (
            (day - 1) % 7 in self.days and minute < self.end
        )


def local_time(now: float, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz)


@dataclass(frozen=True, slots=True)
class Shift:
    roster: str
    receiver: str
    window: Window


class Roster:
    """All shifts of all rosters; :meth:`on_duty` answers who covers a moment."""

    def __init__(self, shifts: Sequence[RosterShift], tz: zoneinfo.ZoneInfo) -> None:
        self.tz = tz
        self._shifts: dict[str, list[Shift]] = {}
        for s in shifts:
            self._shifts.setdefault(s.name, []).append(
                Shift(s.name, s.receiver, Window.of(s.days, s.from_, s.to))
            )

    def names(self) -> set[str]:
        return set(self._shifts)

    def on_duty(self, roster: str, now: float) -> tuple[str, ...]:
        local = local_time(now, self.tz)
        out: list[str] = []
        for shift in self._shifts.get(roster, ()):
            if shift.window.covers(local) and shift.receiver not in out:
                out.append(shift.receiver)
        return tuple(out)
