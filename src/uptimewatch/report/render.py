"""Markdown, CSV and HTML renderings of an availability report.

The HTML is one self-contained file (inline CSS, no script, no web font, no CDN) meant to be
printed or mailed to leadership; the font stack lists fonts that carry Vietnamese diacritics.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .compute import Availability, CriticalReport, Incident, Row

PHASE_TITLES = {"before": "Before", "during": "During", "after": "After"}
BY_TITLES = {"site": "Site", "commune": "Commune", "district": "District", "carrier": "Carrier"}


@dataclass(frozen=True, slots=True)
class Report:
    province: str
    tz: ZoneInfo
    generated_at: float
    main: Availability | None = None
    critical: CriticalReport | None = None

    def when(self, t: float | None) -> str:
        if t is None:
            return "ongoing"
        return dt.datetime.fromtimestamp(t, self.tz).strftime("%Y-%m-%d %H:%M")

    def window(self, start: float, end: float) -> str:
        return f"{self.when(start)} – {self.when(end)} ({self.tz.key})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} %"


COLUMNS = (
    "Availability",
    "Up h",
    "Degraded h",
    "Down h",
    "Unreachable h",
    "Maintenance h",
    "No data h",
    "On battery h",
    "Incidents",
    "MTTR",
)


def _cells(row: Row) -> list[str]:
    s = row.seconds
    return [
        percent(row.availability),
        hours(s["up"]),
        hours(s["degraded"]),
        hours(s["down"]),
        hours(s["unreachable"]),
        hours(s["maintenance"]),
        hours(s["no_data"]),
        hours(row.battery_s),
        str(row.incidents),
        duration(row.mttr_s),
    ]


def _name(row: Row, by: str) -> str:
    return row.name if by == "site" or row.name == row.key else f"{row.name} ({row.key})"


# -- markdown ------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return lines


def _md_availability(report: Report, a: Availability) -> list[str]:
    header = [BY_TITLES[a.by], "Sites", *COLUMNS]
    rows = [[_name(r, a.by), str(r.sites), *_cells(r)] for r in a.rows]
    rows.append(["**Total**", str(a.total.sites), *_cells(a.total)])
    return _md_table(header, rows)


def _md_incidents(report: Report, incidents: tuple[Incident, ...]) -> list[str]:
    if not incidents:
        return ["No downtime incidents."]
    header = ["Site", "Start", "End", "Duration", "Cause", "On battery"]
    rows = [
        [
            i.site_name,
            report.when(i.start),
            report.when(i.end),
            duration(i.duration_s),
            i.cause,
            duration(i.on_battery_s) if i.on_battery_s else "–",
        ]
        for i in incidents
    ]
    return _md_table(header, rows)


def to_markdown(report: Report) -> str:
    out = [f"# Availability report — {report.province}", ""]
    if report.main is not None:
        a = report.main
        out += [f"Period: {report.window(a.start, a.end)}", "", *_md_availability(report, a), ""]
        out += ["## Downtime incidents", "", *_md_incidents(report, a.incidents), ""]
    if report.critical is not None:
        c = report.critical
        out += [f"## Critical period: {c.name}", "", f"Window: {report.window(c.start, c.end)}", ""]
        for phase, a in c.phases:
            out += [f"### {PHASE_TITLES[phase]}: {report.window(a.start, a.end)}", ""]
            out += [*_md_availability(report, a), ""]
        during = dict(c.phases)["during"]
        out += ["### Incidents during the period", "", *_md_incidents(report, during.incidents), ""]
    out.append(f"Generated {report.when(report.generated_at)} by uptimewatch.")
    return "\n".join(out) + "\n"


# -- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = (
    "period",
    "group",
    "name",
    "sites",
    "availability_percent",
    "up_s",
    "degraded_s",
    "down_s",
    "unreachable_s",
    "maintenance_s",
    "no_data_s",
    "on_battery_s",
    "incidents",
    "mttr_s",
)
INCIDENT_HEADER = ("site", "name", "start", "end", "duration_s", "cause", "on_battery_s")


def _csv_rows(period: str, a: Availability) -> list[list[object]]:
    out: list[list[object]] = []
    for r in (*a.rows, a.total):
        s = r.seconds
        avail = r.availability
        mttr = r.mttr_s
        out.append(
            [
                period,
                r.key,
                r.name,
                r.sites,
                "" if avail is None else f"{avail:.4f}",
                *(f"{s[k]:.0f}" for k in ("up", "degraded", "down", "unreachable", "maintenance", "no_data")),
                f"{r.battery_s:.0f}",
                r.incidents,
                "" if mttr is None else f"{mttr:.0f}",
            ]
        )
    return out


def to_csv(report: Report, *, incidents: bool = False) -> str:
    """The availability table (one ``period`` per phase of a critical period), or the incidents."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    tables: list[tuple[str, Availability]] = []
    if report.main is not None:
        tables.append(("report", report.main))
    if report.critical is not None:
        tables += list(report.critical.phases)
    if incidents:
        w.writerow(("period", *INCIDENT_HEADER))
        for period, a in tables:
            for i in a.incidents:
                w.writerow(
                    [
                        period,
                        i.site_id,
                        i.site_name,
                        report.when(i.start),
                        "" if i.end is None else report.when(i.end),
                        f"{i.duration_s:.0f}",
                        i.cause,
                        f"{i.on_battery_s:.0f}",
                    ]
                )
        return buf.getvalue()
    w.writerow(CSV_HEADER)
    for period, a in tables:
        w.writerows(_csv_rows(period, a))
    return buf.getvalue()


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
:root { --fg: #111; --muted: #555; --line: #bbb; --bad: #b00020; --good: #0a6b2f; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans", "DejaVu Sans", "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--fg); margin: 2rem auto; max-width: 75rem; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
.meta { color: var(--muted); margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .45rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { background: #eef1f5; }
tr.total td { font-weight: 700; background: #f6f6f6; }
td.low { color: var(--bad); font-weight: 700; } td.full { color: var(--good); }
.summary { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.summary div { border: 1px solid var(--line); border-radius: .3rem; padding: .5rem .9rem; min-width: 10rem; }
.summary b { display: block; font-size: 1.6rem; }
footer { color: var(--muted); font-size: .8rem; margin-top: 2rem; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-before: auto; } table { font-size: 8.5pt; } tr { break-inside: avoid; }
  thead { display: table-header-group; }
  @page { size: A4 landscape; margin: 12mm; }
}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _avail_class(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 99.999:
        return " full"
    return " low" if value < 99.0 else ""


def _html_availability(a: Availability) -> list[str]:
    head = "".join(f"<th>{_e(c)}</th>" for c in [BY_TITLES[a.by], "Sites", *COLUMNS])
    out = ['<table class="availability">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for r in (*a.rows, a.total):
        cells = _cells(r)
        css = ' class="total"' if r is a.total else ""
        name = "Total" if r is a.total else _name(r, a.by)
        tds = [f'<td class="text">{_e(name)}</td>', f"<td>{r.sites}</td>"]
        tds.append(f'<td class="avail{_avail_class(r.availability)}">{_e(cells[0])}</td>')
        tds += [f"<td>{_e(c)}</td>" for c in cells[1:]]
        out.append(f"<tr{css}>{''.join(tds)}</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _html_incidents(report: Report, incidents: tuple[Incident, ...]) -> list[str]:
    if not incidents:
        return ["<p>No downtime incidents.</p>"]
    head = "".join(f"<th>{c}</th>" for c in ("Site", "Start", "End", "Duration", "Cause", "On battery"))
    out = ['<table class="incidents">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i in incidents:
        out.append(
            "<tr>"
            f'<td class="text">{_e(i.site_name)}</td><td>{_e(report.when(i.start))}</td>'
            f"<td>{_e(report.when(i.end))}</td><td>{_e(duration(i.duration_s))}</td>"
            f'<td class="text">{_e(i.cause)}</td>'
            f"<td>{_e(duration(i.on_battery_s) if i.on_battery_s else '–')}</td>"
            "</tr>"
        )
    out += ["</tbody>", "</table>"]
    return out


def _summary(a: Availability) -> list[str]:
    t = a.total
    return [
        '<div class="summary">',
        f"<div>Availability<b>{_e(percent(t.availability))}</b></div>",
        f"<div>Incidents<b>{t.incidents}</b></div>",
        f"<div>MTTR<b>{_e(duration(t.mttr_s))}</b></div>",
        f"<div>Sites<b>{t.sites}</b></div>",
        "</div>",
    ]


def to_html(report: Report) -> str:
    title = f"Availability report — {report.province}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="vi">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if report.main is not None:
        a = report.main
        out += [f'<p class="meta">Period: {_e(report.window(a.start, a.end))}</p>', *_summary(a)]
        out += [*_html_availability(a), "<h2>Downtime incidents</h2>", *_html_incidents(report, a.incidents)]
    if report.critical is not None:
        c = report.critical
        out += [
            f"<h2>Critical period: {_e(c.name)}</h2>",
            f'<p class="meta">Window: {_e(report.window(c.start, c.end))}</p>',
        ]
        out += _html_phase_summary(c)
        for phase, a in c.phases:
            out += [f"<h3>{PHASE_TITLES[phase]}: {_e(report.window(a.start, a.end))}</h3>"]
            out += _html_availability(a)
        during = dict(c.phases)["during"]
        out += ["<h3>Incidents during the period</h3>", *_html_incidents(report, during.incidents)]
    out += [
        f"<footer>Generated {_e(report.when(report.generated_at))} by uptimewatch. Availability = "
        "(up + degraded) / (up + degraded + down); unreachable, maintenance and no-data time are "
        "shown apart and not counted.</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(out) + "\n"


def _html_phase_summary(c: CriticalReport) -> list[str]:
    head = "".join(f"<th>{PHASE_TITLES[p]}</th>" for p, _ in c.phases)
    avail = "".join(
        f'<td class="avail{_avail_class(a.total.availability)}">{_e(percent(a.total.availability))}</td>'
        for _, a in c.phases
    )
    incidents = "".join(f"<td>{a.total.incidents}</td>" for _, a in c.phases)
    down = "".join(f"<td>{hours(a.total.seconds['down'])}</td>" for _, a in c.phases)
    return [
        '<table class="phases">',
        f"<thead><tr><th></th>{head}</tr></thead>",
        "<tbody>",
        f'<tr><td class="text">Availability</td>{avail}</tr>',
        f'<tr><td class="text">Incidents</td>{incidents}</tr>',
        f'<tr><td class="text">Down h</td>{down}</tr>',
        "</tbody>",
        "</table>",
    ]
