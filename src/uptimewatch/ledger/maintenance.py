"""Maintenance windows as the ledger and the reports see them.

The alert engine's ``alerting.maintenance`` windows are recurring (days of the week, HH:MM
local time) and match alerts by label. A window counts as *site* maintenance only when every
one of its matchers names a site-level label: a window that mutes one alert name (``alertname:
OnBattery``) says nothing about whether the site itself was being worked on.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

#: Labels that describe a site as a whole; matchers on anything else are alert-specific.
SITE_LABELS: Final = frozenset({"province", "district", "commune", "carrier", "site", "priority"})
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class MaintenanceSpan:
    """One occurrence of a window: [start, end) in unix time, for the sites its matchers select."""

    name: str
    start: float
    end: float
    matchers: Mapping[str, str]
    comment: str = ""

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        return all(re.fullmatch(rx, labels.get(k, "")) is not None for k, rx in self.matchers.items())


def site_labels(
    province: str, site_id: str, *, district: str, commune: str | None, carrier: str, priority: str
) -> dict[str, str]:
    return {
        "province": province,
        "site": site_id,
        "district": district,
        "commune": commune or "",
        "carrier": carrier,
        "priority": priority,
    }


def _clock_minutes(value: str) -> int:
    hours, _, minutes = value.partition(":")
    return int(hours) * 60 + int(minutes or 0)


def site_windows(config: Any) -> list[Any]:
    """The configured windows that describe site maintenance (none while alerting is absent)."""
    alerting = getattr(config, "alerting", None)
    windows = getattr(alerting, "maintenance", None) or []
    return [w for w in windows if w.matchers and set(w.matchers) <= SITE_LABELS]


def occurrences(windows: Iterable[Any], tz: ZoneInfo, start: float, end: float) -> list[MaintenanceSpan]:
    """Every occurrence of the recurring ``windows`` that overlaps [start, end)."""
    out: list[MaintenanceSpan] = []
    first = dt.datetime.fromtimestamp(start, tz).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, tz).date()
    for window in windows:
        days = set(window.days)
        begin, finish = _clock_minutes(window.from_), _clock_minutes(window.to)
        if finish <= begin:
            finish += 24 * 60  # "22:00-02:00" ends the next day
        day = first
        while day <= last:
            if WEEKDAYS[day.weekday()] in days:
                midnight = dt.datetime.combine(day, dt.time(), tz)
                s = (midnight + dt.timedelta(minutes=begin)).timestamp()
                e = (midnight + dt.timedelta(minutes=finish)).timestamp()
                if e > start and s < end:
                    out.append(MaintenanceSpan(window.name, s, e, dict(window.matchers), window.comment))
            day += dt.timedelta(days=1)
    return out
