"""Availability arithmetic over the ledger: pure functions of intervals and a time window.

Every second of the window lands in exactly one bucket, in this order of precedence:
maintenance (a maintenance window covered the site), then the recorded site state (up,
degraded, down, unreachable), else no data (unknown, or the daemon was not running).

    availability = (up + degraded) / (up + degraded + down)

Unreachable time (cut off behind a failed upstream: we cannot tell) and maintenance are
reported apart and left out of both sides. An incident is a run of ``down`` outside
maintenance; its cause is the reason recorded when it began; MTTR is the mean full duration of
the incidents that ended inside the window.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ..i18n import Phrase, phrase_loads
from ..ledger.maintenance import MaintenanceSpan, site_labels

GroupBy = Literal["site", "commune", "district", "carrier"]
GROUP_BY: Final[tuple[GroupBy, ...]] = ("site", "commune", "district", "carrier")
BUCKETS: Final = ("up", "degraded", "down", "unreachable", "maintenance", "no_data")


@dataclass(frozen=True, slots=True)
class Span:
    state: str
    reason: Phrase  # as the daemon recorded it: rendered in the report's language
    start: float
    end: float | None  # None: still open


@dataclass(frozen=True, slots=True)
class SiteInfo:
    site_id: str
    name: str
    district: str
    commune: str | None
    carrier: str
    priority: str = "normal"


@dataclass(frozen=True, slots=True)
class Incident:
    site_id: str
    site_name: str
    start: float
    end: float | None  # None: the site was still down when the data ends
    duration_s: float  # from start to end (or to the end of the data)
    cause: Phrase
    on_battery_s: float  # battery time from the mains failure up to the end of the incident


@dataclass(slots=True)
class Row:
    """One line of the availability table: a site, or a group of sites."""

    key: str
    name: str
    sites: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0.0))
    battery_s: float = 0.0
    incidents: int = 0
    repairs: list[float] = field(default_factory=list)  # durations of incidents that ended

    @property
    def judged_s(self) -> float:
        s = self.seconds
        return s["up"] + s["degraded"] + s["down"]

    @property
    def availability(self) -> float | None:
        """Percent, or None when nothing was judged."""
        judged = self.judged_s
        if judged <= 0:
            return None
        return 100.0 * (self.seconds["up"] + self.seconds["degraded"]) / judged

    @property
    def mttr_s(self) -> float | None:
        return sum(self.repairs) / len(self.repairs) if self.repairs else None

    def add(self, other: Row) -> None:
        self.sites += other.sites
        for k, v in other.seconds.items():
            self.seconds[k] += v
        self.battery_s += other.battery_s
        self.incidents += other.incidents
        self.repairs.extend(other.repairs)


@dataclass(frozen=True, slots=True)
class Ledger:
    """What the reports read: intervals per site, and until when the data goes."""

    sites: Mapping[str, SiteInfo]
    states: Mapping[str, Sequence[Span]]
    battery: Mapping[str, Sequence[tuple[float, float | None]]]
    maintenance: Sequence[MaintenanceSpan]
    data_end: float  # open intervals end here (the last heartbeat)
    province: str = ""


@dataclass(frozen=True, slots=True)
class Availability:
    start: float
    end: float
    by: GroupBy
    rows: tuple[Row, ...]
    total: Row
    incidents: tuple[Incident, ...]


# -- interval helpers ----------------------------------------------------------------------------


def _clip(start: float, end: float, lo: float, hi: float) -> tuple[float, float] | None:
    s, e = max(start, lo), min(end, hi)
    return (s, e) if e > s else None


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _overlap(s: float, e: float, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for a, b in spans)


# -- the computation -----------------------------------------------------------------------------


def site_row(ledger: Ledger, site: SiteInfo, start: float, end: float) -> tuple[Row, list[Incident]]:
    row = Row(site.site_id, site.name, sites=1)
    labels = site_labels(
        ledger.province,
        site.site_id,
        district=site.district,
        commune=site.commune,
        carrier=site.carrier,
        priority=site.priority,
    )
    maint = _merge(
        c
        for m in ledger.maintenance
        if m.applies_to(labels) and (c := _clip(m.start, m.end, start, end)) is not None
    )
    row.seconds["maintenance"] = sum(e - s for s, e in maint)
    spans = ledger.states.get(site.site_id, ())
    for span in spans:
        span_end = span.end if span.end is not None else ledger.data_end
        clipped = _clip(span.start, span_end, start, end)
        if clipped is None:
            continue
        s, e = clipped
        outside = (e - s) - _overlap(s, e, maint)
        bucket = span.state if span.state in BUCKETS else "no_data"
        row.seconds[bucket] += outside
    covered = sum(v for k, v in row.seconds.items() if k != "no_data")
    row.seconds["no_data"] = max(0.0, (end - start) - covered)

    battery = [(s, e if e is not None else ledger.data_end) for s, e in ledger.battery.get(site.site_id, ())]
    battery = _merge(battery)
    row.battery_s = sum(c[1] - c[0] for s, e in battery if (c := _clip(s, e, start, end)) is not None)

    incidents: list[Incident] = []
    for inc_start, inc_end, cause in _down_runs(spans, ledger.data_end):
        closed = inc_end is not None
        stop = inc_end if inc_end is not None else ledger.data_end
        clipped = _clip(inc_start, stop, start, end)
        if clipped is None or clipped[1] - clipped[0] - _overlap(*clipped, maint) <= 0:
            continue  # outside the window, or entirely during maintenance
        on_battery = sum(min(e, stop) - s for s, e in battery if s < stop and e >= inc_start)
        incidents.append(
            Incident(
                site.site_id, site.name, inc_start, inc_end, stop - inc_start, cause, max(0.0, on_battery)
            )
        )
        row.incidents += 1
        if closed and start < stop <= end:
            row.repairs.append(stop - inc_start)
    return row, incidents


DownRun = tuple[float, float | None, Phrase]


def _down_runs(spans: Sequence[Span], data_end: float) -> list[DownRun]:
    """Consecutive ``down`` spans joined into one run each: (start, end or None, first reason)."""
    runs: list[DownRun] = []
    current: DownRun | None = None
    for span in sorted(spans, key=lambda s: s.start):
        if span.state == "down":
            if current is not None and current[1] is not None and span.start <= current[1]:
                current = (current[0], span.end, current[2])
            else:
                if current is not None:
                    runs.append(current)
                current = (span.start, span.end, span.reason)
        elif current is not None:
            runs.append(current)
            current = None
    if current is not None:
        runs.append(current)
    return runs


def _group_of(site: SiteInfo, by: GroupBy) -> str:
    if by == "site":
        return site.site_id
    if by == "commune":
        return f"{site.district}/{site.commune or '-'}"
    if by == "district":
        return site.district
    return site.carrier


def availability(
    ledger: Ledger,
    start: float,
    end: float,
    by: GroupBy = "site",
    names: Mapping[str, str] | None = None,
    *,
    on_site: Callable[[], None] | None = None,
) -> Availability:
    """The table for [start, end); ``names`` gives display names of groups (district ids...).
    ``on_site`` is called after each site (progress of a long report)."""
    names = names or {}
    groups: dict[str, Row] = {}
    total = Row("total", "Total")
    incidents: list[Incident] = []
    for site in sorted(ledger.sites.values(), key=lambda s: s.site_id):
        row, found = site_row(ledger, site, start, end)
        if on_site is not None:
            on_site()
        if row.seconds["no_data"] >= end - start and not found:
            continue  # the site did not exist in the window
        incidents += found
        key = _group_of(site, by)
        if by == "site":
            groups[key] = row
        else:
            group = groups.get(key)
            if group is None:
                group = groups[key] = Row(key, names.get(key, key))
            group.add(row)
        total.add(row)
    incidents.sort(key=lambda i: (i.start, i.site_id))
    return Availability(start, end, by, tuple(groups[k] for k in sorted(groups)), total, tuple(incidents))


# -- reading the database ------------------------------------------------------------------------


#: Rows read between two progress calls.
_BATCH: Final = 5000


def read_ledger(
    path: Path,
    *,
    province: str = "",
    now: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Ledger:
    """Read the daemon's database read-only. Intervals still open end at the last heartbeat
    (the daemon writes one every few seconds while running). ``progress(rows read, rows in
    all)`` is called as the intervals come in (months of ledger take a while)."""
    if not path.exists():
        raise FileNotFoundError(f"no ledger database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sites = {
            r[0]: SiteInfo(r[0], r[1], r[2], r[3], r[4], r[5])
            for r in conn.execute(
                "SELECT site_id, name, district, commune, carrier, priority FROM ledger_site"
            )
        }
        states: dict[str, list[Span]] = {}
        total = conn.execute("SELECT COUNT(*) FROM ledger_site_interval").fetchone()[0]
        if progress is not None:
            progress(0, total)
        cursor = conn.execute(
            "SELECT site_id, state, reason, start_at, end_at FROM ledger_site_interval ORDER BY start_at, id"
        )
        done = 0
        while batch := cursor.fetchmany(_BATCH):
            for site_id, state, reason, s, e in batch:
                states.setdefault(site_id, []).append(Span(state, phrase_loads(reason), s, e))
            done += len(batch)
            if progress is not None:
                progress(done, total)
        battery: dict[str, list[tuple[float, float | None]]] = {}
        for site_id, s, e in conn.execute(
            "SELECT site_id, start_at, end_at FROM ledger_battery_interval ORDER BY start_at"
        ):
            battery.setdefault(site_id, []).append((s, e))
        maintenance = [
            MaintenanceSpan(name, s, e, json.loads(m), comment)
            for name, s, e, m, comment in conn.execute(
                "SELECT name, start_at, end_at, matchers, comment FROM ledger_maintenance"
            )
        ]
        row = conn.execute("SELECT value FROM ledger_meta WHERE key = 'heartbeat'").fetchone()
    except sqlite3.OperationalError as exc:
        raise ValueError(f"{path} holds no availability ledger: {exc}") from exc
    finally:
        conn.close()
    data_end = float(row[0]) if row else 0.0
    if now is not None:
        data_end = min(data_end, now) if data_end else now
    for site_id in states.keys() - sites.keys():
        sites[site_id] = SiteInfo(site_id, site_id, "", None, "")
    return Ledger(sites, states, battery, maintenance, data_end, province)


@dataclass(frozen=True, slots=True)
class CriticalReport:
    """A dated window (polling day) with the same length of time before and after it."""

    name: str
    start: float
    end: float
    phases: tuple[tuple[str, Availability], ...]  # ("before" | "during" | "after", table)


def critical_period(
    ledger: Ledger,
    name: str,
    start: float,
    end: float,
    *,
    margin: float | None = None,
    by: GroupBy = "district",
    names: Mapping[str, str] | None = None,
    on_site: Callable[[], None] | None = None,
) -> CriticalReport:
    span = margin if margin is not None else end - start
    phases = (
        ("before", availability(ledger, start - span, start, by, names, on_site=on_site)),
        ("during", availability(ledger, start, end, by, names, on_site=on_site)),
        ("after", availability(ledger, end, end + span, by, names, on_site=on_site)),
    )
    return CriticalReport(name, start, end, phases)
