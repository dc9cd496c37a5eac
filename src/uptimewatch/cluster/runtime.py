"""The narrow seam between the daemon and the cluster: what ``app.py`` calls, nothing more.

The daemon stays the same stages; with a ``cluster:`` section, its scheduler polls only the sites
this node owns, its polls go through :meth:`ClusterRuntime.observe` (the vantage merge, then the
health model, and onto the stream), and the others' observations reach the same health model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector

from ..alerts.service import AlertService
from ..config.loader import LoadedConfig
from ..config.resolve import ResolvedDevice
from ..export.ownership import NodeLabels, OwnedSnapshots
from ..model.health import HealthSnapshot
from ..model.observation import Observation
from ..notify.outbox import Outbox
from .alerts import AlertReplica
from .metrics import ClusterCollector
from .node import ClusterNode, SiteRef

log = logging.getLogger(__name__)


def site_refs(loaded: LoadedConfig) -> list[SiteRef]:
    """Each site with how old a vantage point's result may be: two of its slowest poll cycles."""
    cycle: dict[str, float] = {}
    for device in loaded.devices:
        cycle[device.site_id] = max(cycle.get(device.site_id, 0.0), device.interval + device.timeout)
    return [SiteRef(s.id, s.district, 2.0 * cycle.get(s.id, 60.0)) for s in loaded.config.sites]


class ClusterRuntime:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        url: str,
        ingest: Callable[[Observation], None],
        on_assignment: Callable[[], None],
        ping: Callable[[str], Awaitable[bool]] | None = None,
        alerts: AlertService | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        assert loaded.config.cluster is not None
        self._refs = site_refs(loaded)
        self._by_id = {r.site_id: r for r in self._refs}
        self.node = ClusterNode(
            loaded.config.cluster,
            url=url,
            sites=lambda: self._refs,
            ingest=ingest,
            on_assignment=on_assignment,
            ping=ping,
        )
        # the leader alone steps the alert engine and sends; every node holds its state
        self.alerts = (
            AlertReplica(self.node, alerts, outbox) if alerts is not None and outbox is not None else None
        )

    async def start(self) -> None:
        await self.node.start()

    def leading(self) -> bool:
        """Whether this node steps the alert engine and sends notices now (never before it tried
        to join: a restarted former leader must not resend what a new one sends already)."""
        if not self.node.started:
            return False
        return self.alerts.leading() if self.alerts is not None else self.node.is_leader

    async def stop(self) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
        await self.node.stop()

    def observe(self, obs: Observation) -> None:
        self.node.observe(obs, self._by_id.get(obs.site_id))

    def polled(self, devices: Sequence[ResolvedDevice]) -> list[ResolvedDevice]:
        return [d for d in devices if self.node.owns(d.site_id)]

    def exported(self, snapshot: Callable[[], HealthSnapshot]) -> Callable[[], HealthSnapshot]:
        """What ``/metrics`` renders: the snapshot cut to the sites this node is primary for."""
        return OwnedSnapshots(snapshot, self.node.primary_sites).get

    def register_metrics(self, registry: CollectorRegistry, collectors: Sequence[Collector]) -> None:
        """The daemon's collectors, the process metrics and the cluster's own, with a ``node`` label
        on every series that is not a site's (docs/metrics.md)."""
        own = [
            *collectors,
            ClusterCollector(self.node),
            ProcessCollector(registry=None),
            PlatformCollector(registry=None),
        ]
        registry.register(NodeLabels(self.node.node_id, own))

    def reconfigure(self, loaded: LoadedConfig) -> None:
        self._refs = site_refs(loaded)
        self._by_id = {r.site_id: r for r in self._refs}
        self.node.reconfigure()


__all__ = ["ClusterRuntime", "site_refs"]
