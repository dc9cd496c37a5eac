"""Inline SVG charts for the HTML and PDF report: availability bars and an incident timeline.

Pure functions of plain data that return one ``<svg>`` element as text: no script, no external
font or image, so the same markup reads in a browser, in a mail client and in WeasyPrint's PDF.
Labels arrive already translated; numbers and times are written by the caller's
:class:`~uptimewatch.i18n.Translator`, so a chart speaks the report's language.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from babel.dates import format_datetime

from ..i18n import Translator

FONT: Final = "Noto Sans, DejaVu Sans, sans-serif"
WIDTH: Final = 1000  # viewBox units; the chart scales to the width of the page
LABEL_W: Final = 250  # the label column on the left
VALUE_W: Final = 95  # room for "99,216 %" right of the longest bar
INK: Final = "#1b1b1b"
MUTED: Final = "#5f6368"
GRID: Final = "#d5d8dc"
BAD: Final = "#b00020"
#: A bar's colour for each phase; a report without phases draws in "during"'s.
PHASE_COLOURS: Final = {"before": "#9fb6cd", "during": "#1f4e79", "after": "#4a8c8a"}
#: Band behind each phase of the timeline.
PHASE_BANDS: Final = {"before": "#f3f5f7", "during": "#fdf1dc", "after": "#f3f5f7"}
#: Day labels on a time axis (the year is in the report's heading).
_DAY: Final = {"vi": "dd/MM", "en": "d MMM"}
_HOUR: Final = "HH:mm"
#: A lane with at most this many incidents writes each one's duration beside its bar.
LABELLED_SPANS: Final = 4


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clip_label(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def availability_percent(t: Translator, value: float | None) -> str:
    """``99,216 %`` (vi) / ``99.216 %`` (en): three decimals, since 99.9 % is a whole 43 min a month."""
    if value is None:
        return "–"
    return f"{t.number(value, 3)}\u00a0%"


# -- availability bars ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # "before" | "during" | "after" (the colour)
    label: str


#: Where an availability axis may start, and its tick step there.
_FLOORS: Final = ((99.0, 0.2), (98.0, 0.5), (95.0, 1.0), (90.0, 2.0), (80.0, 5.0), (50.0, 10.0), (0.0, 10.0))


def axis_floor(values: Sequence[float]) -> tuple[float, float]:
    """(start, tick step) of the availability axis: the highest round start that leaves the worst
    bar at least a tenth of the width, so 99.7 % and 100 % do not look the same. The chart says
    where its axis starts."""
    low = min(values, default=100.0)
    for floor, step in _FLOORS:
        if low - floor >= (100.0 - floor) * 0.1:
            return floor, step
    return 0.0, 10.0


def availability_bars(
    t: Translator,
    groups: Sequence[tuple[str, Sequence[float | None]]],
    series: Sequence[Series],
    *,
    title: str,
    axis_note: str,
) -> str:
    """Horizontal bars: one group per district, one bar per series (phase) in each group.
    ``title`` labels the chart for screen readers (the page shows it as a heading).

    ``axis_note`` is a msgid (marked with ``N_``) with ``{low}`` where the axis starts: not always
    at 0, and the reader is told so.
    """
    values = [v for _label, vs in groups for v in vs if v is not None]
    low, step = axis_floor(values)
    bar_h, bar_gap, group_gap = 11, 2, 11
    top, legend_h = 4, 22 if len(series) > 1 else 0
    group_h = len(series) * bar_h + (len(series) - 1) * bar_gap
    x0, x1 = LABEL_W, WIDTH - VALUE_W
    plot_top = top + legend_h + 8
    height = plot_top + len(groups) * (group_h + group_gap) + 34

    def x(value: float) -> float:
        return x0 + (x1 - x0) * (max(low, min(100.0, value)) - low) / (100.0 - low)

    out = [_svg_open(height, title)]
    if legend_h:
        lx = float(x0)
        for s in series:
            out.append(f'<rect x="{lx:.1f}" y="{top}" width="12" height="12" fill="{PHASE_COLOURS[s.key]}"/>')
            out.append(_text(lx + 17, top + 10.5, s.label, size=12))
            lx += 40 + 7.5 * len(s.label)
    # grid and axis ticks
    plot_bottom = height - 34
    digits = 1 if step < 1 else 0
    for k in range(round((100.0 - low) / step) + 1):
        tick = low + k * step
        gx = x(tick)
        out.append(
            f'<line x1="{gx:.1f}" y1="{plot_top - 4}" x2="{gx:.1f}" y2="{plot_bottom}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        label = f"{t.number(tick, digits)}\u00a0%"
        out.append(_text(gx, plot_bottom + 15, label, size=11, anchor="middle", fill=MUTED))
    note = t.gettext(axis_note, low=t.number(low, 0) + "\u00a0%")  # (floors are whole numbers)
    out.append(_text(x1, plot_bottom + 30, note, size=11, anchor="end", fill=MUTED))
    y = float(plot_top)
    for label, vs in groups:
        out.append(_text(x0 - 10, y + group_h / 2 + 4.5, _clip_label(label), size=13, anchor="end"))
        for s, value in zip(series, vs, strict=True):
            if value is not None:
                end = x(value)
                out.append(
                    f'<rect x="{x0}" y="{y:.1f}" width="{max(1.5, end - x0):.1f}" height="{bar_h}" '
                    f'fill="{PHASE_COLOURS[s.key]}"><title>{_e(s.label)}: '
                    f"{_e(availability_percent(t, value))}</title></rect>"
                )
                colour, weight = (BAD, "700") if value < 99.0 else (INK, "400")
                out.append(
                    _text(end + 5, y + bar_h - 2.5, availability_percent(t, value), size=11.5,
                          fill=colour, weight=weight)
                )  # fmt: skip
            else:
                out.append(_text(x0 + 5, y + bar_h - 2.5, "–", size=11.5, fill=MUTED))
            y += bar_h + bar_gap
        y += group_gap - bar_gap
    out.append("</svg>")
    return "\n".join(out)


# -- incident timeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Band:
    key: str  # "before" | "during" | "after"
    label: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    spans: tuple[tuple[float, float], ...]  # (start, end) of each incident, clipped to the chart


def incident_timeline(
    t: Translator,
    bands: Sequence[Band],
    lanes: Sequence[Lane],
    *,
    title: str,
    empty: str,
    more: str = "",
) -> str:
    """One lane per site, a red bar per incident, over the bands of before / during / after."""
    start, end = bands[0].start, bands[-1].end
    lane_h, top = 19, 4
    x0, x1 = LABEL_W, WIDTH - 20
    plot_top = top + 22
    rows = max(1, len(lanes))
    plot_bottom = plot_top + rows * lane_h + 4
    height = plot_bottom + 26 + (18 if more else 0)

    def x(at: float) -> float:
        return x0 + (x1 - x0) * (min(end, max(start, at)) - start) / (end - start)

    out = [_svg_open(height, title)]
    for band in bands:
        bx, bw = x(band.start), x(band.end) - x(band.start)
        out.append(
            f'<rect x="{bx:.1f}" y="{top}" width="{bw:.1f}" height="{plot_bottom - top}" '
            f'fill="{PHASE_BANDS[band.key]}"/>'
        )
        weight = "700" if band.key == "during" else "400"
        out.append(_text(bx + bw / 2, top + 15, band.label, size=12, anchor="middle", weight=weight))
    for band in bands[1:]:
        bx = x(band.start)
        out.append(
            f'<line x1="{bx:.1f}" y1="{top}" x2="{bx:.1f}" y2="{plot_bottom}" stroke="#c77700" '
            'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    for at, label in time_ticks(t, start, end):
        tx = x(at)
        out.append(
            f'<line x1="{tx:.1f}" y1="{plot_bottom}" x2="{tx:.1f}" y2="{plot_bottom + 4}" stroke="{MUTED}"/>'
        )
        out.append(_text(tx, plot_bottom + 16, label, size=10.5, anchor="middle", fill=MUTED))
    out.append(
        f'<line x1="{x0}" y1="{plot_bottom}" x2="{x1}" y2="{plot_bottom}" stroke="{MUTED}" stroke-width="1"/>'
    )
    if not lanes:
        out.append(_text((x0 + x1) / 2, plot_top + 13, empty, size=12, anchor="middle", fill=MUTED))
    for i, lane in enumerate(lanes):
        y = plot_top + i * lane_h
        if i % 2:
            out.append(
                f'<rect x="{x0}" y="{y}" width="{x1 - x0}" height="{lane_h}" '
                'fill="#000" fill-opacity="0.03"/>'
            )
        out.append(_text(x0 - 10, y + 13.5, _clip_label(lane.label), size=12, anchor="end"))
        label_each = len(lane.spans) <= LABELLED_SPANS
        for s, e in lane.spans:
            sx = x(s)
            width = max(2.5, x(e) - sx)  # a ten-minute outage in a month is still seen
            tip = f"{t.datetime(s)} – {t.datetime(e)} ({t.duration(e - s)})"
            out.append(
                f'<rect x="{sx:.1f}" y="{y + 3}" width="{width:.1f}" height="{lane_h - 6}" rx="1.5" '
                f'fill="{BAD}"><title>{_e(lane.label)}: {_e(tip)}</title></rect>'
            )
            if label_each:  # on paper there is no hover: the duration beside the bar
                right = sx + width + 4 < x1 - 60
                lx = sx + width + 4 if right else sx - 4
                out.append(
                    _text(lx, y + 13.5, t.duration(e - s), size=10.5, anchor="start" if right else "end",
                          fill=BAD)
                )  # fmt: skip
    if more:
        out.append(_text(x0, height - 6, more, size=11, fill=MUTED))
    out.append("</svg>")
    return "\n".join(out)


def time_ticks(t: Translator, start: float, end: float, most: int = 9) -> list[tuple[float, str]]:
    """Round local times between ``start`` and ``end`` for an axis: hours or days as fits."""
    hours = (1, 2, 3, 6, 12)
    days = (1, 2, 7, 14, 30)
    span = end - start
    tz = t.tz
    choice: tuple[str, int] = ("day", 30)
    for h in hours:
        if span / (h * 3600) <= most:
            choice = ("hour", h)
            break
    else:
        for d in days:
            if span / (d * 86400) <= most:
                choice = ("day", d)
                break
    unit, n = choice
    first = dt.datetime.fromtimestamp(start, tz)
    if unit == "hour":
        moment = first.replace(minute=0, second=0, microsecond=0)
    else:
        moment = first.replace(hour=0, minute=0, second=0, microsecond=0)
    out: list[tuple[float, str]] = []
    guard = 0
    while moment.timestamp() <= end and guard < 10_000:
        guard += 1
        at = moment.timestamp()
        if unit == "hour":
            keep = moment.hour % n == 0
            label_fmt = _DAY[t.language] if moment.hour == 0 else _HOUR
            step = dt.timedelta(hours=1)
        else:
            keep = (moment.day == 1) if n == 30 else (moment.toordinal() % n == 0)
            label_fmt = _DAY[t.language]
            step = dt.timedelta(days=1)
        if keep and at >= start:
            out.append((at, str(format_datetime(moment, label_fmt, locale=t.language))))
        # wall-clock steps, normalized again so a DST change keeps ticks on round hours
        moment = (moment.replace(tzinfo=None) + step).replace(tzinfo=tz)
    return out


# -- SVG helpers ---------------------------------------------------------------------------------


def _svg_open(height: float, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="100%" role="img" aria-label="{_e(title)}" font-family="{FONT}">'
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: float,
    anchor: str = "start",
    fill: str = INK,
    weight: str = "400",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
        f'font-weight="{weight}">{_e(text)}</text>'
    )
