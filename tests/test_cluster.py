"""Several probe nodes as one monitor: a real 3-server NATS cluster and 3 ``uptimewatch run``
subprocesses watching devices on loopback (ICMP to 127.0.0.0/8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonProcess, free_tcp_port, http_get, province_config, write_yaml
from uptimewatch.cluster.local_nats import LocalNatsCluster

SITES = 12
INTERVAL = 1.0
UPTIMEWATCH = [sys.executable, "-m", "uptimewatch.cli"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pings 127.0.0.0/8 with a raw ICMP socket")


def _sites() -> list[dict[str, Any]]:
    return [
        {
            "id": f"bts-{i:02d}",
            "name": f"BTS {i:02d}",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": f"127.0.1.{i + 1}", "snmp_enabled": False}],
        }
        for i in range(SITES)
    ]


class Nodes:
    """N uptimewatch nodes sharing one NATS cluster, each with its own config, port and state."""

    def __init__(self, workdir: Path, nats: LocalNatsCluster) -> None:
        self.workdir = workdir
        self.nats = nats
        self.procs: dict[str, DaemonProcess] = {}
        self.urls: dict[str, str] = {}

    def config(self, node_id: str, listen: str) -> Path:
        directory = self.workdir / node_id
        directory.mkdir(exist_ok=True)
        data = province_config(
            _sites(),
            listen=listen,
            defaults={"interval": INTERVAL, "timeout": 0.5, "hard_after": 1, "icmp": {"count": 1}},
        )
        data["storage"] = {"path": str(directory / "state.sqlite")}
        data["cluster"] = {
            "node_id": node_id,
            "nats": {"servers": self.nats.urls},
            "heartbeat_interval": 0.5,
            "node_timeout": 3,
            "leader_timeout": 3,
            "join_grace": 0,
        }
        return write_yaml(directory / "config.yaml", data)

    def start(self, node_id: str) -> DaemonProcess:
        listen = f"127.0.0.1:{free_tcp_port()}"
        proc = DaemonProcess(self.config(node_id, listen), listen)
        self.procs[node_id] = proc
        self.urls[node_id] = proc.url
        return proc

    def get(self, node_id: str, path: str) -> Any:
        status, body = http_get(self.urls[node_id] + path, timeout=3)
        assert status == 200, body
        return json.loads(body)

    def cluster(self, node_id: str) -> dict[str, Any]:
        return dict(self.get(node_id, "/api/v1/cluster"))

    def kill(self, node_id: str) -> None:
        proc = self.procs.pop(node_id)
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
        proc.stop()  # closes its log

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in self.procs.items())

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture
def nodes(nats_cluster: LocalNatsCluster, tmp_path: Path) -> Iterator[Nodes]:
    group = Nodes(tmp_path, nats_cluster)
    try:
        yield group
    finally:
        group.stop()


def wait_for(predicate: Any, timeout: float, what: str, logs: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (AssertionError, OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})\n{logs() if logs else ''}")


def _agreed(nodes: Nodes, alive: set[str]) -> str | bool:
    """The leader, when every given node sees exactly ``alive`` as alive and the same leader."""
    leaders = set()
    for node_id in alive:
        status = nodes.cluster(node_id)
        if {n["id"] for n in status["nodes"] if n["alive"]} != alive:
            return False
        leaders.add(status["leader"])
    if len(leaders) != 1 or None in leaders:
        return False
    (leader,) = leaders
    return str(leader)


def _all_up_and_fresh(nodes: Nodes, node_id: str, since: float) -> bool:
    sites = nodes.get(node_id, "/api/v1/sites")["sites"]
    return len(sites) == SITES and all(
        s["state"] == "up" and (s["last_observed_at"] or 0) > since for s in sites
    )


def _pollers(nodes: Nodes, node_id: str) -> dict[str, list[str]]:
    return dict(nodes.get(node_id, "/api/v1/cluster/sites")["sites"])


class Staleness:
    """The oldest ``last_observed_at`` of any site seen on a node's API, sampled during a failover:
    how long a site went without an observation."""

    def __init__(self) -> None:
        self.worst = 0.0

    def sample(self, nodes: Nodes, node_id: str) -> None:
        now = time.time()
        for site in nodes.get(node_id, "/api/v1/sites")["sites"]:
            if site["last_observed_at"]:
                self.worst = max(self.worst, now - site["last_observed_at"])


def test_three_nodes_share_the_province_and_survive_kill_9(nodes: Nodes) -> None:
    for node_id in ("n1", "n2", "n3"):
        nodes.start(node_id)
    for proc in nodes.procs.values():
        proc.wait_ready()
    everyone = {"n1", "n2", "n3"}
    leader = wait_for(lambda: _agreed(nodes, everyone), 30, "3 live nodes and one leader", nodes.logs)

    # every site has 2 vantage points, spread over the three nodes, and every node sees all sites
    pollers = wait_for(
        lambda: (p := _pollers(nodes, "n1")) and {n for v in p.values() for n in v} == everyone and p,
        10,
        "2 vantage points per site",
    )
    assert len(pollers) == SITES
    assert all(len(v) == 2 for v in pollers.values()), pollers
    share = {n: sum(n in v for v in pollers.values()) for n in everyone}
    assert all(count > 0 for count in share.values()), (share, nodes.cluster("n1"), nodes.logs())
    started = time.time()
    for node_id in everyone:
        wait_for(lambda n=node_id: _all_up_and_fresh(nodes, n, started), 15, f"all sites up on {node_id}")

    status = nodes.cluster("n2")
    assert {n["id"]: n["pid"] for n in status["nodes"]} == {n: p.proc.pid for n, p in nodes.procs.items()}
    assert sum(n["sites"] for n in status["nodes"]) == 2 * SITES

    table = subprocess.run(
        [*UPTIMEWATCH, "cluster", "status", "-c", str(nodes.workdir / "n1/config.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "ALIVE", "ISOLATED"]
    assert sorted(line.split()[0].rstrip("*") for line in lines[1:4]) == ["n1", "n2", "n3"]
    assert f"leader: {leader}" in table.stdout

    # kill -9 a follower: its sites go to the others, and no site goes stale or down
    victim = next(n for n in sorted(everyone) if n != leader)
    survivors = everyone - {victim}
    gap = Staleness()

    def seen_dead(alive: set[str], leading: str | None = None) -> bool:
        """Every node in ``alive`` sees exactly those alive (and, if given, ``leading`` leads)."""
        gap.sample(nodes, min(alive))
        if leading is not None:
            return _agreed(nodes, alive) == leading
        return all({n["id"] for n in nodes.cluster(m)["nodes"] if n["alive"]} == alive for m in alive)

    killed_at = time.time()
    nodes.kill(victim)
    wait_for(lambda: seen_dead(survivors, leader), 15, f"{victim} seen dead", nodes.logs)
    detected = time.time() - killed_at
    # the assignment follows at the next heartbeat round
    wait_for(
        lambda: all(set(v) == survivors for v in _pollers(nodes, leader).values()),
        2,
        "the dead node's sites reassigned",
    )
    reassigned = time.time() - killed_at
    since = killed_at + reassigned
    for node_id in survivors:
        wait_for(
            lambda n=node_id: gap.sample(nodes, n) or _all_up_and_fresh(nodes, n, since),
            10,
            f"fresh on {node_id}",
        )
    repolled = time.time() - killed_at
    follower_gap = gap.worst

    # kill -9 the leader: the last node leads within leader_timeout and polls everything
    last = next(iter(survivors - {leader}))
    gap = Staleness()
    killed_at = time.time()
    nodes.kill(leader)
    wait_for(lambda: seen_dead({last}), 15, f"{leader} seen dead by {last}", nodes.logs)
    leader_dead = time.time() - killed_at
    wait_for(lambda: seen_dead({last}, last), 15, f"{last} leading", nodes.logs)
    took_over = time.time() - killed_at
    since = killed_at + took_over
    wait_for(
        lambda: gap.sample(nodes, last) or _all_up_and_fresh(nodes, last, since), 10, "fresh after failover"
    )
    leader_repolled = time.time() - killed_at
    print(
        f"\nFAILOVER kill -9 follower {victim}: seen dead after {detected:.1f} s, sites reassigned after"
        f" {reassigned:.1f} s, every site observed after the reassignment {repolled:.1f} s after the kill;"
        f" oldest site observation during it {follower_gap:.1f} s (interval {INTERVAL:g} s)"
        f"\nFAILOVER kill -9 leader {leader}: seen dead after {leader_dead:.1f} s, {last} leads after"
        f" {took_over:.1f} s, every site observed again {leader_repolled:.1f} s after the kill;"
        f" oldest site observation during it {gap.worst:.1f} s"
    )
