"""``uptimewatch demo --nodes 3``: three node processes over a 3-server NATS cluster, and what
happens after ``kill -9`` of the leader's pid (issue 11's "done when").

The demo runs in a subprocess of its own (as ``make demo-cluster`` runs it, with a province on
addresses and ports of this test), and its nodes are its subprocesses; the test reads only what
a user would: the printed URLs and the HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import http_get
from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from tests.test_cluster import wait_for
from uptimewatch.cli import build_parser
from uptimewatch.demo import DemoOptions

FIRST_NET = 214  # 127.214.x.y: apart from a demo someone runs (127.16.x.y) and the other demo tests
SITES = 16
INTERVAL = 2.0

DEMO = """
import asyncio, sys
from pathlib import Path
from uptimewatch.demo import DemoOptions, run_demo

sites, listen, workdir, port, scenario, table, first_net = sys.argv[1:]
opts = DemoOptions(
    sites=int(sites), districts=2, listen=listen, workdir=Path(workdir), snmp_port=int(port),
    scenario=Path(scenario), interval="2s", first_net=int(first_net), nft_table=table, mqtt=False,
    nodes=3, duration=900,
)
sys.exit(asyncio.run(run_demo(opts)))
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the nodes ping 127.0.0.0/8 with raw ICMP sockets")


def _free_port_run(count: int) -> int:
    """A TCP port p with p .. p+count-1 all free now."""
    for base in range(23000 + os.getpid() % 1000 * 10, 60000, 7):
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free run of ports")


def _free_udp_port() -> int:
    return free_port_below_ephemeral(f"127.{FIRST_NET}.1.1")


def _get(url: str) -> Any:
    status, body = http_get(url, timeout=3)
    assert status == 200, body
    return json.loads(body)


def test_the_cli_takes_nodes_and_a_kill_time() -> None:
    args = build_parser().parse_args(["demo", "--nodes", "3", "--kill-leader-at", "90"])
    opts = DemoOptions.from_args(args)
    assert (opts.nodes, opts.kill_leader_at, opts.workdir) == (3, 90.0, Path("var/demo-cluster"))
    with pytest.raises(ValueError, match="--nodes"):
        DemoOptions.from_args(build_parser().parse_args(["demo", "--nodes", "0"]))


def test_kill_9_of_the_leader_the_others_see_it_dead_elect_and_observe_every_site(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("name: quiet\nspeed: 1\nsteps: []\n", encoding="utf-8")
    base = _free_port_run(3)
    out_path = tmp_path / "demo.out"
    with out_path.open("wb") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEMO,
                str(SITES),
                f"127.0.0.1:{base}",
                str(tmp_path / "demo"),
                str(_free_udp_port()),
                str(scenario),
                f"uwdemo_cl_{os.getpid()}",
                str(FIRST_NET),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def output() -> str:
        return out_path.read_text(errors="replace")

    def logs() -> str:
        node_logs = sorted((tmp_path / "demo" / "nodes").glob("*/daemon.log"))
        return output()[-3000:] + "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in node_logs)

    try:
        # the demo prints each node's status page once all three see each other
        urls = wait_for(
            lambda: (
                (found := re.findall(r"node (n\d)\s+(http://\S+)/ ", output())) and len(found) == 3 and found
            ),
            90,
            "the demo's three status page URLs",
            logs,
        )
        nodes = dict(urls)
        assert nodes == {f"n{i + 1}": f"http://127.0.0.1:{base + i}" for i in range(3)}
        for url in nodes.values():
            status, page = http_get(url + "/", timeout=5)
            assert status == 200
            assert "<html" in page.lower()

        def agreed(on: set[str]) -> tuple[str, dict[str, int]] | None:
            """(leader, pids) when every node in ``on`` sees exactly ``on`` alive and one leader."""
            leaders, pids = set(), {}
            for node_id in on:
                view = _get(nodes[node_id] + "/api/v1/cluster")
                alive = {n["id"] for n in view["nodes"] if n["alive"]}
                if alive != on:
                    return None
                leaders.add(view["leader"])
                pids.update({n["id"]: n["pid"] for n in view["nodes"] if n["alive"]})
            if len(leaders) != 1 or None in leaders:
                return None
            return str(next(iter(leaders))), pids

        everyone = set(nodes)
        leader, pids = wait_for(lambda: agreed(everyone), 30, "3 live nodes and one leader", logs)
        started = time.time()

        def fresh(node_id: str, since: float) -> bool:
            sites = _get(nodes[node_id] + "/api/v1/sites")["sites"]
            now = time.time()
            return len(sites) == SITES and all(
                (s["last_observed_at"] or 0) > since and now - s["last_observed_at"] < 3 * INTERVAL + 8
                for s in sites
            )

        for node_id in everyone:
            wait_for(lambda n=node_id: fresh(n, started), 30, f"every site observed on {node_id}", logs)

        survivors = everyone - {leader}
        killed_at = time.time()
        os.kill(pids[leader], signal.SIGKILL)

        def seen_dead() -> bool:
            for node_id in survivors:
                view = _get(nodes[node_id] + "/api/v1/cluster")
                if any(n["id"] == leader and n["alive"] for n in view["nodes"]):
                    return False
            return True

        wait_for(seen_dead, 30, f"{leader} seen dead by {sorted(survivors)}", logs)
        dead_after = time.time() - killed_at
        new_leader, _ = wait_for(
            lambda: (seen := agreed(survivors)) and seen[0] in survivors and seen, 30, "a new leader", logs
        )
        leader_after = time.time() - killed_at
        for node_id in survivors:
            wait_for(lambda n=node_id: fresh(n, killed_at), 60, f"every site fresh again on {node_id}", logs)
        fresh_after = time.time() - killed_at
        # the dead leader's sites are polled by the two survivors now
        pollers = _get(nodes[new_leader] + "/api/v1/cluster/sites")["sites"]
        assert all(set(p) == survivors for p in pollers.values()), pollers
        print(
            f"\nkill -9 of leader {leader}: seen dead after {dead_after:.1f} s, {new_leader} leads after "
            f"{leader_after:.1f} s, every site fresh on both survivors after {fresh_after:.1f} s"
        )
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            code = demo.wait()
    assert code == 0, logs()
    # the demo stopped every node it started (the killed one is gone already)
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
