"""A node whose uplink is cut: it must call itself isolated, and no site may go down for it.

Real parts: a 3-server NATS cluster and three ``uptimewatch run`` subprocesses. Two nodes run on
this host; the third runs in a network namespace the test creates, and reaches everything (the
NATS servers, the other nodes, the devices it pings) through one veth pair, its uplink. All
addresses are in one private /24 picked at random among the unused ones:

* ``.1`` (host end) and ``.2`` (namespace end) of the veth pair, a /30;
* ``.100`` (NATS servers, the host nodes' HTTP) and ``.101`` ... (the devices, answering ping)
  as /32 addresses of the host's loopback interface, so the host nodes reach them locally and
  the namespace reaches them through the veth (and they stay when the veth goes down);
* the rest of the /24 is ``unreachable`` on the host, from before the link goes down: when the
  host end's own route goes away with it, nothing of the prefix can leave through the default route.

The cut takes the host end down. The cut node's polls all fail, NATS and its peers stop
answering, and the test asserts what the issue asks: no site goes down on any node (API, alerts,
ledger), the cut node reports itself isolated, the others see it dead and take its sites, and
when the link comes back it rejoins and gets its sites back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonProcess, free_tcp_port, province_config, write_yaml
from tests.test_cluster import Nodes, _agreed, _pollers, pytestmark, wait_for
from uptimewatch.cluster.local_nats import LocalNatsCluster, NatsServerError

__all__ = ["pytestmark"]

SITES = 8
INTERVAL = 1.0
NODE_TIMEOUT = 3.0
CUT_NODE = "n3"
BAD_STATES = {"down", "unreachable"}
SITE_ALERTS = {"SiteDown", "DeviceDown", "UpstreamDown"}


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _free_prefix() -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that no address or route of this host touches."""
    taken = (
        _run(["ip", "-4", "-o", "addr", "show"]).stdout
        + _run(["ip", "-4", "route", "show", "table", "all"]).stdout
    )
    for _ in range(200):
        prefix = ipaddress.IPv4Network(f"10.213.{secrets.randbelow(256)}.0/24")
        if f"10.213.{prefix.network_address.packed[2]}." not in taken:
            return prefix
    raise RuntimeError("no free /24 left in 10.213.0.0/16")


@dataclass
class Uplink:
    """The namespace of the cut node and its one link to the host."""

    prefix: ipaddress.IPv4Network
    token: str = field(default_factory=lambda: secrets.token_hex(3))

    def __post_init__(self) -> None:
        hosts = list(self.prefix.hosts())
        self.netns = f"uwiso-{self.token}"
        self.host_if = f"uwi{self.token}"
        self.ns_if = f"uwj{self.token}"
        self.host_end = str(hosts[0])  # .1
        self.ns_end = str(hosts[1])  # .2
        self.service = str(hosts[99])  # .100: NATS and the host nodes
        self.devices = [str(hosts[100 + i]) for i in range(SITES)]  # .101 ...
        self.unreachable = str(self.prefix)

    @property
    def local(self) -> list[str]:
        return [self.service, *self.devices]

    def ns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def create(self) -> None:
        # first of all: nothing of the prefix may ever take the default route
        _run(["ip", "route", "add", "unreachable", self.unreachable])
        for address in self.local:
            _run(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
        _run(["ip", "netns", "add", self.netns])
        _run(
            [
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                self.ns_if,
                "netns",
                self.netns,
            ]
        )
        _run(["ip", "addr", "add", f"{self.host_end}/30", "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        _run(self.ns("ip", "addr", "add", f"{self.ns_end}/30", "dev", self.ns_if))
        _run(self.ns("ip", "link", "set", "lo", "up"))
        _run(self.ns("ip", "link", "set", self.ns_if, "up"))
        self.route()

    def route(self) -> None:
        """The namespace reaches the prefix, and only the prefix, through the host end."""
        _run(self.ns("ip", "route", "replace", self.unreachable, "via", self.host_end, "dev", self.ns_if))

    def cut(self) -> None:
        routes = _run(["ip", "route", "show", "type", "unreachable"]).stdout
        assert self.unreachable in routes, (
            f"no 'unreachable {self.unreachable}' route before the cut: {routes}"
        )
        _run(["ip", "link", "set", self.host_if, "down"])

    def mend(self) -> None:
        _run(["ip", "link", "set", self.host_if, "up"])
        self.route()

    def remove(self) -> None:
        # the namespace takes its veth end (and so the pair) with it; the rest goes one by one
        _run(["ip", "netns", "delete", self.netns], check=False)
        if _run(["ip", "link", "show", self.host_if], check=False).returncode == 0:
            _run(["ip", "link", "delete", self.host_if], check=False)
        for address in self.local:
            _run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)
        _run(["ip", "route", "del", "unreachable", self.unreachable], check=False)


@pytest.fixture
def uplink() -> Iterator[Uplink]:
    missing = [tool for tool in ("ip",) if shutil.which(tool) is None]
    if missing:
        pytest.skip("needs ip (iproute2) for network namespaces")
    link = Uplink(_free_prefix())
    try:
        link.create()
        yield link
    finally:
        link.remove()


# The cut node's own API, read from inside its namespace (the host cannot reach it during the cut):
# one sample per line, {"at", "cluster", "sites", "alerts"} or {"at", "error"}.
WATCHER = """
import json, sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(url + path, timeout=3) as resp:
        return json.loads(resp.read())
with open(out, "a", buffering=1) as f:
    while True:
        try:
            row = {"at": time.time(), "cluster": get("/api/v1/cluster"),
                   "sites": {s["id"]: s["state"] for s in get("/api/v1/sites")["sites"]},
                   "alerts": [[a["name"], a["state"]] for a in get("/api/v1/alerts")["alerts"]]}
        except Exception as exc:
            row = {"at": time.time(), "error": repr(exc)}
        f.write(json.dumps(row) + "\\n")
        time.sleep(0.5)
"""


class IsolationNodes(Nodes):
    def __init__(self, workdir: Path, nats: LocalNatsCluster, link: Uplink) -> None:
        super().__init__(workdir, nats)
        self.link = link
        self.bad: list[str] = []  # every bad state or site alert seen anywhere, with when and where
        self._watch_stop = threading.Event()
        self._watcher: subprocess.Popen[bytes] | None = None
        self._sampler: threading.Thread | None = None

    def config(self, node_id: str, listen: str) -> Path:
        directory = self.workdir / node_id
        directory.mkdir(exist_ok=True)
        sites = [
            {
                "id": f"bts-{i:02d}",
                "name": f"BTS {i:02d}",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [{"id": "bts", "role": "bts", "address": address, "snmp_enabled": False}],
            }
            for i, address in enumerate(self.link.devices)
        ]
        data = province_config(
            sites,
            listen=listen,
            defaults={"interval": INTERVAL, "timeout": 0.5, "hard_after": 1, "icmp": {"count": 1}},
        )
        data["storage"] = {"path": str(directory / "state.sqlite")}
        data["alerting"] = {"evaluation_interval": "1s", "group_wait": 0, "group_interval": "1s"}
        data["cluster"] = {
            "node_id": node_id,
            "nats": {"servers": self.nats.urls},
            "heartbeat_interval": 0.5,
            "node_timeout": NODE_TIMEOUT,
            "leader_timeout": 3,
            "join_grace": 0,
            "canaries": [self.link.service],  # the NOC's router, as it were: behind the uplink
        }
        return write_yaml(directory / "config.yaml", data)

    def start_at(self, node_id: str, address: str, wrap: Sequence[str] = ()) -> DaemonProcess:
        listen = f"{address}:{free_tcp_port()}"
        proc = DaemonProcess(self.config(node_id, listen), listen, wrap=wrap)
        self.procs[node_id] = proc
        self.urls[node_id] = proc.url
        return proc

    # -- watching every node all along ----------------------------------------------------------

    def watch(self) -> None:
        self._watcher = subprocess.Popen(
            self.link.ns(sys.executable, "-c", WATCHER, self.urls[CUT_NODE], str(self.watch_file)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._sampler = threading.Thread(target=self._sample_host_nodes, daemon=True)
        self._sampler.start()

    @property
    def watch_file(self) -> Path:
        return self.workdir / "cut-node-samples.jsonl"

    def _note(self, node_id: str, at: float, sites: dict[str, str], alerts: list[list[str]]) -> None:
        when = time.strftime("%H:%M:%S", time.gmtime(at))
        self.bad += [f"{when} {node_id}: {s} {state}" for s, state in sites.items() if state in BAD_STATES]
        self.bad += [f"{when} {node_id}: alert {n} {st}" for n, st in alerts if n in SITE_ALERTS]

    def _sample_host_nodes(self) -> None:
        while not self._watch_stop.wait(0.5):
            for node_id in (n for n in list(self.urls) if n != CUT_NODE):
                with contextlib.suppress(OSError, ValueError, AssertionError):
                    sites = {s["id"]: s["state"] for s in self.get(node_id, "/api/v1/sites")["sites"]}
                    alerts = [[a["name"], a["state"]] for a in self.get(node_id, "/api/v1/alerts")["alerts"]]
                    self._note(node_id, time.time(), sites, alerts)

    def cut_node_samples(self) -> list[dict[str, Any]]:
        try:
            lines = self.watch_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.endswith("}")]

    def cut_node_self(self, since: float) -> list[dict[str, Any]]:
        """The cut node's own entry in its /api/v1/cluster, in each sample taken after ``since``."""
        return [
            n
            for row in self.cut_node_samples()
            if row["at"] > since and "cluster" in row
            for n in row["cluster"]["nodes"]
            if n["id"] == CUT_NODE
        ]

    def stop_watching(self) -> None:
        self._watch_stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=10)
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher.wait()
        for row in self.cut_node_samples():
            if "sites" in row:
                self._note(CUT_NODE, row["at"], row["sites"], row["alerts"])

    def stop(self) -> None:
        self.stop_watching()
        super().stop()


@pytest.fixture
def isolation_nodes(uplink: Uplink, tmp_path: Path) -> Iterator[IsolationNodes]:
    with contextlib.ExitStack() as stack:
        try:
            nats = LocalNatsCluster(tmp_path / "nats", size=3, client_host=uplink.service)
        except NatsServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        stack.enter_context(nats)
        group = IsolationNodes(tmp_path, nats, uplink)
        stack.callback(group.stop)
        yield group


def _alive_seen_by(nodes: IsolationNodes, node_id: str) -> set[str]:
    return {n["id"] for n in nodes.cluster(node_id)["nodes"] if n["alive"]}


def _ledger_down(path: Path) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute(
            "SELECT site_id, state, reason FROM ledger_site_interval WHERE state IN ('down', 'unreachable')"
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_a_node_cut_off_calls_itself_isolated_and_no_site_goes_down(isolation_nodes: IsolationNodes) -> None:
    nodes, link = isolation_nodes, isolation_nodes.link
    hosts = {"n1", "n2"}
    everyone = hosts | {CUT_NODE}
    for node_id in sorted(hosts):
        nodes.start_at(node_id, link.service)
    for node_id in sorted(hosts):
        nodes.procs[node_id].wait_ready()
    # the host nodes lead: the cut is of a follower's uplink
    leader = wait_for(lambda: _agreed(nodes, hosts), 30, "two host nodes and a leader", nodes.logs)
    nodes.start_at(CUT_NODE, link.ns_end, wrap=link.ns()).wait_ready()
    assert wait_for(lambda: _agreed(nodes, everyone), 30, "3 live nodes", nodes.logs) == leader

    # every site has 2 vantage points, the namespace node among them for some, and all are up
    def assigned() -> dict[str, list[str]] | None:
        pollers = _pollers(nodes, "n1")
        return pollers if len(pollers) == SITES and all(len(v) == 2 for v in pollers.values()) else None

    before = wait_for(assigned, 15, "2 vantage points per site", nodes.logs)
    cut_sites = {s for s, v in before.items() if CUT_NODE in v}
    assert cut_sites, before
    since = time.time()
    for node_id in everyone:
        wait_for(
            lambda n=node_id: (
                {s["state"] for s in nodes.get(n, "/api/v1/sites")["sites"]} == {"up"}
                and all(s["last_observed_at"] > since for s in nodes.get(n, "/api/v1/sites")["sites"])
            ),
            20,
            f"every site up on {node_id}",
            nodes.logs,
        )
    nodes.watch()
    wait_for(lambda: nodes.cut_node_self(since), 20, "the cut node's own API from its namespace")
    assert not nodes.cut_node_self(since)[-1]["isolated"]

    # the cut
    cut_at = time.time()
    link.cut()
    wait_for(lambda: all(_alive_seen_by(nodes, n) == hosts for n in hosts), 20, f"{CUT_NODE} seen dead")
    seen_dead = time.time() - cut_at
    wait_for(
        lambda: all(set(v) <= hosts and len(v) == 2 for v in _pollers(nodes, "n1").values()),
        10,
        "its sites taken over by the host nodes",
    )
    taken_over = time.time() - cut_at
    wait_for(
        lambda: any(n["isolated"] for n in nodes.cut_node_self(cut_at)),
        30,
        f"{CUT_NODE} reporting itself isolated",
        nodes.logs,
    )
    isolated = time.time() - cut_at
    assert "is ISOLATED" in nodes.procs[CUT_NODE].log()
    # the cut node's polls keep failing for a while: none of it may turn into a site down
    wait_for(lambda: time.time() > cut_at + isolated + 10, 30, "ten seconds isolated")
    held = time.time() - cut_at
    assert any(n["isolated"] for n in nodes.cut_node_self(cut_at + isolated + 5)), (
        "isolation did not last while the link was down"
    )

    # the link comes back: the node rejoins, is not isolated, and gets its sites back
    mended_at = time.time()
    link.mend()
    wait_for(
        lambda: all(_alive_seen_by(nodes, n) == everyone for n in everyone),
        90,
        f"{CUT_NODE} alive again on every node",
        nodes.logs,
    )
    rejoined = time.time() - mended_at
    wait_for(
        lambda: not any(n["isolated"] for n in nodes.cluster(CUT_NODE)["nodes"]),
        30,
        f"{CUT_NODE} not isolated any more",
    )
    wait_for(lambda: _pollers(nodes, "n1") == before, 20, "the sites as before the cut", nodes.logs)
    rebalanced = time.time() - mended_at
    back = time.time()
    for node_id in everyone:
        wait_for(
            lambda n=node_id: all(
                s["last_observed_at"] > back for s in nodes.get(n, "/api/v1/sites")["sites"]
            ),
            20,
            f"fresh observations on {node_id}",
        )
    assert _agreed(nodes, everyone) == leader

    # nothing went down anywhere: not in any sample of any node's API, its alerts or its ledger
    nodes.stop_watching()
    assert nodes.bad == [], "\n".join(nodes.bad[:40])
    samples = [row for row in nodes.cut_node_samples() if cut_at < row["at"] < mended_at]
    assert sum("sites" in row for row in samples) >= 5, samples[:5]  # its API answered through the cut
    for node_id in everyone:
        alerts = [a for a in nodes.get(node_id, "/api/v1/alerts")["alerts"] if a["name"] in SITE_ALERTS]
        assert alerts == [], (node_id, alerts)
        assert _ledger_down(nodes.workdir / node_id / "state.sqlite") == [], node_id
    print(
        f"\nISOLATION {CUT_NODE} (polling {len(cut_sites)} of {SITES} sites) cut off for {held:.1f} s:"
        f" seen dead after {seen_dead:.1f} s, its sites taken over after {taken_over:.1f} s,"
        f" isolated by its own account after {isolated:.1f} s; link back: alive again after"
        f" {rejoined:.1f} s, sites as before after {rebalanced:.1f} s"
    )
