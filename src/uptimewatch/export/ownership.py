"""What one node of a cluster exports on ``/metrics``: the sites it owns, and its own series
labelled with its id.

Prometheus scrapes every node. A site's series must come from one node only, or every ``sum``
in the shipped rules would count it twice, so each node exports the sites whose *primary* poller
it is (the first of their vantage points, docs/cluster.md); the others still hold the site in
their snapshot and serve it in the API. The district counts (``uptimewatch_district_sites``) are
counted over the same sites, so ``sum by (district, state)`` across the nodes gives the province.

Every other series describes the process itself (scheduler, outbox, tasks, process metrics) and
gets a ``node`` label, so two nodes on one host stay apart even under one ``instance``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from types import MappingProxyType

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..model.health import HealthSnapshot, Rollup, SiteState
from .exposition import PrerenderedFamily

#: labels that make a series a site's (exported by its owner only, never labelled with a node)
SITE_LABELS = frozenset({"site", "district"})


def owned_view(snap: HealthSnapshot, keep: Collection[str]) -> HealthSnapshot:
    """``snap`` with only the sites in ``keep``; the district rollups count only those sites
    (every district stays, with zeros). The other rollup levels are left out: metrics read none."""
    sites = {site_id: site for site_id, site in snap.sites.items() if site_id in keep}
    per_district: dict[str, Counter[SiteState]] = {}
    for site in sites.values():
        per_district.setdefault(site.district, Counter())[site.state] += 1
    rollups = []
    for rollup in snap.rollups:
        if rollup.level != "district":
            continue
        counts = per_district.get(rollup.id, Counter())
        rollups.append(
            Rollup(
                rollup.level,
                rollup.id,
                rollup.name,
                MappingProxyType({state: counts.get(state, 0) for state in SiteState}),
                rollup.state,
                rollup.parent,
            )
        )
    return HealthSnapshot(snap.generated_at, MappingProxyType(sites), tuple(rollups))


class OwnedSnapshots:
    """``get()``: the owned view of the current snapshot, rebuilt only when the snapshot or the
    owned set changes (both are immutable objects replaced on change, so identity is the key).
    ``owned()`` returns None when this node exports every site (alone, or degraded)."""

    def __init__(
        self,
        snapshot: Callable[[], HealthSnapshot],
        owned: Callable[[], Collection[str] | None],
    ) -> None:
        self._snapshot = snapshot
        self._owned = owned
        self._last: tuple[HealthSnapshot, Collection[str], HealthSnapshot] | None = None

    def get(self) -> HealthSnapshot:
        snap, keep = self._snapshot(), self._owned()
        if keep is None:
            return snap
        last = self._last
        if last is not None and last[0] is snap and last[1] is keep:
            return last[2]
        view = owned_view(snap, keep)
        self._last = (snap, keep, view)
        return view


def _is_site_family(family: Metric) -> bool:
    return isinstance(family, PrerenderedFamily) or any(
        not SITE_LABELS.isdisjoint(s.labels) for s in family.samples
    )


def with_node(family: Metric, node: str) -> Metric:
    """The family with ``node="<id>"`` added to every sample (a copy; the original is untouched)."""
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = [s._replace(labels={**s.labels, "node": node}) for s in family.samples]
    return copy


class NodeLabels(Collector):
    """Wraps collectors: their families about the process get ``node``; site families pass as they are."""

    def __init__(self, node: str, collectors: Iterable[Collector]) -> None:
        self._node = node
        self._collectors = tuple(collectors)

    def describe(self) -> list[Metric]:
        return []  # as HealthCollector: registration must not collect

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            for family in collector.collect():
                yield family if _is_site_family(family) else with_node(family, self._node)


__all__ = ["SITE_LABELS", "NodeLabels", "OwnedSnapshots", "owned_view", "with_node"]
