"""``uptimewatch demo --nodes N``: the demo province watched by N uptimewatch nodes at once.

What it adds to the single-node demo: a NATS cluster of three ``nats-server`` processes with
JetStream on loopback (:mod:`uptimewatch.cluster.local_nats`, data in ``<workdir>/nats/``), and N
``uptimewatch run`` processes instead of the in-process daemon, each with its own configuration
(``<workdir>/nodes/<id>/config.yaml``: the province's, plus ``cluster:``, its own listen port and
state), log (``daemon.log`` beside it) and status page. They are real processes, so ``kill -9``
one of them (its pid is in ``GET /api/v1/cluster``) and watch the others take over; with
``--kill-leader-at`` the demo does that itself, prints what the survivors see and when, and
starts the node again a minute later.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ..cluster.local_nats import LocalNatsCluster

log = logging.getLogger(__name__)

#: faster than the production defaults, so a failover shows within seconds
DEMO_CLUSTER_TIMING = {
    "heartbeat_interval": "1s",
    "node_timeout": "5s",
    "leader_timeout": "6s",
    "join_grace": "5s",
}
NATS_SERVERS = 3
#: how long after a kill the demo starts the node again
RESTART_AFTER = 60.0


@dataclass
class DemoNode:
    id: str
    listen: str
    directory: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.directory / "daemon.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None


def _listen_addresses(listen: str, count: int) -> list[str]:
    """The first node on ``listen``, the others on the ports after it."""
    host, _, port = listen.rpartition(":")
    return [f"{host}:{int(port) + i}" for i in range(count)]


def node_config(base: dict[str, Any], node: DemoNode, nats_urls: list[str]) -> dict[str, Any]:
    """The province's configuration as node ``node`` runs it."""
    config = copy.deepcopy(base)
    config["server"] = {**config.get("server", {}), "listen": node.listen}
    config["storage"] = {**config.get("storage", {}), "path": "state.sqlite"}
    if "mqtt" in config:  # one broker session per node: a shared client id would evict the others
        config["mqtt"] = {**config["mqtt"], "client_id": f"uptimewatch-demo-{node.id}"}
    config["cluster"] = {
        "node_id": node.id,
        "url": node.url,
        "nats": {"servers": nats_urls},
        **DEMO_CLUSTER_TIMING,
    }
    return config


class DemoCluster:
    """``async with DemoCluster(...) as cluster``: NATS and every node up, all of them seen alive."""

    def __init__(self, workdir: Path, config: dict[str, Any], listen: str, count: int) -> None:
        if count < 2:
            raise ValueError("a cluster demo needs at least 2 nodes")
        self.workdir = Path(workdir)
        self.base = config
        self.nodes = [
            DemoNode(f"n{i + 1}", addr, self.workdir / "nodes" / f"n{i + 1}")
            for i, addr in enumerate(_listen_addresses(listen, count))
        ]
        self.nats: LocalNatsCluster | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- start and stop ---------------------------------------------------------------------

    async def __aenter__(self) -> DemoCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 60.0) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        nats_dir = self.workdir / "nats"
        # a fresh NATS store each run: no heartbeats or leases left over from the previous one
        await asyncio.to_thread(shutil.rmtree, nats_dir, True)
        self.nats = LocalNatsCluster(nats_dir, size=NATS_SERVERS, cluster_name="uptimewatch-demo")
        await asyncio.to_thread(self.nats.start)
        for node in self.nodes:
            await asyncio.to_thread(self._write_config, node)
            self.start_node(node)
        await self.wait_alive({n.id for n in self.nodes}, timeout)

    def _write_config(self, node: DemoNode) -> None:
        assert self.nats is not None
        node.directory.mkdir(parents=True, exist_ok=True)
        data = node_config(self.base, node, self.nats.urls)
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)
        node.config_path.write_text(
            f"# uptimewatch demo: node {node.id} of the cluster demo; rewritten on each run.\n" + text,
            encoding="utf-8",
        )

    def start_node(self, node: DemoNode) -> None:
        if node.running:
            return
        with node.log_path.open("ab") as logfile:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "uptimewatch.cli", "run", "-c", str(node.config_path)],
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a Ctrl-C in the demo's terminal is the demo's to handle
            )

    async def stop(self) -> None:
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in running:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
        for node in running:
            assert node.proc is not None
            try:
                await asyncio.to_thread(node.proc.wait, 15)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                await asyncio.to_thread(node.proc.wait)
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
        if self._http is not None:
            await self._http.close()

    # -- looking at it ----------------------------------------------------------------------

    async def get(self, node: DemoNode, path: str) -> Any:
        assert self._http is not None
        async with self._http.get(node.url + path) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def view(self, node: DemoNode) -> dict[str, Any] | None:
        """``GET /api/v1/cluster`` of ``node``, None while it does not answer."""
        try:
            return dict(await self.get(node, "/api/v1/cluster"))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    async def wait_alive(self, expected: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None and node.id in expected:
                    raise RuntimeError(
                        f"node {node.id} exited with {node.proc.returncode}; see {node.log_path}"
                    )
            views = [await self.view(n) for n in self.nodes if n.id in expected]
            if all(v and {m["id"] for m in v["nodes"] if m["alive"]} == expected for v in views):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo's nodes did not all see each other within {timeout:.0f} s")
            await asyncio.sleep(0.5)

    def by_id(self, node_id: str) -> DemoNode:
        return next(n for n in self.nodes if n.id == node_id)

    async def leader(self) -> DemoNode | None:
        for node in self.nodes:
            if node.running and (view := await self.view(node)) and view["leader"]:
                return self.by_id(view["leader"])
        return None

    # -- the failover the demo shows ----------------------------------------------------------

    async def kill_leader_at(self, delay: float, out: Callable[[str], object]) -> None:
        """After ``delay`` seconds: ``kill -9`` the leader, say what the others see and when, and
        start it again :data:`RESTART_AFTER` seconds later."""
        started = time.monotonic()
        await asyncio.sleep(delay)
        victim = await self.leader()
        if victim is None or victim.proc is None:
            out("[cluster] no leader to kill")
            return
        at = time.monotonic() - started
        out(f"[cluster T+{at:.0f}s] kill -9 the leader {victim.id} (pid {victim.pid})")
        killed_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.proc.wait)
        await self.report_failover(victim, killed_at, out)
        await asyncio.sleep(RESTART_AFTER)
        self.start_node(victim)
        out(f"[cluster] started {victim.id} again (pid {victim.pid}); it rejoins after join_grace")

    async def report_failover(self, victim: DemoNode, killed_at: float, out: Callable[[str], object]) -> None:
        survivors = [n for n in self.nodes if n is not victim and n.running]
        seen_dead: float | None = None
        new_leader: tuple[str, float] | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            views = [await self.view(n) for n in survivors]
            now = time.time()
            if seen_dead is None and all(
                v and not any(m["id"] == victim.id and m["alive"] for m in v["nodes"]) for v in views
            ):
                seen_dead = now - killed_at
                names = ", ".join(n.id for n in survivors)
                out(f"[cluster] {names} see {victim.id} dead after {seen_dead:.1f} s")
            leaders = {v["leader"] for v in views if v}
            if new_leader is None and len(leaders) == 1 and None not in leaders and victim.id not in leaders:
                new_leader = (str(next(iter(leaders))), now - killed_at)
                out(f"[cluster] {new_leader[0]} leads after {new_leader[1]:.1f} s")
            if seen_dead is not None and new_leader is not None:
                stale = await self.stale_sites(survivors, killed_at)
                if not stale:
                    out(
                        f"[cluster] every site observed again after {time.time() - killed_at:.1f} s, "
                        f"on every surviving node"
                    )
                    return
            await asyncio.sleep(0.5)
        out(f"[cluster] the failover did not complete within 120 s; see {victim.directory}/../*/daemon.log")

    async def stale_sites(self, nodes: list[DemoNode], since: float) -> set[str]:
        """Sites whose newest observation on some node of ``nodes`` is older than ``since``."""
        stale: set[str] = set()
        for node in nodes:
            try:
                sites = (await self.get(node, "/api/v1/sites"))["sites"]
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError):
                return {"?"}
            stale |= {s["id"] for s in sites if (s.get("last_observed_at") or 0) <= since}
        return stale


def describe(cluster: DemoCluster) -> list[str]:
    """The lines the demo prints about its nodes."""
    lines = []
    for node in cluster.nodes:
        lines.append(f"  node {node.id}      {node.url}/  (pid {node.pid}; log {node.log_path})")
    first = cluster.nodes[0]
    nats = ", ".join(cluster.nats.urls) if cluster.nats else "-"
    lines += [
        f"  cluster      {first.url}/api/v1/cluster  (any node; uptimewatch cluster status -c "
        f"{first.config_path})",
        f"  NATS         {nats}  (data in {cluster.workdir / 'nats'})",
        f"  metrics      {first.url}/metrics on each node: the sites it owns",
        f"  API          {first.url}/api/v1/sites on any node: every site, its owner, last_observed_at",
    ]
    return lines


__all__ = ["DEMO_CLUSTER_TIMING", "DemoCluster", "DemoNode", "describe", "node_config"]
