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


@dataclass(frozen=True, slots=True)
class ProbeSeries:
    """A per-device gauge a registered protocol exports (its part of a registry entry): the
    value of one of its fields, while the device's last poll of that protocol succeeded (a
    failed poll leaves its last values in the snapshot, which on a graph would look current).
    Booleans export as 1/0; the family follows the built-in ones, in registry order."""

    kind: str
    name: str
    help: str
    field: str
    scale: float = 1.0


#: (name, help) of every per-site family, in exposition order; _render_site returns one chunk
#: per entry, in this order.
SITE_FAMILIES: tuple[tuple[str, str], ...] = (
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
    (
        "uptimewatch_icmp_loss_ratio",
        "Share of the last ping burst that got no reply, 0..1 (1 = nothing answered).",
    ),
    (
        "uptimewatch_icmp_rtt_seconds",
        "Round-trip time of the last ping burst in seconds: stat=avg or max over its replies "
        "(and min with the full metrics detail).",
    ),
    (
        "uptimewatch_icmp_jitter_seconds",
        "Mean difference between consecutive ping round trips of the last burst, in seconds.",
    ),
    (
        "uptimewatch_snmp_up",
        "1 when the last SNMP poll of the device got a usable answer, 0 when it failed "
        "(timeout, authentication, no such object...).",
    ),
    (
        "uptimewatch_snmp_poll_duration_seconds",
        "How long the last SNMP poll of the device took, in seconds.",
    ),
    *((name, help_text) for name, _field, _scale, help_text in FIELD_GAUGES),
)

SITES_FAMILY = ("uptimewatch_sites", "Number of sites in each state, per district and carrier.")

_RTT_STATS = (
    ("min", ICMP_RTT_MIN),
    ("avg", ICMP_RTT_AVG),
    ("max", ICMP_RTT_MAX),
)
_RTT_STATS_STANDARD = _RTT_STATS[1:]

#: families only the full detail exports
FULL_ONLY_FAMILIES = frozenset({"uptimewatch_snmp_up"})
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


def _render_site(site: SiteStatus, full: bool, extra: Sequence[ProbeSeries] = ()) -> tuple[bytes, ...]:
    """One chunk of sample lines per entry of SITE_FAMILIES, then one per ``extra`` series
    (empty where the site has none).

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
    rtt_stats = _RTT_STATS if full else _RTT_STATS_STANDARD
    ok = CheckState.OK
    up: list[str] = []
    checks: list[str] = []
    loss: list[str] = []
    rtt: list[str] = []
    jitter: list[str] = []
    snmp_up: list[str] = []
    duration: list[str] = []
    gauges: list[list[str]] = [[] for _ in _FIELD_SPECS]
    extra_lines: list[list[str]] = [[] for _ in extra]
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
        icmp = probes.get("icmp")
        if icmp is not None and icmp.error_kind is None:
            text = _text(fields.get(ICMP_LOSS_RATIO))
            if text is not None:
                loss.append(f"uptimewatch_icmp_loss_ratio{{{base}}} {text}\n")
            for stat, key in rtt_stats:
                text = _text(fields.get(key))
                if text is not None:
                    rtt.append(f'uptimewatch_icmp_rtt_seconds{{{base},stat="{stat}"}} {text}\n')
            text = _text(fields.get(ICMP_JITTER))
            if text is not None:
                jitter.append(f"uptimewatch_icmp_jitter_seconds{{{base}}} {text}\n")
        for spec, lines in zip(extra, extra_lines, strict=True):
            record = probes.get(spec.kind)
            if record is not None and record.error_kind is None:
                text = _text(fields.get(spec.field), spec.scale)
                if text is not None:
                    lines.append(f"{spec.name}{{{base}}} {text}\n")
        snmp = probes.get("snmp")
        if snmp is not None:
            snmp_ok = snmp.error_kind is None
            if full:
                snmp_up.append(f"uptimewatch_snmp_up{{{base}}} {'1.0' if snmp_ok else '0.0'}\n")
            duration.append(f"uptimewatch_snmp_poll_duration_seconds{{{base}}} {fmt(snmp.duration_s)}\n")
            if not snmp_ok:
                # the snapshot keeps last known power/link values, but on a graph a stale value
                # would look current
                continue
        if not fields:
            continue
        for (name, field, scale), lines in zip(_FIELD_SPECS, gauges, strict=True):
            text = _text(fields.get(field), scale)
            if text is not None:
                lines.append(f"{name}{{{base}}} {text}\n")
    return (
        state_lines.encode(),
        since.encode() if since else _EMPTY,
        *(
            "".join(lines).encode() if lines else _EMPTY
            for lines in (up, checks, loss, rtt, jitter, snmp_up, duration, *gauges, *extra_lines)
        ),
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

    def __init__(self, probe_series: Sequence[ProbeSeries] = ()) -> None:
        #: the registered protocols' series, after the built-in families
        self.probe_series = tuple(probe_series)
        self.families = (*SITE_FAMILIES, *((spec.name, spec.help) for spec in self.probe_series))
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
                    entry = texts[site.site_id] = (site, _render_site(site, full, self.probe_series))
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
        if full or name not in FULL_ONLY_FAMILIES
    ]
    out.append(PrerenderedFamily(*SITES_FAMILY, partial(_sites_chunks, cache, snap, full)))
    return out
