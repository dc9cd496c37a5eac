"""Prometheus collector over the health snapshot and the scheduler's counters.

Every scrape builds the metric families fresh from the current snapshot, so a reload never has
to unregister anything: sites and devices that left the configuration simply stop appearing.
Label values come from configuration ids only, never from device answers or secrets.

docs/metrics.md describes every metric; a test keeps the two in step.
"""

from __future__ import annotations

import gc
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from ..model.health import HealthSnapshot, SiteState
from ..model.observation import FieldValue
from ..model.stats import LAG_BUCKETS, SchedulerStats
from ..notify.base import ChannelStats
from ..notify.metrics import outbox_families

_STATES: tuple[SiteState, ...] = tuple(SiteState)
_STATE_VALUES: tuple[str, ...] = tuple(s.value for s in _STATES)
_DEVICE_LABELS = ("site", "device", "role")


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """What the daemon knows about itself, for the self-monitoring metrics."""

    config_last_reload_successful: bool
    config_last_reload_success_timestamp: float
    icmp_usable: bool
    version: str


@dataclass(frozen=True, slots=True)
class AlertStats:
    """What the alert engine reports: alerts per (state, severity), notices handed over per kind,
    and when it last evaluated (the heartbeat: a stale value means alerting has stopped)."""

    counts: Mapping[tuple[str, str], int]
    notifications: Mapping[str, int]
    heartbeat_timestamp: float | None


def alert_families(stats: AlertStats) -> Iterator[Metric]:
    alerts = GaugeMetricFamily(
        "uptimewatch_alerts",
        "Alerts known to the engine, per state (pending, firing, resolved) and severity.",
        labels=("state", "severity"),
    )
    for (state, severity), n in sorted(stats.counts.items()):
        alerts.add_metric((state, severity), n)
    yield alerts
    notices = CounterMetricFamily(
        "uptimewatch_alert_notifications",
        "Alert notices handed to the outbox since the start, per kind (firing, resolved, reminder...).",
        labels=("kind",),
    )
    for kind, n in sorted(stats.notifications.items()):
        notices.add_metric((kind,), n)
    yield notices
    heartbeat = GaugeMetricFamily(
        "uptimewatch_heartbeat_timestamp_seconds",
        "Unix time of the alert engine's last evaluation; alert on it going stale (dead man's switch).",
        labels=(),
    )
    if stats.heartbeat_timestamp is not None:
        heartbeat.add_metric((), stats.heartbeat_timestamp)
    yield heartbeat


#: Without an alert engine the families are still described, with no samples.
NO_ALERTS = AlertStats(counts={}, notifications={}, heartbeat_timestamp=None)


def time_to_dark_family(snap: HealthSnapshot, seconds: Mapping[str, float]) -> Metric:
    """Seconds to dark of every site on battery with an estimate (site id -> seconds)."""
    family = GaugeMetricFamily(
        "uptimewatch_site_time_to_dark_seconds",
        "Predicted seconds until a site on battery loses power (its dispatch priority for generators); "
        "only sites on battery with an estimate have a series.",
        labels=("site", "district", "carrier"),
    )
    for site_id, value in sorted(seconds.items(), key=lambda kv: kv[1]):
        site = snap.sites.get(site_id)
        if site is not None:
            family.add_metric((site_id, site.district, site.carrier), value)
    return family


@dataclass(frozen=True, slots=True)
class IntakeStats:
    """What arrives unasked: SNMP notifications per result, MQTT telemetry per (topic, result)."""

    traps: Mapping[str, int]
    telemetry: Mapping[tuple[str, str], int]


def intake_families(stats: IntakeStats | None) -> Iterator[Metric]:
    traps = CounterMetricFamily(
        "uptimewatch_traps_received",
        "SNMP traps and informs received, per result (accepted, unknown_source, bad_credentials, malformed).",
        labels=("result",),
    )
    for result, n in sorted(stats.traps.items()) if stats else ():
        traps.add_metric((result,), n)
    yield traps
    telemetry = CounterMetricFamily(
        "uptimewatch_telemetry_messages",
        "MQTT telemetry messages per configured topic and result (accepted, partial, malformed).",
        labels=("topic", "result"),
    )
    for (topic, result), n in sorted(stats.telemetry.items()) if stats else ():
        telemetry.add_metric((topic, result), n)
    yield telemetry


#: (metric name, field, scale, help) for gauges read straight from a device's normalized fields.
#: Booleans export as 1/0; a field that is None or absent exports no series.
_FIELD_GAUGES: tuple[tuple[str, str, float, str], ...] = (
    (
        "uptimewatch_power_on_battery",
        "power.on_battery",
        1.0,
        "1 while the power unit feeds the site from its batteries (mains lost), 0 on mains.",
    ),
    (
        "uptimewatch_power_mains_ok",
        "power.mains_ok",
        1.0,
        "1 while the power unit reports mains (grid) input present, 0 when mains has failed.",
    ),
    (
        "uptimewatch_power_battery_minutes_remaining",
        "power.battery_minutes_remaining",
        1.0,
        "Battery runtime the power unit estimates at the present load, in minutes.",
    ),
    (
        "uptimewatch_power_battery_charge_ratio",
        "power.battery_charge_percent",
        0.01,
        "Battery state of charge, 0..1 (1 = full).",
    ),
    (
        "uptimewatch_power_battery_voltage_volts",
        "power.battery_voltage_volts",
        1.0,
        "Battery (DC bus) voltage in volts.",
    ),
    (
        "uptimewatch_link_oper_up",
        "link.oper_up",
        1.0,
        "1 while the radio link reports itself up, 0 when the radio says the link is down.",
    ),
    (
        "uptimewatch_link_rx_level_dbm",
        "link.rx_level_dbm",
        1.0,
        "Received signal level of the radio link, in dBm (closer to 0 is stronger).",
    ),
    (
        "uptimewatch_link_snr_db",
        "link.snr_db",
        1.0,
        "Signal to noise ratio (or MSE/CINR where that is what the radio reports) in dB.",
    ),
)


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)


class HealthCollector:
    """A custom collector: ``collect()`` renders the snapshot current at scrape time.

    With ``registry`` given it registers itself there, together with prometheus_client's process
    and platform collectors (pass a fresh registry: the default global one is never used).
    """

    def __init__(
        self,
        get_snapshot: Callable[[], HealthSnapshot],
        get_scheduler_stats: Callable[[], SchedulerStats],
        get_runtime: Callable[[], RuntimeInfo],
        *,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        get_outbox_stats: Callable[[], Sequence[ChannelStats]] | None = None,
        get_alert_stats: Callable[[], AlertStats] | None = None,
        get_time_to_dark: Callable[[], Mapping[str, float]] | None = None,
        get_intake_stats: Callable[[], IntakeStats] | None = None,
    ) -> None:
        self._get_intake_stats = get_intake_stats
        self._get_time_to_dark = get_time_to_dark
        self._get_alert_stats = get_alert_stats
        self._get_outbox_stats = get_outbox_stats
        self._get_snapshot = get_snapshot
        self._get_stats = get_scheduler_stats
        self._get_runtime = get_runtime
        self._python = platform.python_version()
        if registry is not None:
            registry.register(self)
            if process_metrics:
                ProcessCollector(registry=registry)
                PlatformCollector(registry=registry)

    def describe(self) -> list[Metric]:
        # Registration must not call collect(): the daemon registers before the first poll, and
        # the set of series changes with every reload anyway.
        return []

    def collect(self) -> list[Metric]:
        snap = self._get_snapshot()
        stats = self._get_stats()
        runtime = self._get_runtime()
        # Millions of short-lived acyclic samples for a large province: the cycle collector
        # would walk the whole health model repeatedly while they are built, for nothing.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            outbox = self._get_outbox_stats() if self._get_outbox_stats is not None else ()
            return [
                *self._health(snap),
                *self._scheduler(stats),
                *self._runtime(runtime),
                *outbox_families(outbox),
                *alert_families(self._get_alert_stats() if self._get_alert_stats is not None else NO_ALERTS),
                time_to_dark_family(snap, self._get_time_to_dark() if self._get_time_to_dark else {}),
                *intake_families(self._get_intake_stats() if self._get_intake_stats else None),
            ]
        finally:
            if gc_was_enabled:
                gc.enable()

    # -- the network ----------------------------------------------------------------------------

    def _health(self, snap: HealthSnapshot) -> Iterator[Metric]:
        site_state = GaugeMetricFamily(
            "uptimewatch_site_state",
            "Site state: 1 on the current state (up, degraded, down, unreachable, unknown), 0 on the "
            "others. down = the base station is off the air; degraded = something needs attention.",
            labels=("site", "district", "commune", "carrier", "state"),
        )
        site_since = GaugeMetricFamily(
            "uptimewatch_site_state_since_timestamp_seconds",
            "Unix time when the site entered its current state (absent before the first poll).",
            labels=("site", "district", "commune", "carrier"),
        )
        device_up = GaugeMetricFamily(
            "uptimewatch_device_up",
            "1 when the device answers (ping, or SNMP when it has no ping), 0 when it does not. "
            "Absent until the device was polled once.",
            labels=_DEVICE_LABELS,
        )
        check_state = GaugeMetricFamily(
            "uptimewatch_device_check_state",
            "State of one health check of a device, after hysteresis: "
            "0 ok, 1 warning, 2 critical, 3 unknown.",
            labels=(*_DEVICE_LABELS, "check"),
        )
        loss = GaugeMetricFamily(
            "uptimewatch_icmp_loss_ratio",
            "Share of the last ping burst that got no reply, 0..1 (1 = nothing answered).",
            labels=_DEVICE_LABELS,
        )
        rtt = GaugeMetricFamily(
            "uptimewatch_icmp_rtt_seconds",
            "Round-trip time of the last ping burst in seconds: stat=min, avg or max over its replies.",
            labels=(*_DEVICE_LABELS, "stat"),
        )
        jitter = GaugeMetricFamily(
            "uptimewatch_icmp_jitter_seconds",
            "Mean difference between consecutive ping round trips of the last burst, in seconds.",
            labels=_DEVICE_LABELS,
        )
        snmp_up = GaugeMetricFamily(
            "uptimewatch_snmp_up",
            "1 when the last SNMP poll of the device got a usable answer, 0 when it failed "
            "(timeout, authentication, no such object...).",
            labels=_DEVICE_LABELS,
        )
        snmp_duration = GaugeMetricFamily(
            "uptimewatch_snmp_poll_duration_seconds",
            "How long the last SNMP poll of the device took, in seconds.",
            labels=_DEVICE_LABELS,
        )
        gauges = [
            (GaugeMetricFamily(name, help_text, labels=_DEVICE_LABELS), field, scale)
            for name, field, scale, help_text in _FIELD_GAUGES
        ]

        # Samples are appended directly, sharing one label dict per device across families:
        # add_metric would build a fresh dict per sample, which dominates at 300k devices.
        ss_name, ss_samples = site_state.name, site_state.samples
        since_name, since_samples = site_since.name, site_since.samples
        up_name, up_samples = device_up.name, device_up.samples
        cs_name, cs_samples = check_state.name, check_state.samples
        loss_name, loss_samples = loss.name, loss.samples
        rtt_name, rtt_samples = rtt.name, rtt.samples
        jit_name, jit_samples = jitter.name, jitter.samples
        snmp_name, snmp_samples = snmp_up.name, snmp_up.samples
        dur_name, dur_samples = snmp_duration.name, snmp_duration.samples
        rtt_stats = (
            ("min", "icmp.rtt_min_seconds"),
            ("avg", "icmp.rtt_avg_seconds"),
            ("max", "icmp.rtt_max_seconds"),
        )
        field_specs = [(g.name, g.samples, field, scale) for g, field, scale in gauges]

        for site in snap.sites.values():
            commune = site.commune or ""
            current = site.state
            for state, word in zip(_STATES, _STATE_VALUES, strict=True):
                labels = {
                    "site": site.site_id,
                    "district": site.district,
                    "commune": commune,
                    "carrier": site.carrier,
                    "state": word,
                }
                ss_samples.append(Sample(ss_name, labels, 1.0 if state is current else 0.0))
            if site.since is not None:
                since_samples.append(
                    Sample(
                        since_name,
                        {
                            "site": site.site_id,
                            "district": site.district,
                            "commune": commune,
                            "carrier": site.carrier,
                        },
                        site.since,
                    )
                )
            for dev in site.devices:
                base = {"site": dev.site_id, "device": dev.device_id, "role": dev.role.value}
                if dev.reachable is not None:
                    up_samples.append(Sample(up_name, base, 1.0 if dev.reachable else 0.0))
                for chk in dev.checks:
                    cs_samples.append(Sample(cs_name, {**base, "check": chk.name}, float(chk.hard_state)))
                fields = dev.fields
                probes = dev.probes
                icmp = probes.get("icmp")
                if icmp is not None and icmp.error_kind is None:
                    value = _num(fields.get("icmp.loss_ratio"))
                    if value is not None:
                        loss_samples.append(Sample(loss_name, base, value))
                    for stat, key in rtt_stats:
                        value = _num(fields.get(key))
                        if value is not None:
                            rtt_samples.append(Sample(rtt_name, {**base, "stat": stat}, value))
                    value = _num(fields.get("icmp.jitter_seconds"))
                    if value is not None:
                        jit_samples.append(Sample(jit_name, base, value))
                snmp = probes.get("snmp")
                if snmp is not None:
                    snmp_ok = snmp.error_kind is None
                    snmp_samples.append(Sample(snmp_name, base, 1.0 if snmp_ok else 0.0))
                    dur_samples.append(Sample(dur_name, base, snmp.duration_s))
                    if not snmp_ok:
                        # the snapshot keeps last known power/link values, but on a graph a stale
                        # value would look current
                        continue
                if not fields:
                    continue
                for name, samples, field, scale in field_specs:
                    value = _num(fields.get(field))
                    if value is not None:
                        samples.append(Sample(name, base, value * scale))

        yield site_state
        yield site_since
        yield device_up
        yield check_state
        yield loss
        yield rtt
        yield jitter
        yield snmp_up
        yield snmp_duration
        for g, _, _ in gauges:
            yield g
        yield from self._rollups(snap)

    @staticmethod
    def _rollups(snap: HealthSnapshot) -> Iterator[Metric]:
        by_dc: dict[tuple[str, str], dict[SiteState, int]] = {}
        for site in snap.sites.values():
            key = (site.district, site.carrier)
            counts = by_dc.get(key)
            if counts is None:
                counts = by_dc[key] = dict.fromkeys(_STATES, 0)
            counts[site.state] += 1
        sites = GaugeMetricFamily(
            "uptimewatch_sites",
            "Number of sites in each state, per district and carrier.",
            labels=("district", "carrier", "state"),
        )
        for (district, carrier), counts in sorted(by_dc.items()):
            for state, n in counts.items():
                sites.add_metric((district, carrier, state.value), n)
        yield sites
        district_sites = GaugeMetricFamily(
            "uptimewatch_district_sites",
            "Number of sites in each state, per district (every configured district, zeros included).",
            labels=("district", "state"),
        )
        for rollup in snap.rollups_at("district"):
            for state in _STATES:
                district_sites.add_metric((rollup.id, state.value), rollup.counts.get(state, 0))
        yield district_sites

    # -- the daemon itself ----------------------------------------------------------------------

    @staticmethod
    def _scheduler(stats: SchedulerStats) -> Iterator[Metric]:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LAG_BUCKETS, stats.lag_counts, strict=False):
            cumulative += count
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", stats.lag_count))
        yield HistogramMetricFamily(
            "uptimewatch_scheduler_lag_seconds",
            "How late polls started compared with when they were due, in seconds. A growing tail "
            "means the daemon cannot keep up with the configured intervals.",
            buckets=buckets,
            sum_value=stats.lag_sum,
        )
        for name, help_text, values in (
            (
                "uptimewatch_scheduler_polls",
                "Polls finished, per probe (snmp, icmp...).",
                stats.polls,
            ),
            (
                "uptimewatch_scheduler_missed_cycles",
                "Poll cycles skipped because the previous poll of the same device was still running.",
                stats.missed_cycles,
            ),
            (
                "uptimewatch_scheduler_deadline_exceeded",
                "Polls cut off at their deadline (the device's timeout setting).",
                stats.deadline_exceeded,
            ),
        ):
            counter = CounterMetricFamily(name, help_text, labels=("probe",))
            for probe, value in sorted(values.items()):
                counter.add_metric((probe,), value)
            yield counter
        targets = GaugeMetricFamily(
            "uptimewatch_scheduler_targets",
            "Devices scheduled for polling, per probe.",
            labels=("probe",),
        )
        for probe, value in sorted(stats.targets.items()):
            targets.add_metric((probe,), value)
        yield targets
        yield GaugeMetricFamily(
            "uptimewatch_scheduler_in_flight",
            "Polls running right now.",
            value=stats.in_flight,
        )

    def _runtime(self, info: RuntimeInfo) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "uptimewatch_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded, 0 when it failed and the daemon "
            "kept running the previous configuration.",
            value=1.0 if info.config_last_reload_successful else 0.0,
        )
        yield GaugeMetricFamily(
            "uptimewatch_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            value=info.config_last_reload_success_timestamp,
        )
        yield GaugeMetricFamily(
            "uptimewatch_icmp_usable",
            "1 when the daemon can send ICMP echo (ping); 0 when it lacks the privilege and judges "
            "devices by SNMP alone.",
            value=1.0 if info.icmp_usable else 0.0,
        )
        build = GaugeMetricFamily(
            "uptimewatch_build_info",
            "Always 1; the labels say which uptimewatch version runs on which Python.",
            labels=("version", "python"),
        )
        build.add_metric((info.version, self._python), 1.0)
        yield build


def build_registry(
    get_snapshot: Callable[[], HealthSnapshot],
    get_scheduler_stats: Callable[[], SchedulerStats],
    get_runtime: Callable[[], RuntimeInfo],
) -> CollectorRegistry:
    """A fresh registry holding the health collector plus process and platform metrics."""
    registry = CollectorRegistry()
    HealthCollector(get_snapshot, get_scheduler_stats, get_runtime, registry=registry)
    return registry
