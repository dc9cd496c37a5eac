"""What a clustered node puts on /metrics: its own sites only, and a ``node`` label on the rest."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.test_metrics_export import RUNTIME, STATS, busy_model
from uptimewatch.cluster.metrics import ClusterCollector
from uptimewatch.cluster.node import ClusterNode
from uptimewatch.config.cluster import ClusterConfig
from uptimewatch.export import HealthCollector
from uptimewatch.export.exposition import render
from uptimewatch.export.ownership import NodeLabels, OwnedSnapshots, owned_view
from uptimewatch.export.tasks import TaskCollector
from uptimewatch.supervisor import TaskStats

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def _text(registry: CollectorRegistry) -> str:
    return render(registry.collect()).decode()


def _sites_in(text: str) -> set[str]:
    return {
        s.labels["site"]
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if fam.name == "uptimewatch_site_state"
    }


def test_the_owned_view_keeps_only_those_sites_and_counts_districts_over_them() -> None:
    snap = busy_model().snapshot()
    assert len(snap.sites) >= 3
    keep = frozenset(sorted(snap.sites)[:2])
    view = owned_view(snap, keep)
    assert set(view.sites) == keep
    districts = view.rollups_at("district")
    assert {r.id for r in districts} == {r.id for r in snap.rollups_at("district")}  # zeros stay
    assert sum(r.total for r in districts) == 2
    # two views of complementary sets add up to the province
    rest = owned_view(snap, frozenset(snap.sites) - keep)
    for a, b, whole in zip(districts, rest.rollups_at("district"), snap.rollups_at("district"), strict=True):
        assert {s: a.counts[s] + b.counts[s] for s in whole.counts} == dict(whole.counts)


def test_the_owned_view_is_rebuilt_only_when_the_snapshot_or_the_owned_set_changes() -> None:
    model = busy_model()
    owned: list[frozenset[str] | None] = [frozenset({"s1"})]
    views = OwnedSnapshots(model.snapshot, lambda: owned[0])
    first = views.get()
    assert views.get() is first
    owned[0] = frozenset({"s1", "s2"})
    second = views.get()
    assert second is not first
    assert set(second.sites) == {"s1", "s2"}
    owned[0] = None  # alone or degraded: everything
    assert views.get() is model.snapshot()


def test_two_nodes_export_disjoint_sites_and_label_their_own_series() -> None:
    model = busy_model()
    all_sites = set(model.snapshot().sites)
    half = frozenset(sorted(all_sites)[: len(all_sites) // 2])
    texts = {}
    for node, keep in (("n1", half), ("n2", frozenset(all_sites - half))):
        registry = CollectorRegistry()
        health = HealthCollector(
            OwnedSnapshots(model.snapshot, lambda k=keep: k).get, lambda: STATS, lambda: RUNTIME
        )
        tasks = TaskCollector(lambda: [TaskStats("ledger", True, True, 0, None)])
        registry.register(NodeLabels(node, [health, tasks]))
        texts[node] = _text(registry)
    assert _sites_in(texts["n1"]) == half
    assert _sites_in(texts["n2"]) == all_sites - half
    for node, text in texts.items():
        for fam in text_string_to_metric_families(text):
            for sample in fam.samples:
                site_series = "site" in sample.labels or "district" in sample.labels
                assert ("node" in sample.labels) != site_series, (fam.name, sample)
                if not site_series:
                    assert sample.labels["node"] == node
        assert f'uptimewatch_build_info{{node="{node}",' in text
        assert f'uptimewatch_task_up{{node="{node}",task="ledger"}} 1.0' in text
    # the district counts of the two nodes add up to every site once
    totals = 0.0
    for text in texts.values():
        for fam in text_string_to_metric_families(text):
            if fam.name == "uptimewatch_district_sites":
                totals += sum(s.value for s in fam.samples)
    assert totals == len(all_sites)


def _node() -> ClusterNode:
    config = ClusterConfig(node_id="n1", nats={"servers": ["nats://127.0.0.1:1"]})
    return ClusterNode(
        config, url="http://127.0.0.1:1", sites=list, ingest=lambda o: None, on_assignment=list
    )


def test_the_cluster_families_are_exactly_the_documented_ones() -> None:
    registry = CollectorRegistry()
    registry.register(NodeLabels("n1", [ClusterCollector(_node())]))
    text = _text(registry)
    exposed = {
        fam.name + ("_total" if fam.type == "counter" else "") for fam in text_string_to_metric_families(text)
    }
    section = DOCS.read_text().split("\n## The cluster\n")[1]
    documented = set(re.findall(r"^\| `(uptimewatch_[a-z_]+)`", section, flags=re.MULTILINE))
    assert exposed == documented
    assert 'uptimewatch_cluster_degraded{node="n1"} 1.0' in text  # never connected: degraded
    assert 'uptimewatch_cluster_leader{node="n1"} 0.0' in text
