"""The whole province from any node, each site's metrics from one node, and a fourth node joining:
a real 3-server NATS cluster and ``uptimewatch run`` subprocesses pinging 127.0.0.0/8."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import DaemonProcess, free_tcp_port, http_get, province_config, write_yaml
from tests.test_cluster import Nodes, wait_for
from uptimewatch.cluster import sharding
from uptimewatch.cluster.local_nats import LocalNatsCluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pings 127.0.0.0/8 with a raw ICMP socket")


def _sites(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"s-{i:03d}",
            "name": f"Site {i:03d}",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": f"127.0.2.{i + 1}", "snmp_enabled": False}],
        }
        for i in range(count)
    ]


class Group(Nodes):
    """Nodes with a given number of sites and extra ``cluster:`` settings."""

    def __init__(self, workdir: Path, nats: LocalNatsCluster, sites: int, **cluster: Any) -> None:
        super().__init__(workdir, nats)
        self.sites = sites
        self.extra = cluster

    def config(self, node_id: str, listen: str) -> Path:
        directory = self.workdir / node_id
        directory.mkdir(exist_ok=True)
        data = province_config(
            _sites(self.sites),
            listen=listen,
            defaults={"interval": 1.0, "timeout": 0.5, "hard_after": 1, "icmp": {"count": 1}},
        )
        data["storage"] = {"path": str(directory / "state.sqlite")}
        data["cluster"] = {
            "node_id": node_id,
            "nats": {"servers": self.nats.urls},
            "heartbeat_interval": 0.5,
            "node_timeout": 3,
            "leader_timeout": 3,
            "join_grace": 0,
            **self.extra,
        }
        return write_yaml(directory / "config.yaml", data)

    def start_all(self, *node_ids: str) -> None:
        procs = [self.start(n) for n in node_ids]
        for proc in procs:
            proc.wait_ready()

    def metrics(self, node_id: str) -> list[Any]:
        status, body = http_get(self.urls[node_id] + "/metrics", timeout=5)
        assert status == 200, body
        return list(text_string_to_metric_families(body))

    def pollers(self, node_id: str) -> dict[str, tuple[str, ...]]:
        return {s: tuple(v) for s, v in self.get(node_id, "/api/v1/cluster/sites")["sites"].items()}


def _alive(group: Group, node_id: str) -> set[str]:
    return {n["id"] for n in group.cluster(node_id)["nodes"] if n["alive"]}


def _exported_sites(families: list[Any]) -> set[str]:
    return {s.labels["site"] for f in families if f.name == "uptimewatch_site_state" for s in f.samples}


def test_every_node_serves_every_site_and_exports_only_its_own(
    nats_cluster: LocalNatsCluster, tmp_path: Path
) -> None:
    group = Group(tmp_path, nats_cluster, sites=18)
    everyone = {"n1", "n2", "n3"}
    try:
        group.start_all(*sorted(everyone))
        for node_id in everyone:
            wait_for(lambda n=node_id: _alive(group, n) == everyone, 30, f"3 nodes on {node_id}", group.logs)
        expected = sharding.assign([f"s-{i:03d}" for i in range(18)], sorted(everyone), 2)
        wait_for(lambda: group.pollers("n1") == expected, 10, "2 vantage points per site", group.logs)
        started = time.time()

        def fresh(node_id: str) -> list[dict[str, Any]] | None:
            sites = group.get(node_id, "/api/v1/sites")["sites"]
            ok = len(sites) == 18 and all(
                s["state"] == "up" and (s["last_observed_at"] or 0) > started for s in sites
            )
            return sites if ok else None

        for node_id in sorted(everyone):
            sites = wait_for(lambda n=node_id: fresh(n), 20, f"every site fresh on {node_id}", group.logs)
            for site in sites:  # every node names the same owner and pollers, best first
                assert site["owner"] == expected[site["id"]][0]
                assert site["polled_by"] == list(expected[site["id"]])
            detail = group.get(node_id, "/api/v1/sites/s-000")
            assert detail["owner"] == expected["s-000"][0]

        # /metrics: each site from its owner only, every site from someone, nothing twice
        exported: dict[str, set[str]] = {}
        for node_id in sorted(everyone):
            families = group.metrics(node_id)
            exported[node_id] = _exported_sites(families)
            assert exported[node_id] == {s for s, p in expected.items() if p[0] == node_id}
            by_name = {f.name: f for f in families}
            (build,) = by_name["uptimewatch_build_info"].samples
            assert build.labels["node"] == node_id
            assert all(s.labels["node"] == node_id for s in by_name["uptimewatch_scheduler_targets"].samples)
            peers = {s.labels["peer"]: s.value for s in by_name["uptimewatch_cluster_peer_alive"].samples}
            assert peers == dict.fromkeys(everyone, 1.0)
            (count,) = by_name["uptimewatch_cluster_sites_exported"].samples
            assert count.value == len(exported[node_id])
            district = sum(s.value for s in by_name["uptimewatch_district_sites"].samples)
            assert district == len(exported[node_id])
        assert set().union(*exported.values()) == set(expected)
        assert sum(len(v) for v in exported.values()) == 18
        leaders = [
            n
            for n in everyone
            if next(f for f in group.metrics(n) if f.name == "uptimewatch_cluster_leader").samples[0].value
        ]
        assert len(leaders) == 1
    finally:
        group.stop()


def test_a_fourth_node_takes_about_a_quarter_and_nothing_else_moves(
    nats_cluster: LocalNatsCluster, tmp_path: Path
) -> None:
    count = 48
    site_ids = [f"s-{i:03d}" for i in range(count)]
    group = Group(tmp_path, nats_cluster, sites=count, vantage_points=1)
    try:
        group.start_all("n1", "n2", "n3")
        three = sharding.assign(site_ids, ["n1", "n2", "n3"], 1)
        wait_for(lambda: group.pollers("n1") == three, 30, "3 nodes share the sites", group.logs)
        four = sharding.assign(site_ids, ["n1", "n2", "n3", "n4"], 1)
        joined_at = time.time()
        group.start_all("n4")
        for node_id in ("n1", "n2", "n3", "n4"):
            wait_for(lambda n=node_id: group.pollers(n) == four, 20, f"4 nodes seen by {node_id}", group.logs)
        moved = sharding.moved(three, four)
        print(f"a fourth node: {len(moved)} of {count} sites moved")
        assert all(four[s] == ("n4",) for s in moved)  # only to the newcomer, none between the others
        assert 0.15 * count <= len(moved) <= 0.35 * count  # about a quarter
        # the newcomer polls what it took, and the others stopped polling it
        n4_sites = {s for s, p in four.items() if p == ("n4",)}
        assert n4_sites == moved

        def newcomer_polls() -> bool:
            sites = {s["id"]: s for s in group.get("n1", "/api/v1/sites")["sites"]}
            # a site that moved before its old owner's first poll has no observation time yet
            return all(
                sites[s]["owner"] == "n4" and (sites[s]["last_observed_at"] or 0) > joined_at for s in moved
            )

        wait_for(newcomer_polls, 20, "n4 polls its sites", group.logs)
        for node_id in ("n1", "n2", "n3"):
            targets = next(f for f in group.metrics(node_id) if f.name == "uptimewatch_scheduler_targets")
            icmp = {s.labels["probe"]: s.value for s in targets.samples}.get("icmp", 0)
            assert icmp == sum(1 for p in four.values() if p == (node_id,)), node_id
    finally:
        group.stop()


def test_the_site_owner_is_absent_on_a_node_alone(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    data = province_config(_sites(2), listen=listen, defaults={"interval": 1.0, "icmp": {"count": 1}})
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    proc = DaemonProcess(write_yaml(tmp_path / "config.yaml", data), listen)
    try:
        proc.wait_ready()
        status, body = http_get(proc.url + "/api/v1/sites")
        assert status == 200
        assert '"owner"' not in body
        assert '"last_observed_at"' in body
    finally:
        proc.stop()
