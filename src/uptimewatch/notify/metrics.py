"""The outbox's metric families, rendered from :meth:`Dispatcher.stats` at scrape time.

Every family is emitted even without channels (then without series), so the exposition always
names them and docs/metrics.md can be checked against it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .base import ChannelStats

_LABELS = ("receiver", "channel")


def outbox_families(stats: Sequence[ChannelStats]) -> Iterator[Metric]:
    counters = (
        (
            "uptimewatch_notifications_sent",
            "Notices a channel's peer accepted (SMTP 250, PUBACK, HTTP 2xx).",
            "sent",
        ),
        (
            "uptimewatch_notifications_failed",
            "Notices the peer refused for good (SMTP 5xx, HTTP 4xx): recorded, not retried.",
            "failed",
        ),
        (
            "uptimewatch_notifications_retried",
            "Send attempts that failed and were scheduled again (network, timeout, SMTP 4xx, HTTP 5xx).",
            "retried",
        ),
        (
            "uptimewatch_notifications_expired",
            "Notices given up undelivered after the outbox's expire_after.",
            "expired",
        ),
    )
    for name, help_text, attr in counters:
        family = CounterMetricFamily(name, help_text, labels=_LABELS)
        for s in stats:
            family.add_metric((s.receiver, s.channel), getattr(s, attr))
        yield family
    depth = GaugeMetricFamily(
        "uptimewatch_notifications_outbox_depth",
        "Notices waiting in the durable outbox for this channel.",
        labels=_LABELS,
    )
    age = GaugeMetricFamily(
        "uptimewatch_notifications_oldest_pending_age_seconds",
        "Age of the oldest notice waiting for this channel, in seconds (0 when none waits).",
        labels=_LABELS,
    )
    failing = GaugeMetricFamily(
        "uptimewatch_notifications_channel_failing_since_timestamp_seconds",
        "Unix time since when the channel's sends fail; absent while it works.",
        labels=_LABELS,
    )
    for s in stats:
        depth.add_metric((s.receiver, s.channel), s.depth)
        age.add_metric((s.receiver, s.channel), s.oldest_pending_age or 0.0)
        if s.failing_since is not None:
            failing.add_metric((s.receiver, s.channel), s.failing_since)
    yield depth
    yield age
    yield failing
