"""Markdown, CSV and HTML renderings of an availability report, in the report's language.

Every heading, label and reason goes through the gettext catalog (domain ``uptimewatch``);
numbers, dates and durations are written the reader's way by :class:`~uptimewatch.i18n.Translator`
(Vietnamese ``99,216 %``, ``03/12/2026``). The CSV translates its headers and labels but keeps
its values machine-readable (seconds, ISO 8601 times, a dot as decimal mark) in both languages, so
a spreadsheet or a script reads the same numbers from either.

The HTML is one self-contained file (inline CSS and SVG charts, no script, no web font, no CDN)
meant to be printed, mailed to leadership or turned into the PDF (:mod:`.pdf`); its font stack
names fonts that carry Vietnamese diacritics (Noto Sans, DejaVu Sans).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from ..i18n import N_, Translator, translator
from .charts import Band, Lane, Series, availability_bars, availability_percent, incident_timeline
from .compute import Availability, CriticalReport, Incident, Row

PHASE_TITLES: Final = {"before": N_("Before"), "during": N_("During"), "after": N_("After")}
BY_TITLES: Final = {
    "site": N_("Site"),
    "commune": N_("Commune"),
    "district": N_("District"),
    "carrier": N_("Carrier"),
}
#: Lanes drawn on the incident timeline; the others are counted under it (the table lists all).
TIMELINE_LANES: Final = 18


@dataclass(frozen=True, slots=True)
class Report:
    """What one rendering needs. ``districts`` and ``critical_districts`` are the same windows
    grouped by district, for the charts, when the tables are grouped otherwise."""

    province: str
    tz: ZoneInfo
    generated_at: float
    main: Availability | None = None
    critical: CriticalReport | None = None
    language: str = "en"
    districts: Availability | None = None
    critical_districts: CriticalReport | None = None

    @property
    def t(self) -> Translator:
        return _translator(self.language, self.tz)

    def when(self, at: float | None) -> str:
        """A moment in the report's language and time zone; None is an incident still going on."""
        if at is None:
            return self.t.gettext("ongoing")
        return self.t.datetime(at)

    def window(self, start: float, end: float) -> str:
        return f"{self.when(start)} – {self.when(end)} ({self.tz.key})"


@functools.lru_cache(maxsize=8)
def _translator(language: str, tz: ZoneInfo) -> Translator:
    return translator(language, tz=tz)


def _hours(t: Translator, seconds: float) -> str:
    return t.number(seconds / 3600.0, 2)


def _duration(t: Translator, seconds: float | None) -> str:
    return t.duration(seconds) if seconds else "–" if seconds is None else t.duration(0)


def _columns(t: Translator) -> list[str]:
    return [
        t.gettext("Availability"),
        t.gettext("Up (h)"),
        t.gettext("Degraded (h)"),
        t.gettext("Down (h)"),
        t.gettext("Unreachable (h)"),
        t.gettext("Maintenance (h)"),
        t.gettext("No data (h)"),
        t.gettext("On battery (h)"),
        t.gettext("Incidents"),
        t.gettext("MTTR"),
    ]


def _incident_columns(t: Translator) -> list[str]:
    return [
        t.gettext("Site"),
        t.gettext("Start"),
        t.gettext("End"),
        t.gettext("Duration"),
        t.gettext("Cause"),
        t.gettext("Time on battery"),
    ]


def _cells(t: Translator, row: Row) -> list[str]:
    s = row.seconds
    return [
        availability_percent(t, row.availability),
        _hours(t, s["up"]),
        _hours(t, s["degraded"]),
        _hours(t, s["down"]),
        _hours(t, s["unreachable"]),
        _hours(t, s["maintenance"]),
        _hours(t, s["no_data"]),
        _hours(t, row.battery_s),
        t.number(row.incidents),
        _duration(t, row.mttr_s),
    ]


def _name(row: Row, by: str) -> str:
    """A group's display name; its id is in the CSV (a reader of the page needs the name)."""
    return row.name


def _incident_cells(report: Report, i: Incident) -> list[str]:
    t = report.t
    return [
        i.site_name,
        report.when(i.start),
        report.when(i.end),
        t.duration(i.duration_s),
        t.text(i.cause) or "–",
        t.duration(i.on_battery_s) if i.on_battery_s else "–",
    ]


def _phase_title(report: Report, phase: str, a: Availability) -> str:
    return f"{report.t.gettext(PHASE_TITLES[phase])}: {report.window(a.start, a.end)}"


# -- markdown ------------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return lines


def _md_availability(report: Report, a: Availability) -> list[str]:
    t = report.t
    header = [t.gettext(BY_TITLES[a.by]), t.gettext("Sites"), *_columns(t)]
    rows = [[_name(r, a.by), t.number(r.sites), *_cells(t, r)] for r in a.rows]
    total = t.gettext("Total")
    rows.append([f"**{total}**", t.number(a.total.sites), *_cells(t, a.total)])
    return _md_table(header, rows)


def _md_incidents(report: Report, incidents: tuple[Incident, ...]) -> list[str]:
    if not incidents:
        return [report.t.gettext("No downtime incidents.")]
    return _md_table(_incident_columns(report.t), [_incident_cells(report, i) for i in incidents])


def to_markdown(report: Report) -> str:
    t = report.t
    out = ["# " + t.gettext("Availability report — {province}", province=report.province), ""]
    if report.main is not None:
        a = report.main
        out += [t.gettext("Period: {window}", window=report.window(a.start, a.end)), ""]
        out += [*_md_availability(report, a), ""]
        out += ["## " + t.gettext("Downtime incidents"), "", *_md_incidents(report, a.incidents), ""]
    if report.critical is not None:
        c = report.critical
        out += ["## " + t.gettext("Critical period: {name}", name=c.name), ""]
        out += [t.gettext("Window: {window}", window=report.window(c.start, c.end)), ""]
        for phase, a in c.phases:
            out += [f"### {_phase_title(report, phase, a)}", "", *_md_availability(report, a), ""]
        during = dict(c.phases)["during"]
        out += ["### " + t.gettext("Incidents during the period"), ""]
        out += [*_md_incidents(report, during.incidents), ""]
    out += [_method(t), "", t.gettext("Generated {time:dt} by uptimewatch.", time=report.generated_at)]
    return "\n".join(out) + "\n"


def _method(t: Translator) -> str:
    return t.gettext(
        "Availability = (up + degraded) / (up + degraded + down). Unreachable time (cut off behind "
        "a failed hub or link), maintenance and time without data are shown apart and not counted. "
        "MTTR: the mean duration of the incidents that ended in the window."
    )


# -- CSV -----------------------------------------------------------------------------------------


def csv_header(t: Translator) -> list[str]:
    return [
        t.gettext("Period"),
        t.gettext("Group"),
        t.gettext("Name"),
        t.gettext("Sites"),
        t.gettext("Availability (%)"),
        t.gettext("Up (s)"),
        t.gettext("Degraded (s)"),
        t.gettext("Down (s)"),
        t.gettext("Unreachable (s)"),
        t.gettext("Maintenance (s)"),
        t.gettext("No data (s)"),
        t.gettext("On battery (s)"),
        t.gettext("Incidents"),
        t.gettext("MTTR (s)"),
    ]


def incident_header(t: Translator) -> list[str]:
    return [
        t.gettext("Period"),
        t.gettext("Site ID"),
        t.gettext("Name"),
        t.gettext("Start"),
        t.gettext("End"),
        t.gettext("Duration (s)"),
        t.gettext("Cause"),
        t.gettext("On battery (s)"),
    ]


def _iso(report: Report, at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, report.tz).isoformat(timespec="seconds")


def _csv_rows(t: Translator, period: str, a: Availability) -> list[list[object]]:
    out: list[list[object]] = []
    for r in (*a.rows, a.total):
        s = r.seconds
        avail = r.availability
        mttr = r.mttr_s
        out.append(
            [
                period,
                r.key,
                t.gettext("Total") if r is a.total else r.name,
                r.sites,
                "" if avail is None else f"{avail:.4f}",
                *(f"{s[k]:.0f}" for k in ("up", "degraded", "down", "unreachable", "maintenance", "no_data")),
                f"{r.battery_s:.0f}",
                r.incidents,
                "" if mttr is None else f"{mttr:.0f}",
            ]
        )
    return out


def _tables(report: Report) -> list[tuple[str, Availability]]:
    t = report.t
    tables: list[tuple[str, Availability]] = []
    if report.main is not None:
        tables.append((t.gettext("Report"), report.main))
    if report.critical is not None:
        tables += [(t.gettext(PHASE_TITLES[p]), a) for p, a in report.critical.phases]
    return tables


def to_csv(report: Report, *, incidents: bool = False) -> str:
    """The availability table (one period per phase of a critical period), or the incidents."""
    t = report.t
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if incidents:
        w.writerow(incident_header(t))
        for period, a in _tables(report):
            for i in a.incidents:
                w.writerow(
                    [
                        period,
                        i.site_id,
                        i.site_name,
                        _iso(report, i.start),
                        _iso(report, i.end),
                        f"{i.duration_s:.0f}",
                        t.text(i.cause),
                        f"{i.on_battery_s:.0f}",
                    ]
                )
        return buf.getvalue()
    w.writerow(csv_header(t))
    for period, a in _tables(report):
        w.writerows(_csv_rows(t, period, a))
    return buf.getvalue()


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
:root { --fg: #1b1b1b; --muted: #5f6368; --line: #c9ced4; --bad: #b00020; --good: #0a6b2f;
  --head: #1f4e79; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans", "DejaVu Sans", "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--fg); margin: 2rem auto; max-width: 75rem; padding: 0 1rem; line-height: 1.4; }
header.top { border-bottom: 3px solid var(--head); margin-bottom: 1rem; padding-bottom: .4rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; color: var(--head); }
h2 { font-size: 1.25rem; margin: 1.6rem 0 .5rem; color: var(--head); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.meta { color: var(--muted); margin: 0 0 .6rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .4rem; text-align: right; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
thead th { background: #e9eef4; font-weight: 600; }
tr.total td { font-weight: 700; background: #f4f6f8; }
table.phases { width: auto; min-width: 55%; font-size: .95rem; }
table.phases th, table.phases td { padding: .3rem 1.2rem; }
td.low { color: var(--bad); font-weight: 700; } td.full { color: var(--good); }
td.avail, td.num { white-space: nowrap; }
.summary { display: grid; grid-template-columns: repeat(5, 1fr); gap: .7rem; margin: .8rem 0; }
.summary div { border: 1px solid var(--line); border-left: 4px solid var(--head); border-radius: .2rem;
  padding: .4rem .7rem; color: var(--muted); font-size: .85rem; }
.summary b { display: block; font-size: 1.5rem; color: var(--fg); }
.summary b.low { color: var(--bad); }
figure { margin: .4rem 0 1rem; break-inside: avoid; }
figure h2 { margin-top: 1rem; }
svg.chart { display: block; width: 100%; height: auto; }
footer { color: var(--muted); font-size: .8rem; margin-top: 1.5rem; border-top: 1px solid var(--line);
  padding-top: .4rem; }
@page { size: A4 landscape; margin: 13mm 12mm 15mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 9.5pt; }
  table { font-size: 8pt; } tr { break-inside: avoid; }
  thead { display: table-header-group; }
  table.phases { font-size: 9.5pt; }
  h2, h3 { break-after: avoid; }
  section.phase, section.compare { break-inside: avoid; }
}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tag(name: str, text: str, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<{name}{attr}>{_e(text)}</{name}>"


def _figure(title: str, svg: str) -> list[str]:
    """A chart under its heading, kept together on one page."""
    return ["<figure>", _tag("h2", title), svg, "</figure>"]


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal (for ``@page`` margin boxes)."""
    escaped = "".join(c if c.isalnum() or c in " ,.:;()/-–·" else f"\\{ord(c):x} " for c in text)
    return f'"{escaped}"'


def _page_css(report: Report, title: str) -> str:
    """Running header and page numbers of the PDF (CSS paged media; browsers ignore them)."""
    t = report.t
    # "Page {page} of {pages}" in the reader's words, with the counters where the numbers go
    words = t.gettext("Page {page} of {pages}")
    content: list[str] = []
    rest = words
    while rest:
        head, brace, tail = rest.partition("{")
        if head:
            content.append(_css_string(head))
        if not brace:
            break
        name, _close, rest = tail.partition("}")
        content.append("counter(pages)" if name == "pages" else "counter(page)")
    made = t.gettext("Generated {time:dt} by uptimewatch.", time=report.generated_at)
    window = report.critical or report.main
    when = report.window(window.start, window.end) if window is not None else ""
    small = "font-family: 'Noto Sans', 'DejaVu Sans', sans-serif; font-size: 8pt; color: #5f6368;"
    return (
        "@page { "
        f"@top-left {{ content: {_css_string(title)}; {small} }} "
        f"@top-right {{ content: {_css_string(when)}; {small} }} "
        f"@bottom-right {{ content: {' '.join(content)}; {small} }} "
        f"@bottom-left {{ content: {_css_string(made)}; {small} }} "
        "}"
    )


def _avail_class(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 99.999:
        return " full"
    return " low" if value < 99.0 else ""


def _html_availability(report: Report, a: Availability) -> list[str]:
    t = report.t
    heads = [t.gettext(BY_TITLES[a.by]), t.gettext("Sites"), *_columns(t)]
    head = "".join(f"<th>{_e(c)}</th>" for c in heads)
    out = ['<table class="availability">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for r in (*a.rows, a.total):
        cells = _cells(t, r)
        css = ' class="total"' if r is a.total else ""
        name = t.gettext("Total") if r is a.total else _name(r, a.by)
        tds = [f'<td class="text">{_e(name)}</td>', f"<td>{_e(t.number(r.sites))}</td>"]
        tds.append(f'<td class="avail{_avail_class(r.availability)}">{_e(cells[0])}</td>')
        tds += [f'<td class="num">{_e(c)}</td>' for c in cells[1:]]
        out.append(f"<tr{css}>{''.join(tds)}</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _html_incidents(report: Report, incidents: tuple[Incident, ...]) -> list[str]:
    if not incidents:
        return [_tag("p", report.t.gettext("No downtime incidents."))]
    cols = _incident_columns(report.t)
    head = "".join(_tag("th", c, "text" if n in (0, 4) else "") for n, c in enumerate(cols))
    out = ['<table class="incidents">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i in incidents:
        site, start, end, duration, cause, battery = _incident_cells(report, i)
        out.append(
            "<tr>"
            f'<td class="text">{_e(site)}</td><td class="num">{_e(start)}</td>'
            f'<td class="num">{_e(end)}</td><td class="num">{_e(duration)}</td>'
            f'<td class="text">{_e(cause)}</td><td class="num">{_e(battery)}</td>'
            "</tr>"
        )
    out += ["</tbody>", "</table>"]
    return out


def _summary(report: Report, a: Availability) -> list[str]:
    t = report.t
    total = a.total
    low = ' class="low"' if (total.availability or 100.0) < 99.0 else ""
    cards = [
        (t.gettext("Availability"), availability_percent(t, total.availability), low),
        (t.gettext("Incidents"), t.number(total.incidents), ""),
        (t.gettext("Downtime"), t.duration(total.seconds["down"]), ""),
        (t.gettext("MTTR"), _duration(t, total.mttr_s), ""),
        (t.gettext("Sites"), t.number(total.sites), ""),
    ]
    out = ['<div class="summary">']
    out += [f"<div>{_e(label)}<b{css}>{_e(value)}</b></div>" for label, value, css in cards]
    out.append("</div>")
    return out


def _district_chart(report: Report, phases: Sequence[tuple[str, Availability]]) -> str:
    """Bars per district, one per phase (a report without phases has one, keyed "during")."""
    t = report.t
    keys: dict[str, str] = {}
    for _p, a in phases:
        for r in a.rows:
            keys.setdefault(r.key, r.name)
    by_phase = [{r.key: r.availability for r in a.rows} for _p, a in phases]
    groups = [(name, [vals.get(key) for vals in by_phase]) for key, name in keys.items()]
    series = [Series(p, t.gettext(PHASE_TITLES[p])) for p, _a in phases]
    return availability_bars(
        t,
        groups,
        series,
        title=t.gettext("Availability per district"),
        axis_note=N_("The axis starts at {low}."),
    )


def _timeline(report: Report, bands: Sequence[Band], incidents: Sequence[Incident]) -> str:
    t = report.t
    start, end = bands[0].start, bands[-1].end
    per_site: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, str] = {}
    seen: set[tuple[str, float]] = set()
    for i in sorted(incidents, key=lambda i: (i.start, i.site_id)):
        if (i.site_id, i.start) in seen:  # an incident across a phase boundary is in both tables
            continue
        seen.add((i.site_id, i.start))
        stop = i.start + i.duration_s
        if stop <= start or i.start >= end:
            continue
        per_site.setdefault(i.site_id, []).append((max(start, i.start), min(end, stop)))
        names[i.site_id] = i.site_name
    kept = set(
        sorted(per_site, key=lambda s: -sum(e - b for b, e in per_site[s]))[:TIMELINE_LANES]
    )  # the longest downtime first; then drawn in the order the incidents began
    lanes = [Lane(names[s], tuple(per_site[s])) for s in per_site if s in kept]
    hidden = len(per_site) - len(kept)
    more = (
        t.ngettext(
            "{n} more site with incidents is not drawn; the table lists every incident.",
            "{n} more sites with incidents are not drawn; the table lists every incident.",
            hidden,
        )
        if hidden
        else ""
    )
    return incident_timeline(
        t,
        bands,
        lanes,
        title=t.gettext("Incidents over time"),
        empty=t.gettext("No downtime incidents."),
        more=more,
    )


def to_html(report: Report) -> str:
    t = report.t
    title = t.gettext("Availability report — {province}", province=report.province)
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{_e(t.language)}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}\n{_page_css(report, title)}</style>",
        "</head>",
        "<body>",
        '<header class="top">',
        f"<h1>{_e(title)}</h1>",
    ]
    if report.main is not None:
        a = report.main
        out.append(_tag("p", t.gettext("Period: {window}", window=report.window(a.start, a.end)), "meta"))
    if report.critical is not None:
        c = report.critical
        meta = t.gettext("Critical period: {name}", name=c.name) + " · " + report.window(c.start, c.end)
        out.append(_tag("p", meta, "meta"))
    out.append("</header>")
    if report.main is not None:
        out += _html_main(report, report.main)
    if report.critical is not None:
        out += _html_critical(report, report.critical)
    out += [
        "<footer>",
        f"<p>{_e(_method(t))}</p>",
        _tag("p", t.gettext("Generated {time:dt} by uptimewatch.", time=report.generated_at)),
        "</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(out) + "\n"


def _html_main(report: Report, a: Availability) -> list[str]:
    t = report.t
    out: list[str] = []
    if report.critical is not None:  # both: the main window gets its own heading
        out.append(_tag("h2", t.gettext("Period: {window}", window=report.window(a.start, a.end))))
    out += _summary(report, a)
    districts = report.districts if report.districts is not None else a if a.by == "district" else None
    if districts is not None and districts.rows:
        out += _figure(
            t.gettext("Availability per district"), _district_chart(report, [("during", districts)])
        )
    band = Band("before", "", a.start, a.end)
    out += _figure(t.gettext("Incidents over time"), _timeline(report, [band], a.incidents))
    out += [_tag("h2", t.gettext(BY_TITLES[a.by])), *_html_availability(report, a)]
    out += [_tag("h2", t.gettext("Downtime incidents")), *_html_incidents(report, a.incidents)]
    return out


def _html_critical(report: Report, c: CriticalReport) -> list[str]:
    t = report.t
    phases = dict(c.phases)
    during = phases["during"]
    out: list[str] = []
    if report.main is not None:  # both: the critical period gets its own heading
        out.append(_tag("h2", t.gettext("Critical period: {name}", name=c.name)))
    out += [_tag("h2", t.gettext("During the period")), *_summary(report, during)]
    districts = report.critical_districts or (c if during.by == "district" else None)
    if districts is not None:
        out += _figure(t.gettext("Availability per district"), _district_chart(report, districts.phases))
    out += ['<section class="compare">', _tag("h2", t.gettext("Before, during and after"))]
    out += [*_html_phase_summary(report, c), "</section>"]
    bands = [Band(p, t.gettext(PHASE_TITLES[p]), a.start, a.end) for p, a in c.phases]
    incidents = [i for _p, a in c.phases for i in a.incidents]
    out += _figure(t.gettext("Incidents over time"), _timeline(report, bands, incidents))
    out += [_tag("h2", t.gettext("Incidents during the period"))]
    out += _html_incidents(report, during.incidents)
    for phase, a in c.phases:
        out += ['<section class="phase">', f"<h3>{_e(_phase_title(report, phase, a))}</h3>"]
        out += [*_html_availability(report, a), "</section>"]
    return out


def _html_phase_summary(report: Report, c: CriticalReport) -> list[str]:
    t = report.t
    head = "".join(f"<th>{_e(t.gettext(PHASE_TITLES[p]))}</th>" for p, _ in c.phases)
    avail = "".join(
        f'<td class="avail{_avail_class(a.total.availability)}">'
        f"{_e(availability_percent(t, a.total.availability))}</td>"
        for _, a in c.phases
    )
    incidents = "".join(f"<td>{_e(t.number(a.total.incidents))}</td>" for _, a in c.phases)
    down = "".join(f"<td>{_e(_hours(t, a.total.seconds['down']))}</td>" for _, a in c.phases)
    cut = "".join(f"<td>{_e(_hours(t, a.total.seconds['unreachable']))}</td>" for _, a in c.phases)
    battery = "".join(f"<td>{_e(_hours(t, a.total.battery_s))}</td>" for _, a in c.phases)
    return [
        '<table class="phases">',
        f"<thead><tr><th></th>{head}</tr></thead>",
        "<tbody>",
        "<tr>" + _tag("td", t.gettext("Availability"), "text") + avail + "</tr>",
        "<tr>" + _tag("td", t.gettext("Incidents"), "text") + incidents + "</tr>",
        "<tr>" + _tag("td", t.gettext("Down (h)"), "text") + down + "</tr>",
        "<tr>" + _tag("td", t.gettext("Unreachable (h)"), "text") + cut + "</tr>",
        "<tr>" + _tag("td", t.gettext("On battery (h)"), "text") + battery + "</tr>",
        "</tbody>",
        "</table>",
    ]
