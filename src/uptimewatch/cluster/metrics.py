"""The node's view of the cluster as metrics (docs/metrics.md, "The cluster").

Registered only on a clustered daemon, inside :class:`~uptimewatch.export.ownership.NodeLabels`,
which adds the ``node`` label: these families describe the node, not a site.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .node import ClusterNode


class ClusterCollector(Collector):
    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        node = self._node
        status = node.status()
        yield GaugeMetricFamily(
            "uptimewatch_cluster_leader",
            "1 while this node holds the leader lease (runs the alert engine and the outbox), else 0.",
            value=1.0 if status["leader"] == node.node_id else 0.0,
        )
        yield GaugeMetricFamily(
            "uptimewatch_cluster_degraded",
            "1 while this node cannot reach NATS and polls, judges and alerts on its own.",
            value=1.0 if status["degraded"] else 0.0,
        )
        yield GaugeMetricFamily(
            "uptimewatch_cluster_isolated",
            "1 while this node reaches no NATS server, no other node and no canary: its verdicts "
            "count as unknown.",
            value=1.0 if node.isolated else 0.0,
        )
        peers = GaugeMetricFamily(
            "uptimewatch_cluster_peer_alive",
            "Every node this node knows of (itself included): 1 while its heartbeat is fresh, 0 once "
            "it is older than cluster.node_timeout.",
            labels=("peer",),
        )
        for peer in status["nodes"]:
            peers.add_metric((peer["id"],), 1.0 if peer["alive"] else 0.0)
        yield peers
        yield GaugeMetricFamily(
            "uptimewatch_cluster_sites_polled",
            "Sites this node polls now (as one of their vantage points).",
            value=len(node.owned_sites()),
        )
        exported = node.primary_sites()
        yield GaugeMetricFamily(
            "uptimewatch_cluster_sites_exported",
            "Sites whose series this node exports on /metrics (those it is the first vantage point of).",
            value=len(node.owned_sites() if exported is None else exported),
        )
        yield GaugeMetricFamily(
            "uptimewatch_cluster_disagreements",
            "Device probes whose vantage points disagree now (some got an answer, some none); "
            "GET /api/v1/cluster lists them.",
            value=len(status["disagreements"]),
        )
        counters = node.counters
        messages = CounterMetricFamily(
            "uptimewatch_cluster_stream_messages",
            "Observations this node put on the stream (published) and read from it (received).",
            labels=("direction",),
        )
        messages.add_metric(("published",), counters["published"])
        messages.add_metric(("received",), counters["received"])
        yield messages
        errors = CounterMetricFamily(
            "uptimewatch_cluster_stream_errors",
            "Observations lost on the way: publish (NATS refused or timed out), dropped (the publish "
            "queue was full), decode (a message on the stream was not an observation).",
            labels=("kind",),
        )
        errors.add_metric(("publish",), counters["publish_errors"])
        errors.add_metric(("dropped",), counters["dropped"])
        errors.add_metric(("decode",), counters["decode_errors"])
        yield errors
        yield CounterMetricFamily(
            "uptimewatch_cluster_leader_changes",
            "Times this node saw the leader change (an election, a takeover, a leader lost).",
            value=counters["leader_changes"],
        )


__all__ = ["ClusterCollector"]
