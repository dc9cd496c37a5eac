"""uptimewatch cluster benchmark (``make bench-cluster``): 1 node against 2 nodes, and what one
observation costs on the stream (issue 11, "Speed").

In one run, on real parts only (127.0.0.0/8 and loopback ports):

* a NATS cluster of ``--nats-servers`` ``nats-server`` processes with JetStream
  (:class:`uptimewatch.cluster.local_nats.LocalNatsCluster`, as the cluster tests and the demo);
* the benchmark's SNMP agents (``bench/agents.py``, their own processes);
* ``uptimewatch run`` processes, one per node, each with the ``cluster:`` section, polling the
  agents (a 10-OID GET and a 3-ping ICMP burst per device) at an interval shorter than they can
  keep up with, so each node's core is saturated. Node ``i`` is pinned to CPU ``i``.

Scenarios: 1 node (vantage_points 1), 2 nodes (vantage_points 1: the throughput comparison) and
2 nodes with vantage_points 2 (for context). For each: devices polled per second (wall), the CPU
of every process from ``/proc/PID/stat`` (nodes, NATS servers, agents), devices per node-CPU-second,
and the stream's messages and bytes over the window.

Then the stream phase: two child processes, each a real :class:`~uptimewatch.cluster.node.ClusterNode`
on the same NATS cluster. The publisher puts real observations (read back from the stream) through
``observe()`` (vantage merge, MessagePack encoding, the acknowledged JetStream publish, and reading
its own message back); the consumer reads them from the stream (decode, merge, the health model).
Figures: CPU µs per observation on each side, and bytes per observation.

The machine has 2 cores, shared by the nodes, NATS and the agents: the table gives both the wall
figures and the CPU-normalised ones, and the load average. Results: ``var/bench/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_bench import Agents, _cpu_seconds_of, free_tcp_port, free_udp_port, load, write_config

from uptimewatch import __version__
from uptimewatch.cluster import codec
from uptimewatch.cluster.local_nats import LocalNatsCluster
from uptimewatch.cluster.node import STREAM, ClusterNode, SiteRef
from uptimewatch.config.cluster import ClusterConfig
from uptimewatch.model.health import HealthModel
from uptimewatch.model.observation import Observation

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

#: (name, nodes, vantage_points, paced); vantage_points 0: daemons without a ``cluster:``
#: section, each given its share of the sites in its own configuration (what sharding that costs
#: nothing would do here). ``paced``: offered :data:`PACE` of what "1 node" polled flat out, per
#: node, instead of more than a node can do.
#:
#: Why the paced pair: on this 2-core machine the agents and NATS take most of a core, so one node
#: polls flat out on a core nearly its own while each of two gets about two thirds of one, and a
#: node's cost per device depends on how it runs (a node behind its schedule starts polls in large
#: groups, one on time spreads them; one flat out shares each turn of its event loop among more
#: results). The flat-out ratio mixes that in with the cluster's cost: two daemons that share
#: nothing read well above 2 by it. Paced, one node and each of two run the same way at the same
#: rate, within what the machine has for all of them, and the ratio of their CPU per device is the
#: cluster's own cost.
SCENARIOS = (
    ("1 node", 1, 1, False),
    ("2 nodes", 2, 1, False),
    ("2 nodes, vantage_points 2", 2, 2, False),
    ("2 daemons alone, half the sites each", 2, 0, False),
    ("1 node, paced", 1, 1, True),
    ("2 nodes, paced", 2, 1, True),
)
#: a paced node is offered this share of what one node polled flat out
PACE = 0.4
TIMING = {"heartbeat_interval": "1s", "node_timeout": "5s", "leader_timeout": "6s", "join_grace": "0s"}


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _cpu_of(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _cpu_seconds_of(pid)
    return total


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


async def until(cond: Callable[[], bool], *, step: float, timeout: float = 60.0) -> bool:
    """Wait for ``cond`` (polled every ``step`` s), at most ``timeout`` s; whether it came true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the nodes ------------------------------------------------------------------------------------


@dataclass
class Node:
    id: str
    port: int
    directory: Path
    cpu: int | None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def node_config(
    base: dict[str, Any],
    node: Node,
    nats_urls: list[str],
    vantage: int,
    replicas: int,
    *,
    share: tuple[int, int] = (0, 1),
) -> Path:
    """Node ``node``'s configuration; with ``vantage`` 0, no ``cluster:`` section and only the
    sites of its ``share`` (index, of how many)."""
    data = dict(base)
    data["server"] = {"listen": f"127.0.0.1:{node.port}"}
    data["storage"] = {"path": str(node.directory / "state.sqlite")}
    if vantage:
        data["cluster"] = {
            "node_id": node.id,
            "url": node.url,
            "nats": {"servers": nats_urls, "replicas": replicas, "stream_max_age": "10m"},
            "vantage_points": vantage,
            **TIMING,
        }
    else:
        data["sites"] = base["sites"][share[0] :: share[1]]
    node.directory.mkdir(parents=True, exist_ok=True)
    path = node.directory / "config.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def start_node(node: Node, config: Path) -> None:
    with (node.directory / "daemon.log").open("ab") as logfile:
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "uptimewatch.cli", "run", "-c", str(config)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.directory,
            start_new_session=True,
        )
    if node.cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(node.proc.pid, {node.cpu})


def stop_nodes(nodes: Sequence[Node]) -> None:
    running = [n.proc for n in nodes if n.proc is not None and n.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        resp.raise_for_status()
        if resp.content_type == "application/json":
            return await resp.json()
        return await resp.text()


async def wait_settled(
    http: aiohttp.ClientSession, nodes: Sequence[Node], sites: int, vantage: int, timeout: float
) -> None:
    """Until every node sees every node alive and the sites are shared as ``vantage`` says
    (``vantage`` 0, daemons without a cluster: until each one answers and is ready)."""
    deadline = time.monotonic() + timeout
    expected = {n.id for n in nodes}
    while True:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is not None:
                log = (node.directory / "daemon.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"node {node.id} exited with {node.proc.returncode}:\n{log}")
        ok = True
        for node in nodes:
            try:
                if not vantage:
                    async with http.get(node.url + "/readyz") as resp:
                        ok = ok and resp.status == 200
                    continue
                view = await _get(http, node.url + "/api/v1/cluster")
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                ok = False
                break
            alive = {n["id"] for n in view["nodes"] if n["alive"] and n["eligible"]}
            polled = sum(n["sites"] for n in view["nodes"] if n["id"] in expected)
            if alive != expected or polled != sites * min(vantage, len(nodes)) or view["degraded"]:
                ok = False
                break
        if ok:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes {sorted(expected)} did not settle within {timeout:.0f} s")
        await asyncio.sleep(0.5)


def _counters(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "uptimewatch_scheduler_polls_total":
                out[f"polls_{s.labels['probe']}"] = s.value
            elif s.name in (
                "uptimewatch_scheduler_deadline_exceeded_total",
                "uptimewatch_scheduler_overloaded_polls_total",
            ):
                out["failed"] = out.get("failed", 0.0) + s.value
            elif s.name == "uptimewatch_cluster_stream_messages_total":
                out[s.labels["direction"]] = s.value
            elif s.name == "uptimewatch_cluster_stream_errors_total":
                out[f"lost_{s.labels['kind']}"] = s.value
    return out


@dataclass
class Sample:
    wall: float
    counters: dict[str, dict[str, float]]
    node_cpu: dict[str, float]
    nats_cpu: float
    agents_cpu: float
    stream_messages: int
    stream_bytes: int


async def sample(
    http: aiohttp.ClientSession, nodes: Sequence[Node], nats: LocalNatsCluster, agents: Agents, js: Any
) -> Sample:
    counters, cpu = {}, {}
    for node in nodes:
        counters[node.id] = _counters(await _get(http, node.url + "/metrics"))
        assert node.proc is not None
        cpu[node.id] = _cpu_of([node.proc.pid])  # right after its own scrape
    info = await js.stream_info(STREAM)
    return Sample(
        time.monotonic(),
        counters,
        cpu,
        _cpu_of(list(nats.pids().values())),
        _cpu_of([p.pid for p in agents.procs]),
        int(info.state.messages),
        int(info.state.bytes),
    )


async def run_scenario(
    name: str,
    count: int,
    vantage: int,
    *,
    base: dict[str, Any],
    sites: int,
    devices: int,
    nats: LocalNatsCluster,
    agents: Agents,
    js: Any,
    workdir: Path,
    args: argparse.Namespace,
    offered: float,
) -> dict[str, Any]:
    """One scenario, its devices offered at ``offered`` devices a second (through their interval)."""
    cpus = _cpus()
    base = {**base, "defaults": {**base["defaults"], "interval": devices / offered}}
    nodes = [
        Node(
            f"n{i + 1}",
            free_tcp_port(),
            workdir / f"{count}x{vantage}x{offered:.0f}" / f"n{i + 1}",
            cpus[i % len(cpus)] if cpus else None,
        )
        for i in range(count)
    ]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            for i, node in enumerate(nodes):
                start_node(node, node_config(base, node, nats.urls, vantage, args.replicas, share=(i, count)))
            await wait_settled(http, nodes, sites, vantage, timeout=120)
            await asyncio.sleep(args.warmup)
            load_before = _load()
            s0 = await sample(http, nodes, nats, agents, js)
            await asyncio.sleep(args.duration)
            s1 = await sample(http, nodes, nats, agents, js)
        finally:
            await asyncio.to_thread(stop_nodes, nodes)
    wall = s1.wall - s0.wall
    per_node: dict[str, Any] = {}
    polled = 0.0
    observations = 0.0
    for node in nodes:
        c0, c1 = s0.counters[node.id], s1.counters[node.id]
        d = {k: c1.get(k, 0.0) - c0.get(k, 0.0) for k in c1}
        cpu = s1.node_cpu[node.id] - s0.node_cpu[node.id]
        # a device costs one SNMP poll and one ICMP burst; a window cuts the two streams at
        # different points, so the mean counts each device once without the ends biasing it
        dev = (d.get("polls_snmp", 0.0) + d.get("polls_icmp", 0.0)) / 2
        polled += dev
        observations += d.get("published", 0.0)
        per_node[node.id] = {
            "cpu": node.cpu,
            "cpu_s": cpu,
            "cpu_busy": cpu / wall,
            "devices_polled": dev,
            "devices_per_s": dev / wall,
            "devices_per_cpu_s": dev / cpu if cpu else 0.0,
            "failed_polls": d.get("failed", 0.0),
            "published": d.get("published", 0.0),
            # 1.0 in the steady state (an SNMP and an ICMP observation per device polled)
            "published_per_observation_made": d.get("published", 0.0)
            / max(1.0, d.get("polls_snmp", 0.0) + d.get("polls_icmp", 0.0)),
            "received": d.get("received", 0.0),
            "lost": {k[5:]: v for k, v in d.items() if k.startswith("lost_")},
        }
    node_cpu = sum(v["cpu_s"] for v in per_node.values())
    messages = s1.stream_messages - s0.stream_messages
    stored = s1.stream_bytes - s0.stream_bytes
    return {
        "name": name,
        "nodes": count,
        "vantage_points": vantage,
        "devices": devices,
        "offered_devices_per_s": offered,
        "offered_device_polls_per_s": offered * max(1, vantage),
        "wall_s": wall,
        "load_before": load_before,
        "load_after": _load(),
        "per_node": per_node,
        "devices_polled_per_s": polled / wall,
        "distinct_devices_per_s": polled / wall / max(1, vantage),
        "node_cpu_s": node_cpu,
        "node_cores_busy": node_cpu / wall,
        "devices_per_node_cpu_s": polled / node_cpu if node_cpu else 0.0,
        "nats_cpu_s": s1.nats_cpu - s0.nats_cpu,
        "agents_cpu_s": s1.agents_cpu - s0.agents_cpu,
        "observations_published": observations,
        "stream_messages": messages,
        # a message is a batch: as many observations as the publisher found waiting
        "observations_per_message": observations / messages if messages else 0.0,
        "stream_bytes_per_message": stored / messages if messages else 0.0,
        "stream_bytes_per_observation": stored / observations if observations else 0.0,
        "nats_cpu_us_per_observation": (s1.nats_cpu - s0.nats_cpu) / observations * 1e6
        if observations
        else 0.0,
    }


# -- the stream phase: a publisher and a consumer, each its own process ----------------------------


def _child_cluster_config(node_id: str, urls: list[str], replicas: int) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "node_id": node_id,
            "nats": {"servers": urls, "replicas": replicas, "stream_max_age": "10m"},
            # both poll every site: the consumer takes the publisher's results as a vantage point's
            "vantage_points": 2,
            **TIMING,
        }
    )


async def _wait_peer(node: ClusterNode, peer: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = node.status()
        alive = {n["id"] for n in status["nodes"] if n["alive"] and n["eligible"]}
        if peer in alive and node.node_id in alive and status["vantage_points"] == 2:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node.node_id} did not see {peer} within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def child_consume(args: argparse.Namespace) -> dict[str, Any]:
    loaded, catalog = await asyncio.to_thread(load, args.config)
    refs = [SiteRef(s.id, s.district, 3600.0) for s in loaded.config.sites]
    health = HealthModel(loaded.config, loaded.devices, catalog.thresholds_for)
    ingested: list[Observation] = []

    def ingest(obs: Observation) -> None:
        ingested.append(obs)
        health.ingest(obs)

    node = ClusterNode(
        _child_cluster_config("consumer", args.nats, args.replicas),
        url="",
        sites=lambda: refs,
        ingest=ingest,
        on_assignment=lambda: None,
    )
    await node.start()
    try:
        await _wait_peer(node, "publisher")
        # the clock runs from before the first observation to the last: started at the first one
        # received, a small run could arrive whole in one batch and measure nothing
        cpu0, wall0, got0 = time.process_time(), time.monotonic(), node.counters["received"]
        print("ready", flush=True)
        await until(lambda: node.counters["received"] > got0, step=0.05, timeout=120)
        last, idle_since = got0, time.monotonic()
        while node.counters["received"] < args.observations and time.monotonic() - idle_since < 10:
            await asyncio.sleep(0.05)
            if node.counters["received"] != last:
                last, idle_since = node.counters["received"], time.monotonic()
        cpu1, wall1, got1 = time.process_time(), time.monotonic(), node.counters["received"]
    finally:
        await node.stop()
    # what the health model alone costs for the same observations, for the split
    fresh = HealthModel(loaded.config, loaded.devices, catalog.thresholds_for)
    t0 = time.process_time()
    for obs in ingested:
        fresh.ingest(obs)
    ingest_s = time.process_time() - t0
    received = got1 - got0
    return {
        "received": received,
        "ingested": len(ingested),
        "decode_errors": node.counters["decode_errors"],
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "us_per_observation": (cpu1 - cpu0) / received * 1e6 if received else 0.0,
        "ingest_us_per_observation": ingest_s / len(ingested) * 1e6 if ingested else 0.0,
    }


async def child_publish(args: argparse.Namespace) -> dict[str, Any]:
    loaded, _catalog = await asyncio.to_thread(load, args.config)
    refs = [SiteRef(s.id, s.district, 3600.0) for s in loaded.config.sites]
    by_id = {r.site_id: r for r in refs}
    raw = msgspec.msgpack.decode(args.payloads.read_bytes(), type=list[bytes])
    now = time.time()
    base = [msgspec.structs.replace(obs, started_at=now) for p in raw for obs in codec.decode(p)[2]]
    todo = [base[i % len(base)] for i in range(args.observations)]
    node = ClusterNode(
        _child_cluster_config("publisher", args.nats, args.replicas),
        url="",
        sites=lambda: refs,
        ingest=lambda obs: None,  # a single node ingests its own polls too: not the stream's cost
        on_assignment=lambda: None,
    )
    await node.start()
    try:
        await _wait_peer(node, "consumer")
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        queue = node._publish_queue  # how far the publisher is behind: the one private read
        cpu0, wall0 = time.process_time(), time.monotonic()
        for i, obs in enumerate(todo):
            node.observe(obs, by_id.get(obs.site_id))
            if i % 200 == 199:
                await asyncio.sleep(0)
                await until(lambda: queue.qsize() <= 2000, step=0.002)
        counters = node.counters
        await until(
            lambda: counters["published"] + counters["publish_errors"] + counters["dropped"] >= len(todo),
            step=0.002,
        )
        cpu1, wall1 = time.process_time(), time.monotonic()
        # its own messages come back through its subscription (decoded, then skipped): wait for them
        await until(lambda: counters["received"] >= counters["published"], step=0.01)
        cpu2 = time.process_time()
        print("done", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the consumer has finished
    finally:
        await node.stop()
    published = node.counters["published"]
    return {
        "published": published,
        "publish_errors": node.counters["publish_errors"],
        "dropped": node.counters["dropped"],
        "cpu_s": cpu2 - cpu0,
        "wall_s": wall1 - wall0,
        "publish_rate_per_s": published / (wall1 - wall0) if wall1 > wall0 else 0.0,
        "us_per_observation": (cpu2 - cpu0) / published * 1e6 if published else 0.0,
        "us_per_observation_before_echo": (cpu1 - cpu0) / published * 1e6 if published else 0.0,
    }


def _spawn(mode: str, args: argparse.Namespace, config: Path, payloads: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--config", str(config)]
    cmd += ["--payloads", str(payloads), "--observations", str(args.observations)]
    cmd += ["--replicas", str(args.replicas), *[x for u in args.nats for x in ("--nats", u)]]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)


def _line(proc: subprocess.Popen[str], want: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(want):
        proc.kill()
        raise RuntimeError(f"stream phase child said {line!r} (exit {proc.wait(5)}), wanted {want!r}")
    return line


def run_stream_phase(
    args: argparse.Namespace, config: Path, payloads: Path, cpus: list[int]
) -> dict[str, Any]:
    consumer = _spawn("consume", args, config, payloads)
    publisher = _spawn("publish", args, config, payloads)
    if len(cpus) >= 2:  # one core each, as two nodes of a cluster would have
        with contextlib.suppress(OSError):
            os.sched_setaffinity(publisher.pid, {cpus[0]})
            os.sched_setaffinity(consumer.pid, {cpus[1]})
    try:
        _line(consumer, "ready")
        _line(publisher, "ready")
        assert publisher.stdin is not None
        publisher.stdin.write("go\n")
        publisher.stdin.flush()
        _line(publisher, "done")
        consumed = json.loads(_line(consumer, "{"))
        publisher.stdin.write("end\n")
        publisher.stdin.flush()
        published = json.loads(_line(publisher, "{"))
    finally:
        for proc in (publisher, consumer):
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
    return {"publisher": published, "consumer": consumed}


async def read_payloads(js: Any, count: int) -> list[bytes]:
    """The last ``count`` observations on the stream, as the nodes encoded them."""
    info = await js.stream_info(STREAM)
    last = int(info.state.last_seq)
    first = max(int(info.state.first_seq), last - count + 1)
    out = []
    for seq in range(first, last + 1):
        msg = await js.get_msg(STREAM, seq)
        if msg.data:
            out.append(bytes(msg.data))
    return out


# -- the run --------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import nats

    devices = args.devices
    interval = devices / args.offered
    port = free_udp_port()
    cfg_path = write_config(
        workdir / "province.yaml",
        devices,
        port=port,
        interval=interval,
        max_concurrency=args.concurrency,
        icmp_max_concurrency=args.concurrency,
    )
    base = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    sites = len(base["sites"])
    cpus = _cpus()
    res: dict[str, Any] = {
        "devices": devices,
        "sites": sites,
        "interval_s": interval,
        "offered_devices_per_s": args.offered,
        "duration_s": args.duration,
        "nats_servers": args.nats_servers,
        "replicas": args.replicas,
        "cpus": cpus,
        "load_at_start": _load(),
        "uptime_at_start": await asyncio.to_thread(_uptime),
    }
    scenarios = [s for s in SCENARIOS if args.scenarios is None or s[0] in args.scenarios]
    with Agents(devices, port, None) as agents:
        with LocalNatsCluster(
            workdir / "nats", size=args.nats_servers, cluster_name="uptimewatch-bench"
        ) as cl:
            args.nats = cl.urls
            nc = await nats.connect(servers=cl.urls, connect_timeout=5)
            try:
                js = nc.jetstream(timeout=10)
                results: list[dict[str, Any]] = []
                for name, count, vantage, paced in scenarios:
                    offered = args.offered
                    if paced:
                        flat_out = [r for r in results if (r["nodes"], r["vantage_points"]) == (1, 1)]
                        if not flat_out:
                            continue  # nothing to pace by
                        offered = PACE * flat_out[0]["devices_polled_per_s"] * count
                    scenario = await run_scenario(
                        name,
                        count,
                        vantage,
                        base=base,
                        sites=sites,
                        devices=devices,
                        nats=cl,
                        agents=agents,
                        js=js,
                        workdir=workdir,
                        args=args,
                        offered=offered,
                    )
                    results.append({**scenario, "paced": paced})
                res["scenarios"] = results
                payloads = await read_payloads(js, args.sample_messages)
            finally:
                await nc.close()
            sample_file = workdir / "payloads.msgpack"
            sample_file.write_bytes(msgspec.msgpack.encode(payloads))
            if args.keep_payloads is not None:  # for profiling the reading side on its own
                args.keep_payloads.mkdir(parents=True, exist_ok=True)
                (args.keep_payloads / "payloads.msgpack").write_bytes(sample_file.read_bytes())
                (args.keep_payloads / "province.yaml").write_bytes(cfg_path.read_bytes())
            carried = sum(codec.decode(p)[1] for p in payloads)
            res["payload_bytes_mean"] = sum(map(len, payloads)) / carried if carried else 0.0
            res["load_before_stream_phase"] = _load()
            res["stream"] = await asyncio.to_thread(run_stream_phase, args, cfg_path, sample_file, cpus)
        res["agents"] = agents.stats
    res["summary"] = summary(res)
    return res


def summary(res: dict[str, Any]) -> dict[str, Any]:
    by = {(s["nodes"], s["vantage_points"]): s for s in res["scenarios"] if not s["paced"]}
    paced = {s["nodes"]: s for s in res["scenarios"] if s["paced"]}
    out: dict[str, Any] = {}
    one, two = by.get((1, 1)), by.get((2, 1))
    if one and two:
        out["ratio_wall"] = two["devices_polled_per_s"] / one["devices_polled_per_s"]
        # each node on a core of its own: 2 cores x the 2-node efficiency against 1 x the 1-node one
        out["ratio_per_node_core"] = 2 * two["devices_per_node_cpu_s"] / one["devices_per_node_cpu_s"]
    if 1 in paced and 2 in paced:
        # the same, with one node and each of two polling on time at the same rate
        one_paced, two_paced = (paced[n]["devices_per_node_cpu_s"] for n in (1, 2))
        out["ratio_per_node_core_paced"] = 2 * two_paced / one_paced
        out["devices_per_node_cpu_s_1n_paced"] = one_paced
        out["devices_per_node_cpu_s_2n_paced"] = two_paced
    alone = by.get((2, 0))
    if one and alone:
        # the same machine, agents and NATS, but no stream between the two: the ratio this machine
        # gives sharding that costs nothing, against which ratio_per_node_core is to be read
        out["ratio_per_node_core_without_cluster"] = (
            2 * alone["devices_per_node_cpu_s"] / one["devices_per_node_cpu_s"]
        )
    for (n, v), s in by.items():
        key = f"{n}n_vp{v}" if v else f"{n}n_alone"
        out[f"devices_per_node_cpu_s_{key}"] = s["devices_per_node_cpu_s"]
    stream = res["stream"]
    out["publish_us_per_observation"] = stream["publisher"]["us_per_observation"]
    out["consume_us_per_observation"] = stream["consumer"]["us_per_observation"]
    out["consume_us_per_observation_without_ingest"] = max(
        0.0, stream["consumer"]["us_per_observation"] - stream["consumer"]["ingest_us_per_observation"]
    )
    out["stream_bytes_per_observation"] = max(
        (s["stream_bytes_per_observation"] for s in res["scenarios"]), default=0.0
    )
    out["payload_bytes_per_observation"] = res["payload_bytes_mean"]
    nats_us = [s["nats_cpu_us_per_observation"] for s in res["scenarios"] if s["stream_messages"]]
    out["nats_cpu_us_per_observation"] = sum(nats_us) / len(nats_us) if nats_us else 0.0
    return out


def table(res: dict[str, Any]) -> str:
    rows = [("measure", "value")]
    for s in res["scenarios"]:
        busy = ", ".join(f"{k} {v['cpu_busy']:.0%}" for k, v in s["per_node"].items())
        rows.append(
            (
                f"{s['name']}: devices polled/s (wall)",
                f"{s['devices_polled_per_s']:,.0f} ("
                + (f"offered {s['offered_devices_per_s']:,.0f}; " if s["paced"] else "")
                + f"node CPU busy: {busy}; load {s['load_before'][0]:.2f})",
            )
        )
        lost = sum(sum(v["lost"].values()) for v in s["per_node"].values())
        failed = sum(v["failed_polls"] for v in s["per_node"].values())
        rows.append(
            (
                f"{s['name']}: devices per node-CPU-second",
                f"{s['devices_per_node_cpu_s']:,.0f} ({s['node_cpu_s']:.1f} node CPU-s "
                f"in {s['wall_s']:.1f} s; "
                f"NATS {s['nats_cpu_s']:.1f} CPU-s, agents {s['agents_cpu_s']:.1f}; "
                f"{failed:.0f} failed polls, {lost:.0f} observations lost)",
            )
        )
    sm = res["summary"]
    if "ratio_wall" in sm:
        rows.append(("2 nodes ÷ 1 node, devices/s (wall, cores shared)", f"{sm['ratio_wall']:.2f}"))
        rows.append(
            (
                "2 nodes ÷ 1 node, a core per node (2 × per-CPU-s ratio)",
                f"{sm['ratio_per_node_core']:.2f} (goal ≥ 1.8)",
            )
        )
    if "ratio_per_node_core_paced" in sm:
        rows.append(
            (
                "2 nodes ÷ 1 node, paced, a core per node",
                f"{sm['ratio_per_node_core_paced']:.2f} (goal ≥ 1.8; every node on time at the same rate)",
            )
        )
    if "ratio_per_node_core_without_cluster" in sm:
        rows.append(
            (
                "2 daemons alone ÷ 1 node, a core per node",
                f"{sm['ratio_per_node_core_without_cluster']:.2f} (no stream: this machine's ceiling)",
            )
        )
    pub, con = res["stream"]["publisher"], res["stream"]["consumer"]
    rows.append(
        (
            "publishing node: CPU µs per observation",
            f"{pub['us_per_observation']:.1f} (merge, encode, acked publish, own echo; "
            f"{pub['publish_rate_per_s']:,.0f} published/s)",
        )
    )
    rows.append(
        (
            "consuming node: CPU µs per observation",
            f"{con['us_per_observation']:.1f} "
            f"(of it health-model ingest {con['ingest_us_per_observation']:.1f})",
        )
    )
    rows.append(
        ("NATS servers: CPU µs per observation (all servers)", f"{sm['nats_cpu_us_per_observation']:.1f}")
    )
    rows.append(
        (
            "bytes per observation: stream (stored) / payload",
            f"{sm['stream_bytes_per_observation']:.0f} / {sm['payload_bytes_per_observation']:.0f}",
        )
    )
    width = max(len(r[0]) for r in rows)
    lines = [f"| {a.ljust(width)} | {b} |" for a, b in rows]
    lines.insert(1, f"|{'-' * (width + 2)}|---|")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="uptimewatch cluster benchmark: 1 node against 2 (issue 11)")
    p.add_argument("--devices", type=int, default=3000, help="devices of the province")
    p.add_argument(
        "--offered", type=float, default=8000.0, help="devices per second offered (above what a core does)"
    )
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds between settling and measuring")
    p.add_argument("--concurrency", type=int, default=256, help="SNMP (and ICMP) polls in flight per node")
    p.add_argument("--nats-servers", type=int, default=3)
    p.add_argument("--replicas", type=int, default=None, help="stream and bucket replicas (default: servers)")
    p.add_argument("--observations", type=int, default=20_000, help="observations of the stream phase")
    p.add_argument("--sample-messages", type=int, default=2000, help="real observations read back")
    p.add_argument("--scenarios", type=lambda s: s.split(";"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "cluster.json")
    p.add_argument(
        "--keep-payloads",
        type=Path,
        default=None,
        help="also write the observations read back and the province to this folder",
    )
    p.add_argument("--child", choices=("publish", "consume"), help=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--payloads", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--nats", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.replicas is None:
        args.replicas = min(3, args.nats_servers)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        fn = child_publish if args.child == "publish" else child_consume
        print(json.dumps(asyncio.run(fn(args))), flush=True)
        return 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="uw-cluster-bench-") as tmp:
        res = asyncio.run(bench(args, Path(tmp)))
    res = {"summary": res.pop("summary"), **res}
    res.update(
        {
            "version": __version__,
            "python": platform.python_version(),
            "kernel": platform.release(),
            "started_at": started,
            "elapsed_s": time.time() - started,
            "load_at_end": _load(),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"uptimewatch {__version__} cluster benchmark: {res['devices']:,} devices, "
        f"{args.nats_servers} NATS servers, {res['duration_s']:g} s per scenario, "
        f"{res['elapsed_s']:.0f} s in all; {res['uptime_at_start']}"
    )
    print(table(res))
    print("\nsummary: " + json.dumps(res["summary"]))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
