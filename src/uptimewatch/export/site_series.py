"""The per-site and per-device families: their text, cached per site until the site changes.

These families hold nearly every series of a scrape (about ten per device in the standard
detail, twenty in the full one). The text of one site's samples depends on nothing but its
:class:`SiteStatus`, an immutable object the health model replaces when anything about the site
changes, so the object itself is the cache key: a scrape re-renders only the sites that changed
since the previous one, and a reload that removes a site drops its text with it (the cache follows
the snapshot's site list).

All samples of a family must be contiguous in the exposition, so every site keeps one chunk per
family. Consecutive sites form groups of :data:`GROUP_SITES`; a group keeps, per family, the joined
text of its sites and, once a gzip answer needed it, that text compressed as a self-contained
deflate piece (see :mod:`.exposition`). A scrape after 1% of the sites changed therefore
compresses only the groups those sites are in, not the whole 100 MB of text.

Detail: the standard set leaves out what the JSON API already shows and no shipped dashboard or
rule reads (``uptimewatch_snmp_up``, the ``stat="min"`` round trip, check states that are ok,
except the ``link.rx_level`` checks the LinkRxLevelLow rule tells configured thresholds by);
``server.metrics_detail: full`` exports everything (docs/metrics.md).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from operator import attrgetter, is_
from typing import Literal

from ..config.models import Role
from ..gcpause import no_cycle_collection
from ..model.checks import CheckState
from ..model.fields import (
    ICMP_JITTER,
    ICMP_LOSS_RATIO,
    ICMP_RTT_AVG,
    ICMP_RTT_MAX,
    ICMP_RTT_MIN,
    LINK_OPER_UP,
    LINK_RX_LEVEL,
    LINK_SNR,
    POWER_BATTERY_CHARGE,
    POWER_BATTERY_MINUTES,
    POWER_BATTERY_VOLTAGE,
    POWER_MAINS_OK,
    POWER_ON_BATTERY,
)
from ..model.health import HealthSnapshot, SiteState, SiteStatus
from ..model.observation import FieldValue
from .exposition import GZIP_LEVEL, PrerenderedFamily, escape_label_value, format_value

_STATES: tuple[SiteState, ...] = tuple(SiteState)

#: (metric name, field, scale, help) for gauges read straight from a device's normalized fields.
#: Booleans export as 1/0; a field that is None or absent exports no series.
FIELD_GAUGES: tuple[tuple[str, str, float, str], ...] = (
    (
        "uptimewatch_power_on_battery",
        POWER_ON_BATTERY,
        1.0,
        "1 while the power unit feeds the site from its batteries (mains lost), 0 on mains.",
    ),
    (
        "uptimewatch_power_mains_ok",
        POWER_MAINS_OK,
        1.0,
        "1 while the power unit reports mains (grid) input present, 0 when mains has failed.",
    ),
    (
        "uptimewatch_power_battery_runtime_seconds",
        POWER_BATTERY_MINUTES,
        60.0,
        "Battery runtime the power unit estimates at the present load, in seconds.",
    ),
    (
        "uptimewatch_power_battery_charge_ratio",
        POWER_BATTERY_CHARGE,
        0.01,
        "Battery state of charge, 0..1 (1 = full).",
    ),
    (
        "uptimewatch_power_battery_voltage_volts",
        POWER_BATTERY_VOLTAGE,
        1.0,
        "Battery (DC bus) voltage in volts.",
    ),
    (
        "uptimewatch_link_oper_up",
        LINK_OPER_UP,
        1.0,
        "1 while the radio link reports itself up, 0 when the radio says the link is down.",
    ),
    (
        "uptimewatch_link_rx_level_dbm",
        LINK_RX_LEVEL,
        1.0,
        "Received signal level of the radio link, in dBm (closer to 0 is stronger).",
    ),
    (
        "uptimewatch_link_snr_db",
        LINK_SNR,
        1.0,
        "Signal to noise ratio (or MSE/CINR where that is what the radio reports) in dB.",
    ),
)


#: what a series reads: a field of the device's last observation (only while that poll succeeded:
#: a failed poll leaves its last values in the snapshot, which on a graph would look current),
#: whether the last poll succeeded (1/0), or how long it took in seconds (both while there is one)
SeriesValue = Literal["field", "up", "duration"]


@dataclass(frozen=True, slots=True)
class ProbeSeries:
    """A per-device gauge a protocol exports (its part of a registry entry), labelled ``device``,
    ``role`` and ``site``, then ``labels``. Booleans export as 1/0; a field that is None, absent
    or a string exports no sample.

    Entries with the same ``name`` are one family (declared one after the other, with the same
    help): each gives one sample per device, in declaration order, as the ``stat`` samples of
    ``uptimewatch_icmp_rtt_seconds`` do. ``full_only``: exported with ``metrics_detail: full``
    only; a family all of whose entries are is left out of the standard set. ``stale_fields``: a
    failed poll of this protocol also leaves out the device's field gauges (power, link): the
    snapshot keeps their last values, which a graph would show as current."""

    kind: str
    name: str
    help: str
    field: str | None = None
    scale: float = 1.0
    value: SeriesValue = "field"
    labels: tuple[tuple[str, str], ...] = ()
    full_only: bool = False
    stale_fields: bool = False

    def __post_init__(self) -> None:
        if (self.field is None) == (self.value == "field"):
            raise ValueError(f"series {self.name}: a field is read with value='field', and only then")


#: the shipped protocols' series, their registry entries' part (probing/icmp.py, probing/snmp.py).
#: They are declared here, beside the exporter, because the exporter renders them when it is
#: given no registry (tests and embedders that build a HealthCollector alone) and the exporter
#: never imports the probing package (probing imports the exporter's ProbeSeries).
_RTT_HELP = (
    "Round-trip time of the last ping burst in seconds: stat=avg or max over its replies "
    "(and min with the full metrics detail)."
)
ICMP_SERIES: tuple[ProbeSeries, ...] = (
    ProbeSeries(
        "icmp",
        "uptimewatch_icmp_loss_ratio",
        "Share of the last ping burst that got no reply, 0..1 (1 = nothing answered).",
        ICMP_LOSS_RATIO,
    ),
    ProbeSeries(
        "icmp",
        "uptimewatch_icmp_rtt_seconds",
        _RTT_HELP,
        ICMP_RTT_MIN,
        labels=(("stat", "min"),),
        full_only=True,
    ),
    ProbeSeries("icmp", "uptimewatch_icmp_rtt_seconds", _RTT_HELP, ICMP_RTT_AVG, labels=(("stat", "avg"),)),
    ProbeSeries("icmp", "uptimewatch_icmp_rtt_seconds", _RTT_HELP, ICMP_RTT_MAX, labels=(("stat", "max"),)),
    ProbeSeries(
        "icmp",
        "uptimewatch_icmp_jitter_seconds",
        "Mean difference between consecutive ping round trips of the last burst, in seconds.",
        ICMP_JITTER,
    ),
)
SNMP_SERIES: tuple[ProbeSeries, ...] = (
    ProbeSeries(
        "snmp",
        "uptimewatch_snmp_up",
        "1 when the last SNMP poll of the device got a usable answer, 0 when it failed "
        "(timeout, authentication, no such object...).",
        value="up",
        full_only=True,
        stale_fields=True,
    ),
    ProbeSeries(
        "snmp",
        "uptimewatch_snmp_poll_duration_seconds",
        "How long the last SNMP poll of the device took, in seconds.",
        value="duration",
    ),
)
#: the series rendered when the exporter is given none: the shipped registry's, in its order
BUILTIN_SERIES: tuple[ProbeSeries, ...] = (*ICMP_SERIES, *SNMP_SERIES)


def series_families(series: Sequence[ProbeSeries]) -> tuple[tuple[str, str], ...]:
    """(name, help) of each family ``series`` make, in order; entries of one family must be
    declared one after the other, with one help text."""
    out: dict[str, str] = {}
    last: str | None = None
    for spec in series:
        if spec.name in out and (spec.name != last or out[spec.name] != spec.help):
            raise ValueError(f"series {spec.name}: its entries must be consecutive, with one help text")
        out[spec.name] = spec.help
        last = spec.name
    return tuple(out.items())


#: (name, help) of the per-site families before the protocols' series
CORE_FAMILIES: tuple[tuple[str, str], ...] = (
    (
        "uptimewatch_site_state",
        "Site state: 1 on the current state (up, degraded, down, unreachable, unknown), 0 on the "
        "others. down = the base station is off the air; degraded = something needs attention.",
    ),
    (
        "uptimewatch_site_state_since_timestamp_seconds",
        "Unix time when the site entered its current state (absent before the first poll).",
    ),
    (
        "uptimewatch_device_up",
        "1 when the device answers (ping, or SNMP when it has no ping), 0 when it does not. "
        "Absent until the device was polled once.",
    ),
    (
        "uptimewatch_device_check_state",
        "State of one health check of a device, after hysteresis: 0 ok, 1 warning, 2 critical, 3 unknown. "
        "Checks that are ok are left out (but link.rx_level) unless the metrics detail is full.",
    ),
)
_FIELD_FAMILIES = tuple((name, help_text) for name, _field, _scale, help_text in FIELD_GAUGES)

#: (name, help) of every per-site family with the shipped protocols, in exposition order: the
#: core families, each protocol's series in registry order, the field gauges. A cache given other
#: series has them in :attr:`SiteSeriesCache.families`; _render_site returns one chunk per entry.
SITE_FAMILIES: tuple[tuple[str, str], ...] = (
    *CORE_FAMILIES,
    *series_families(BUILTIN_SERIES),
    *_FIELD_FAMILIES,
)

SITES_FAMILY = ("uptimewatch_sites", "Number of sites in each state, per district and carrier.")

#: checks whose state the standard detail exports even when ok: the shipped LinkRxLevelLow rule
#: tells a device with configured thresholds from one on the -75 dBm fallback by its presence
ALWAYS_EXPORTED_CHECKS = frozenset({"link.rx_level"})
_CHECK_VALUES = {state: format_value(float(state)) for state in CheckState}
#: per current state, the tail of each uptimewatch_site_state line (an enum's .value is slow)
_STATE_TAILS = {
    current: tuple(f',state="{state.value}"}} {"1.0" if state is current else "0.0"}\n' for state in _STATES)
    for current in _STATES
}
_ROLE_TEXT = {role: role.value for role in Role}
_FIELD_SPECS = tuple((name, field, scale) for name, field, scale, _help in FIELD_GAUGES)
_EMPTY = b""
_COUNT_KEY = attrgetter("district", "carrier", "state")


def _text(value: FieldValue, scale: float = 1.0) -> str | None:
    """A field's value as sample text, None when it has no number (absent, None or a string)."""
    if value is None or isinstance(value, str):
        return None
    number = float(value) * scale
    text = repr(number)
    # the common case inline; exponents, infinities and NaN as prometheus_client writes them
    if text.find(".") > 6 or "n" in text:
        return format_value(number)
    return text


#: one series entry as _render_site writes it: (chunk index among the protocols' families,
#: field, scale, text before the device labels, text after them up to the value)
_FieldSpec = tuple[int, str, float, str, str]
#: (chunk index, reads "up" rather than "duration", text before the labels, text after them)
_RecordSpec = tuple[int, bool, str, str]


@dataclass(frozen=True, slots=True)
class _KindPlan:
    kind: str
    fields: tuple[_FieldSpec, ...]  # read while its last poll succeeded
    records: tuple[_RecordSpec, ...]  # read from its last poll record, whatever the outcome
    stale_fields: bool


def _plan(series: Sequence[ProbeSeries], full: bool) -> tuple[_KindPlan, ...]:
    """``series`` grouped by protocol for _render_site: one look-up of a device's poll record per
    protocol, whatever number of series it exports."""
    index = {name: i for i, (name, _help) in enumerate(series_families(series))}
    kinds: dict[str, tuple[list[_FieldSpec], list[_RecordSpec], list[bool]]] = {}
    for spec in series:
        field_specs, record_specs, stale = kinds.setdefault(spec.kind, ([], [], []))
        stale.append(spec.stale_fields)
        if spec.full_only and not full:
            continue
        labels = "".join(f',{name}="{escape_label_value(value)}"' for name, value in spec.labels)
        head, tail = f"{spec.name}{{", f"{labels}}} "
        if spec.field is not None:
            field_specs.append((index[spec.name], spec.field, spec.scale, head, tail))
        else:
            record_specs.append((index[spec.name], spec.value == "up", head, tail))
    return tuple(_KindPlan(kind, tuple(f), tuple(r), any(stale)) for kind, (f, r, stale) in kinds.items())


def _render_site(site: SiteStatus, full: bool, plan: Sequence[_KindPlan], families: int) -> tuple[bytes, ...]:
    """One chunk of sample lines per per-site family (``SiteSeriesCache.families``), empty where
    the site has none: the core families, the ``families`` the protocols' series make, rendered
    as ``plan`` says, then the field gauges.

    Labels are written in name order, as prometheus_client writes them, so the text is the same.
    ``full``: every series; otherwise the standard set (see the module's docstring).
    """
    esc = escape_label_value
    fmt = format_value
    site_labels = (
        f'carrier="{esc(site.carrier)}",commune="{esc(site.commune or "")}",'
        f'district="{esc(site.district)}",site="{esc(site.site_id)}"'
    )
    state_lines = "".join(
        [f"uptimewatch_site_state{{{site_labels}{tail}" for tail in _STATE_TAILS[site.state]]
    )
    since = (
        f"uptimewatch_site_state_since_timestamp_seconds{{{site_labels}}} {fmt(site.since)}\n"
        if site.since is not None
        else ""
    )
    ok = CheckState.OK
    up: list[str] = []
    checks: list[str] = []
    series: list[list[str]] = [[] for _ in range(families)]
    gauges: list[list[str]] = [[] for _ in _FIELD_SPECS]
    for dev in site.devices:
        base = f'device="{esc(dev.device_id)}",role="{_ROLE_TEXT[dev.role]}",site="{esc(dev.site_id)}"'
        if dev.reachable is not None:
            up.append(f"uptimewatch_device_up{{{base}}} {'1.0' if dev.reachable else '0.0'}\n")
        for chk in dev.checks:
            if full or chk.hard_state is not ok or chk.name in ALWAYS_EXPORTED_CHECKS:
                checks.append(
                    f'uptimewatch_device_check_state{{check="{esc(chk.name)}",{base}}} '
                    f"{_CHECK_VALUES[chk.hard_state]}\n"
                )
        fields = dev.fields
        probes = dev.probes
        stale = False
        for kind in plan:
            record = probes.get(kind.kind)
            if record is None:
                continue
            polled = record.error_kind is None
            if polled:
                for slot, key, scale, head, tail in kind.fields:
                    text = _text(fields.get(key), scale)
                    if text is not None:
                        series[slot].append(f"{head}{base}{tail}{text}\n")
            elif kind.stale_fields:
                stale = True
            for slot, reads_up, head, tail in kind.records:
                text = ("1.0" if polled else "0.0") if reads_up else fmt(record.duration_s)
                series[slot].append(f"{head}{base}{tail}{text}\n")
        if stale or not fields:
            continue
        for (name, field, scale), lines in zip(_FIELD_SPECS, gauges, strict=True):
            text = _text(fields.get(field), scale)
            if text is not None:
                lines.append(f"{name}{{{base}}} {text}\n")
    return (
        state_lines.encode(),
        since.encode() if since else _EMPTY,
        *("".join(lines).encode() if lines else _EMPTY for lines in (up, checks, *series, *gauges)),
    )


#: consecutive sites (in snapshot order) whose text is joined, and compressed, as one piece per
#: family: small enough that a few changed sites recompress little, large enough that deflate
#: still finds the repetitions of the label sets
GROUP_SITES = 8


class _Group:
    """Per family, the joined text of up to GROUP_SITES consecutive sites, and its deflate piece
    once a gzip answer asked for it. Built for one tuple of SiteStatus objects, never changed."""

    __slots__ = ("packed", "sites", "texts")

    def __init__(self, sites: tuple[SiteStatus, ...], texts: tuple[bytes, ...]) -> None:
        self.sites = sites
        self.texts = texts
        self.packed: list[bytes | None] = [None] * len(texts)


@dataclass(frozen=True, slots=True)
class SiteSeries:
    """The per-site families of one snapshot, as groups of consecutive sites."""

    groups: tuple[_Group, ...]
    #: sites per (district, carrier, state), for uptimewatch_sites
    counts: Counter[tuple[str, str, SiteState]]
    rendered: int  # sites whose text had to be (re)built for this snapshot
    full: bool

    def texts(self, index: int) -> list[bytes]:
        """Family ``index`` of SITE_FAMILIES: its text, one piece per group."""
        return [g.texts[index] for g in self.groups]


class SiteSeriesCache:
    """Per site, the text of its samples in each family, kept while its SiteStatus stays the same;
    per group of sites, the joined text and its compressed piece.

    Thread-safe: a scrape renders in a worker thread and two scrapes may overlap.
    """

    def __init__(self, probe_series: Sequence[ProbeSeries] | None = None) -> None:
        #: the registered protocols' series (``Registry.series()``); None: the shipped protocols'
        self.probe_series = BUILTIN_SERIES if probe_series is None else tuple(probe_series)
        protocol_families = series_families(self.probe_series)
        self.families = (*CORE_FAMILIES, *protocol_families, *_FIELD_FAMILIES)
        #: families only the full detail exports: those all of whose entries are full_only
        self.full_only = frozenset(
            name
            for name, _help in protocol_families
            if all(spec.full_only for spec in self.probe_series if spec.name == name)
        )
        self._plans = {full: _plan(self.probe_series, full) for full in (False, True)}
        self._protocol_families = len(protocol_families)
        self._lock = threading.Lock()
        self._sites: dict[str, tuple[SiteStatus, tuple[bytes, ...]]] = {}
        self._groups: list[_Group] = []
        self._full = False
        self._last: tuple[HealthSnapshot, SiteSeries] | None = None
        # one compressor for every piece: a full flush ends each piece and resets its state, so
        # no piece refers back into another
        self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)

    def series(self, snap: HealthSnapshot, full: bool = False) -> SiteSeries:
        with self._lock:
            last = self._last
            if last is not None and last[0] is snap and last[1].full == full:
                return last[1]
            # many short-lived strings and no cycles: a cycle collection meanwhile finds nothing
            with no_cycle_collection():
                series = self._build(snap, full)
            self._last = (snap, series)
            return series

    def _build(self, snap: HealthSnapshot, full: bool) -> SiteSeries:
        if full != self._full:  # the detail changed (a reload): every text is different
            self._sites, self._groups, self._full = {}, [], full
        texts = self._sites  # updated in place: a scrape after a few changes touches a few sites
        old_groups = self._groups
        groups: list[_Group] = []
        rendered = 0
        statuses = list(snap.sites.values())
        for number, start in enumerate(range(0, len(statuses), GROUP_SITES)):
            members = tuple(statuses[start : start + GROUP_SITES])
            group = old_groups[number] if number < len(old_groups) else None
            if group is not None and len(group.sites) == len(members) and all(map(is_, group.sites, members)):
                groups.append(group)
                continue
            chunks = []
            for site in members:
                entry = texts.get(site.site_id)
                if entry is None or entry[0] is not site:
                    entry = texts[site.site_id] = (
                        site,
                        _render_site(site, full, self._plans[full], self._protocol_families),
                    )
                    rendered += 1
                chunks.append(entry[1])
            groups.append(_Group(members, tuple(map(_EMPTY.join, zip(*chunks, strict=True)))))
        if len(texts) != len(statuses):
            # only the snapshot's sites stay: a site removed by a reload takes its text with it
            self._sites = {site_id: texts[site_id] for site_id in snap.sites}
        self._groups = groups
        counts = Counter(map(_COUNT_KEY, statuses))
        return SiteSeries(tuple(groups), counts, rendered, full)

    def packed(self, series: SiteSeries, index: int) -> list[bytes]:
        """Family ``index`` of ``series`` as deflate pieces, one per group, each ended by a full
        flush (byte-aligned, no reference to anything before it): compressed once per group."""
        out: list[bytes] = []
        with self._lock:
            compressor = self._compressor
            for group in series.groups:
                piece = group.packed[index]
                if piece is None:
                    text = group.texts[index]
                    piece = (
                        compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH) if text else _EMPTY
                    )
                    group.packed[index] = piece
                out.append(piece)
        return out

    def __len__(self) -> int:
        return len(self._sites)


def _family_chunks(cache: SiteSeriesCache, snap: HealthSnapshot, full: bool, index: int) -> Sequence[bytes]:
    return cache.series(snap, full).texts(index)


def _family_packed(cache: SiteSeriesCache, snap: HealthSnapshot, full: bool, index: int) -> Sequence[bytes]:
    return cache.packed(cache.series(snap, full), index)


def _sites_chunks(cache: SiteSeriesCache, snap: HealthSnapshot, full: bool) -> list[bytes]:
    series = cache.series(snap, full)
    by_dc: dict[tuple[str, str], dict[SiteState, int]] = {}
    for (district, carrier, state), n in series.counts.items():
        counts = by_dc.get((district, carrier))
        if counts is None:
            counts = by_dc[(district, carrier)] = dict.fromkeys(_STATES, 0)
        counts[state] = n
    esc = escape_label_value
    lines = [
        f'uptimewatch_sites{{carrier="{esc(carrier)}",district="{esc(district)}",state="{state.value}"}} '
        f"{format_value(n)}\n"
        for (district, carrier), counts in sorted(by_dc.items())
        for state, n in counts.items()
    ]
    return ["".join(lines).encode()]


def site_families(
    cache: SiteSeriesCache, snap: HealthSnapshot, *, full: bool = False
) -> list[PrerenderedFamily]:
    """The per-site families of ``snap`` plus uptimewatch_sites, rendered when first read; the
    standard set, or every series with ``full``."""

    out = [
        PrerenderedFamily(
            name,
            help_text,
            partial(_family_chunks, cache, snap, full, i),
            partial(_family_packed, cache, snap, full, i),
        )
        for i, (name, help_text) in enumerate(cache.families)
        if full or name not in cache.full_only
    ]
    out.append(PrerenderedFamily(*SITES_FAMILY, partial(_sites_chunks, cache, snap, full)))
    return out
