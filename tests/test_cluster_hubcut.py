"""A real outage seen from every vantage point: one hub and the sites behind it go dark.

Real parts: a 3-server NATS cluster, three ``uptimewatch run`` subprocesses on this host and a
webhook receiver. The hub and the sites behind it (``upstream: hub``) answer ping from addresses
of one network namespace the test creates; the cut is an nftables rule inside that namespace
that drops every ICMP packet coming in, so every node, whichever polls what, sees the same.

Asserted on every node: exactly one root-cause alert (``UpstreamDown`` for the hub) fires and no
``SiteDown`` at all, the sites behind are ``unreachable`` (cut off behind the hub), never
``down``, the hub's reason says how many probe nodes saw it ("2 of 2 probe nodes"), and the
webhook hears of the hub alone. Then the rule goes, and everything comes back up.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import province_config, write_yaml
from tests.fixtures.netns import NetnsHost
from tests.test_cluster import Nodes, _agreed, _pollers, pytestmark, wait_for
from tests.test_cluster_alerts import Webhook, webhook
from uptimewatch.cluster.local_nats import LocalNatsCluster

__all__ = ["pytestmark", "webhook"]

BEHIND = ("b1", "b2", "b3")
CONTROL = "local"  # on loopback, not behind the hub: it stays up


def _more_addresses(host: NetnsHost, count: int) -> list[str]:
    """Further addresses of the namespace's side of the link, set up as its first two are."""
    network = ipaddress.ip_interface(f"{host.host_address}/29").network
    used = {host.host_address, host.address, host.alt_address}
    free = [str(a) for a in network.hosts() if str(a) not in used][:count]
    mac = host.run("cat", f"/sys/class/net/{host.ns_if}/address").strip()
    for address in free:
        host.run("ip", "addr", "add", f"{address}/{network.prefixlen}", "dev", host.ns_if)
        subprocess.run(
            ["ip", "neigh", "replace", address, "lladdr", mac, "nud", "permanent", "dev", host.host_if],
            check=True,
            capture_output=True,
            timeout=30,
        )
    assert len(free) == count
    return free


class HubNodes(Nodes):
    def __init__(
        self, workdir: Path, nats: LocalNatsCluster, addresses: dict[str, str], hook: Webhook
    ) -> None:
        super().__init__(workdir, nats)
        self.addresses = addresses
        self.hook = hook
        self.seen: set[tuple[str, str, str]] = set()  # (node, site, state) ever seen
        self.alert_names: set[tuple[str, str, str]] = set()  # (node, alert, site) ever seen
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def config(self, node_id: str, listen: str) -> Path:
        directory = self.workdir / node_id
        directory.mkdir(exist_ok=True)

        def site(sid: str, role: str, **extra: Any) -> dict[str, Any]:
            return {
                "id": sid,
                "name": f"Trạm {sid.upper()}",
                "district": "d1",
                "commune": "c1",
                "carrier": "vnpt",
                "devices": [
                    {"id": role, "role": role, "address": self.addresses[sid], "snmp_enabled": False}
                ],
                **extra,
            }

        sites = [site("hub", "router")]
        sites += [site(sid, "bts", upstream="hub") for sid in BEHIND]
        sites += [site(CONTROL, "bts", upstream="hub")]  # configured behind, but it answers
        data = province_config(
            sites,
            listen=listen,
            defaults={"interval": 1.0, "timeout": 0.5, "hard_after": 1, "icmp": {"count": 1}},
        )
        data["storage"] = {"path": str(directory / "state.sqlite")}
        data["alerting"] = {
            "evaluation_interval": "1s",
            "group_wait": 0,
            "group_interval": "1s",
            "default_receiver": "noc",
        }
        data["notify"] = {
            "outbox": {"retry_initial": "1s", "retry_max": "2s", "expire_after": "1h"},
            "receivers": [{"name": "noc", "webhook": {"url": self.hook.url}}],
        }
        data["cluster"] = {
            "node_id": node_id,
            "nats": {"servers": self.nats.urls},
            "heartbeat_interval": 0.5,
            "node_timeout": 3,
            "leader_timeout": 3,
            "join_grace": 0,
        }
        return write_yaml(directory / "config.yaml", data)

    def sites(self, node_id: str) -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in self.get(node_id, "/api/v1/sites")["sites"]}

    def alerts(self, node_id: str) -> list[dict[str, Any]]:
        return list(self.get(node_id, "/api/v1/alerts")["alerts"])

    def sample(self) -> None:
        self._sampler = threading.Thread(target=self._run, daemon=True)
        self._sampler.start()

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for node_id in list(self.urls):
                try:
                    sites = self.sites(node_id)
                    alerts = self.alerts(node_id)
                except (OSError, ValueError, AssertionError):
                    continue
                self.seen |= {(node_id, sid, s["state"]) for sid, s in sites.items()}
                self.alert_names |= {(node_id, a["name"], a["labels"].get("site", "")) for a in alerts}

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=10)
        super().stop()


@pytest.fixture
def hub_nodes(
    nats_cluster: LocalNatsCluster,
    tmp_path: Path,
    netns_host: Callable[[], NetnsHost],
    webhook: Webhook,
) -> Iterator[tuple[HubNodes, NetnsHost]]:
    region = netns_host()  # the hub and everything behind it, in one namespace
    behind = [region.alt_address, *_more_addresses(region, len(BEHIND) - 1)]
    addresses = {"hub": region.address, **dict(zip(BEHIND, behind, strict=True)), CONTROL: "127.0.4.1"}
    webhook.refusing = False
    group = HubNodes(tmp_path, nats_cluster, addresses, webhook)
    try:
        yield group, region
    finally:
        group.stop()


def _firing(nodes: HubNodes, node_id: str) -> list[tuple[str, str]]:
    return sorted(
        (a["name"], a["labels"].get("site", "")) for a in nodes.alerts(node_id) if a["state"] == "firing"
    )


def _webhook_alerts(hook: Webhook, kind: str) -> list[tuple[str, str]]:
    with hook.lock:
        bodies = list(hook.bodies)
    return sorted(
        (a["name"], a["labels"].get("site", "")) for b in bodies if b["kind"] == kind for a in b["alerts"]
    )


def test_a_hub_cut_seen_by_every_vantage_point_gives_one_root_cause_alert(
    hub_nodes: tuple[HubNodes, NetnsHost],
) -> None:
    nodes, region = hub_nodes
    everyone = {"n1", "n2", "n3"}
    for node_id in sorted(everyone):
        nodes.start(node_id)
    for proc in nodes.procs.values():
        proc.wait_ready()
    wait_for(lambda: _agreed(nodes, everyone), 30, "3 live nodes and one leader", nodes.logs)
    pollers = wait_for(
        lambda: (p := _pollers(nodes, "n1")) and len(p) == 5 and all(len(v) == 2 for v in p.values()) and p,
        15,
        "2 vantage points per site",
    )
    for node_id in everyone:
        wait_for(
            lambda n=node_id: {s["state"] for s in nodes.sites(n).values()} == {"up"},
            30,
            f"every site up on {node_id}",
            nodes.logs,
        )
    nodes.sample()

    # the cut: every ICMP packet into the region is dropped, whoever sends it
    cut_at = time.time()
    region.set_loss(100)
    expected = {"hub": "down", **dict.fromkeys(BEHIND, "unreachable"), CONTROL: "up"}
    for node_id in everyone:
        wait_for(
            lambda n=node_id: {sid: s["state"] for sid, s in nodes.sites(n).items()} == expected,
            30,
            f"the hub down and the sites behind it cut off, on {node_id}",
            nodes.logs,
        )
    for node_id in everyone:
        wait_for(
            lambda n=node_id: _firing(nodes, n) == [("UpstreamDown", "hub")],
            30,
            f"one UpstreamDown firing on {node_id}",
            nodes.logs,
        )
    detected = time.time() - cut_at
    wait_for(lambda: _webhook_alerts(nodes.hook, "firing"), 30, "the notice on the webhook", nodes.logs)
    time.sleep(3)  # a second alert, were there one, would be decided by now

    for node_id in everyone:
        sites = nodes.sites(node_id)
        hub_reason = sites["hub"]["reason"]
        assert "2 of 2 probe nodes" in hub_reason, (node_id, hub_reason, pollers["hub"])
        for sid in BEHIND:
            assert sites[sid]["reason"].startswith("cut off behind"), (node_id, sid, sites[sid]["reason"])
        assert _firing(nodes, node_id) == [("UpstreamDown", "hub")], node_id
        [upstream] = [a for a in nodes.alerts(node_id) if a["name"] == "UpstreamDown"]
        assert all(
            sid in upstream["description"] or sid.upper() in upstream["description"] for sid in BEHIND
        ), upstream["description"]
    # exactly one notice's worth: the hub's root cause, nothing for the sites behind it
    assert _webhook_alerts(nodes.hook, "firing") == [("UpstreamDown", "hub")], nodes.hook.bodies

    # the rule goes: everything is up again and the one alert resolves
    region.set_loss(0)
    for node_id in everyone:
        wait_for(
            lambda n=node_id: {s["state"] for s in nodes.sites(n).values()} == {"up"},
            30,
            f"every site up again on {node_id}",
            nodes.logs,
        )
        wait_for(lambda n=node_id: _firing(nodes, n) == [], 30, f"the alert resolved on {node_id}")
    wait_for(
        lambda: _webhook_alerts(nodes.hook, "resolved") == [("UpstreamDown", "hub")],
        30,
        "the resolution on the webhook",
        nodes.logs,
    )
    nodes.stop()
    never = {(n, sid, st) for n, sid, st in nodes.seen if st == "down" and sid != "hub"}
    assert never == set(), sorted(never)
    alerts = {(name, site) for _, name, site in nodes.alert_names}
    assert alerts == {("UpstreamDown", "hub")}, sorted(nodes.alert_names)
    print(
        f"\nHUB CUT seen by every vantage point: one UpstreamDown on all 3 nodes {detected:.1f} s"
        f" after the cut; hub reason: {hub_reason!r}"
    )
