"""Prometheus collector over the health snapshot and the scheduler's counters.

Every scrape builds the metric families fresh from the current snapshot, so a reload never has
to unregister anything: sites and devices that left the configuration simply stop appearing.
Label values come from configuration ids only, never from device answers or secrets.

The per-site and per-device families (nearly all series) are written as text by
:mod:`.site_series` and cached per site, in the standard detail unless ``get_full_detail`` says
otherwise; serve them with :func:`.exposition.scrape`, which writes
the text off the event loop. prometheus_client's ``generate_latest`` still works on the registry
(slowly: it parses that text back), which is what tests and tools use.

docs/metrics.md describes every metric; a test keeps the two in step.
"""

from __future__ import annotations

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

from ..model.health import HealthSnapshot, SiteState
from ..model.stats import LAG_BUCKETS, AlertStats, SchedulerStats
from ..notify.base import ChannelStats
from ..notify.metrics import outbox_families
from .site_series import ProbeSeries, SiteSeriesCache, site_families

_STATES: tuple[SiteState, ...] = tuple(SiteState)


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """What the daemon knows about itself, for the self-monitoring metrics."""

    config_last_reload_successful: bool
    config_last_reload_success_timestamp: float
    icmp_usable: bool
    version: str
    icmp_malformed_packets: int = 0
    event_loop_lag: float = 0.0


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
        get_full_detail: Callable[[], bool] | None = None,
        probe_series: Sequence[ProbeSeries] | None = None,
    ) -> None:
        self._get_full_detail = get_full_detail
        self._get_intake_stats = get_intake_stats
        self._get_time_to_dark = get_time_to_dark
        self._get_alert_stats = get_alert_stats
        self._get_outbox_stats = get_outbox_stats
        self._get_snapshot = get_snapshot
        self._get_stats = get_scheduler_stats
        self._get_runtime = get_runtime
        self._python = platform.python_version()
        self._site_cache = SiteSeriesCache(probe_series)
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
        """Every family; the per-site ones are placeholders whose text is written when read (by
        :func:`.exposition.render` in a worker thread, or parsed back for generic consumers)."""
        snap = self._get_snapshot()
        outbox = self._get_outbox_stats() if self._get_outbox_stats is not None else ()
        return [
            *self._health(snap),
            *self._scheduler(self._get_stats()),
            *self._runtime(self._get_runtime()),
            *outbox_families(outbox),
            *alert_families(self._get_alert_stats() if self._get_alert_stats is not None else NO_ALERTS),
            time_to_dark_family(snap, self._get_time_to_dark() if self._get_time_to_dark else {}),
            *intake_families(self._get_intake_stats() if self._get_intake_stats else None),
        ]

    # -- the network ----------------------------------------------------------------------------

    def _health(self, snap: HealthSnapshot) -> Iterator[Metric]:
        # The per-site and per-device families (nearly every series) come as prerendered text,
        # rebuilt only for the sites that changed since the previous scrape: see site_series.
        full = self._get_full_detail() if self._get_full_detail is not None else False
        yield from site_families(self._site_cache, snap, full=full)
        yield self._district_sites(snap)

    @staticmethod
    def _district_sites(snap: HealthSnapshot) -> Metric:
        district_sites = GaugeMetricFamily(
            "uptimewatch_district_sites",
            "Number of sites in each state, per district (every configured district, zeros included).",
            labels=("district", "state"),
        )
        for rollup in snap.rollups_at("district"):
            for state in _STATES:
                district_sites.add_metric((rollup.id, state.value), rollup.counts.get(state, 0))
        return district_sites

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
            (
                "uptimewatch_scheduler_overloaded_polls",
                "Polls that timed out while the daemon's own event loop ran late: unknown, not held "
                "against the device.",
                stats.overloaded,
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
        yield GaugeMetricFamily(
            "uptimewatch_event_loop_lag_seconds",
            "The worst lag of the daemon's event loop over the last 10 s: how long a ready callback "
            "(a reply in a socket) waited. From scheduler.overload_lag on, timeouts are not held "
            "against devices and MonitorOverloaded fires.",
            value=info.event_loop_lag,
        )
        yield CounterMetricFamily(
            "uptimewatch_icmp_malformed_packets",
            "ICMP packets received too short for what their headers say (a truncated error, a quoted "
            "IP header cut short); they are dropped, and logged at most once a minute.",
            value=info.icmp_malformed_packets,
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
    *,
    full_detail: bool = False,
) -> CollectorRegistry:
    """A fresh registry holding the health collector plus process and platform metrics."""
    registry = CollectorRegistry()
    HealthCollector(
        get_snapshot,
        get_scheduler_stats,
        get_runtime,
        registry=registry,
        get_full_detail=lambda: full_detail,
    )
    return registry
