"""One alert engine for three nodes: the leader alone sends, and on ``kill -9`` of the leader another
node takes its replicated state and pending notices over. Real parts: a 3-server NATS cluster,
three ``uptimewatch run`` subprocesses, aiosmtpd (STARTTLS, AUTH) and an HTTP webhook receiver.

Sites whose only device answers SNMP on a closed loopback port are down from the start; the relay
and the webhook refuse until the leader is dead, so every notice is still pending when it dies.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml
from tests.fixtures.smtp import PASSWORD, USERNAME, SmtpServer
from tests.fixtures.snmpsim import free_udp_port
from tests.test_cluster import Nodes, _agreed, pytestmark, wait_for
from uptimewatch.cluster.local_nats import LocalNatsCluster

__all__ = ["pytestmark"]

TOKEN = "cluster-test-token-4f1c"
DOWN_SITES = 4
UP_SITES = 4
LEADER_TIMEOUT = 3.0


class Webhook:
    """A webhook receiver that answers 503 while ``refusing``, and keeps every accepted body."""

    def __init__(self) -> None:
        self.refusing = True
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.refusing:
                    self.send_response(503)
                else:
                    with outer.lock:
                        outer.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_tcp_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        with self.lock:
            return [str(b["id"]) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


class AlertingNodes(Nodes):
    def __init__(self, workdir: Path, nats: LocalNatsCluster, smtp: SmtpServer, hook: Webhook) -> None:
        super().__init__(workdir, nats)
        self.smtp = smtp
        self.hook = hook
        self.closed_port = free_udp_port()

    def config(self, node_id: str, listen: str) -> Path:
        directory = self.workdir / node_id
        directory.mkdir(exist_ok=True)
        sites = [
            {
                "id": f"dead-{i}",
                "name": f"Trạm mất {i}",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [
                    {
                        "id": "bts",
                        "role": "bts",
                        "address": "127.0.0.1",
                        "icmp": {"enabled": False},
                        "snmp": {"port": self.closed_port, "community": "public", "retries": 0},
                    }
                ],
            }
            for i in range(DOWN_SITES)
        ] + [
            {
                "id": f"live-{i}",
                "name": f"Trạm sống {i}",
                "district": "d1",
                "carrier": "viettel",
                "devices": [
                    {"id": "bts", "role": "bts", "address": f"127.0.3.{i + 1}", "snmp_enabled": False}
                ],
            }
            for i in range(UP_SITES)
        ]
        data = province_config(
            sites,
            listen=listen,
            defaults={
                "interval": 1.0,
                "timeout": 0.3,
                "hard_after": 1,
                "icmp": {"count": 1},
                "snmp": {"timeout": 0.3, "retries": 0},
            },
        )
        data["storage"] = {"path": str(directory / "state.sqlite")}
        data["alerting"] = {
            "evaluation_interval": "1s",
            "group_wait": 0,
            "group_interval": "1s",
            "default_receiver": "noc",
            "auth": {"bearer_tokens": [TOKEN]},
        }
        data["notify"] = {
            "outbox": {"retry_initial": "1s", "retry_max": "2s", "expire_after": "1h"},
            "receivers": [
                {
                    "name": "noc",
                    "email": {
                        "host": self.smtp.host,
                        "port": self.smtp.port,
                        "sender": "uptimewatch <noc@hoabinh.example.vn>",
                        "to": ["Trực ca <truc-ca@hoabinh.example.vn>"],
                        "username": USERNAME,
                        "password": PASSWORD,
                        "ca_file": self.smtp.ca_file,
                    },
                    "webhook": {"url": self.hook.url},
                }
            ],
        }
        data["cluster"] = {
            "node_id": node_id,
            "nats": {"servers": self.nats.urls},
            "heartbeat_interval": 0.5,
            "node_timeout": 3,
            "leader_timeout": LEADER_TIMEOUT,
            "join_grace": 0,
        }
        return write_yaml(directory / "config.yaml", data)

    def post(self, node_id: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.urls[node_id] + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def alerts(self, node_id: str) -> list[dict[str, Any]]:
        return list(self.get(node_id, "/api/v1/alerts")["alerts"])


@pytest.fixture
def alerting_nodes(
    nats_cluster: LocalNatsCluster, tmp_path: Path, smtp_server: SmtpServer, webhook: Webhook
) -> Iterator[AlertingNodes]:
    group = AlertingNodes(tmp_path, nats_cluster, smtp_server, webhook)
    try:
        yield group
    finally:
        group.stop()


def _firing(nodes: AlertingNodes, node_id: str) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in nodes.alerts(node_id) if a["state"] == "firing" and a["name"] == "SiteDown"}


def test_kill_9_of_the_leader_with_notices_pending_loses_none(alerting_nodes: AlertingNodes) -> None:
    nodes = alerting_nodes
    nodes.smtp.stop()  # the relay is away: every notice stays pending
    for node_id in ("n1", "n2", "n3"):
        nodes.start(node_id)
    for proc in nodes.procs.values():
        proc.wait_ready()
    everyone = {"n1", "n2", "n3"}
    leader = wait_for(lambda: _agreed(nodes, everyone), 30, "3 live nodes and one leader", nodes.logs)
    followers = sorted(everyone - {leader})

    # one SiteDown per dead site, decided by the leader and shown alike by every node
    wait_for(lambda: len(_firing(nodes, leader)) == DOWN_SITES, 40, "every dead site firing", nodes.logs)
    firing = _firing(nodes, leader)
    for node_id in followers:
        wait_for(lambda n=node_id: _firing(nodes, n).keys() == firing.keys(), 10, f"alerts on {node_id}")

    # an ack made on a follower reaches the leader and every other node
    acked = sorted(firing)[0]
    status, body = nodes.post(
        followers[0], f"/api/v1/alerts/{acked}/ack", {"by": "Lò Văn Bình", "comment": "xe đi"}
    )
    assert status == 200, body
    assert body["ack"]["by"] == "Lò Văn Bình"
    for node_id in everyone:
        wait_for(
            lambda n=node_id: (_firing(nodes, n)[acked]["ack"] or {}).get("by") == "Lò Văn Bình",
            10,
            f"the ack on {node_id}",
        )
    # a silence made on the other follower is everywhere too
    status, body = nodes.post(
        followers[1],
        "/api/v1/silences",
        {"matchers": {"site": "live-0"}, "duration": "1h", "created_by": "noc", "comment": "bảo trì"},
    )
    assert status == 201, body
    silence_id = body["id"]
    for node_id in everyone:
        wait_for(
            lambda n=node_id: silence_id in {s["id"] for s in nodes.get(n, "/api/v1/silences")["silences"]},
            10,
            f"the silence on {node_id}",
        )

    assert nodes.hook.ids() == []  # still pending, nothing delivered
    assert nodes.smtp.messages == []
    time.sleep(1.5)  # the webhook refused at least once: the leader holds them in its outbox
    killed_at = time.time()
    nodes.kill(leader)
    new_leader = wait_for(
        lambda: _agreed(nodes, set(followers)), 3 * LEADER_TIMEOUT + 10, "a new leader", nodes.logs
    )
    took_over = time.time() - killed_at

    # the receivers come back: every pending notice arrives, at most twice, always with its id
    nodes.smtp.start()
    nodes.hook.refusing = False

    def firing_ids_delivered() -> set[str]:
        with nodes.hook.lock:
            bodies = list(nodes.hook.bodies)
        return {a["fingerprint"] for b in bodies if b["kind"] == "firing" for a in b["alerts"]}

    wait_for(lambda: firing.keys() <= firing_ids_delivered(), 30, "every SiteDown on the webhook", nodes.logs)
    hook_ids = Counter(nodes.hook.ids())
    wait_for(
        lambda: hook_ids.keys() <= {m.message["X-Uptimewatch-Notification-Id"] for m in nodes.smtp.messages},
        30,
        "the same notices by email",
        nodes.logs,
    )
    time.sleep(2)  # anything sent twice would show now
    hook_ids = Counter(nodes.hook.ids())
    mail_ids = Counter(m.message["X-Uptimewatch-Notification-Id"] for m in nodes.smtp.messages)
    assert hook_ids.keys() == mail_ids.keys(), (hook_ids, mail_ids)
    assert max(hook_ids.values()) <= 2, hook_ids
    assert max(mail_ids.values()) <= 2, mail_ids
    duplicated = sum(c - 1 for c in hook_ids.values()) + sum(c - 1 for c in mail_ids.values())

    # they came from the replicated outbox: the new leader decided none of them again
    (line,) = [ln for ln in nodes.procs[new_leader].log().splitlines() if "runs the alert engine" in ln]
    taken = int(line.split(" pending notices")[0].rsplit(" ", 1)[1])
    assert taken == 2 * len(hook_ids), line  # one delivery per channel: email and webhook
    # the new leader kept the ack and the silence
    assert (_firing(nodes, new_leader)[acked]["ack"] or {}).get("by") == "Lò Văn Bình"
    assert silence_id in {s["id"] for s in nodes.get(new_leader, "/api/v1/silences")["silences"]}
    print(
        f"\nFAILOVER kill -9 leader {leader} with notices pending: {new_leader} leads after {took_over:.1f} s"
        f" (leader_timeout {LEADER_TIMEOUT:g} s) and took {taken} pending deliveries over"
        f" ({len(hook_ids)} notices x email and webhook); delivered: webhook {len(hook_ids)} notices"
        f" in {hook_ids.total()} requests, email {len(mail_ids)} notices in {mail_ids.total()} messages;"
        f" duplicated (same id): webhook {hook_ids.total() - len(hook_ids)},"
        f" email {mail_ids.total() - len(mail_ids)}; total {duplicated}"
    )


def _delivered(nodes: AlertingNodes) -> tuple[Counter[str], Counter[str], set[str]]:
    """Notice ids by webhook and by email, and the alerts the webhook heard firing."""
    with nodes.hook.lock:
        bodies = list(nodes.hook.bodies)
    firing = {a["fingerprint"] for b in bodies if b["kind"] == "firing" for a in b["alerts"]}
    mail = Counter(str(m.message["X-Uptimewatch-Notification-Id"]) for m in nodes.smtp.messages)
    return Counter(str(b["id"]) for b in bodies), mail, firing


def _fresh(nodes: AlertingNodes, node_id: str, since: float) -> bool:
    sites = nodes.get(node_id, "/api/v1/sites")["sites"]
    return len(sites) == DOWN_SITES + UP_SITES and all((s["last_observed_at"] or 0) > since for s in sites)


def test_nats_restarts_one_then_all_lose_no_notice_and_restore_state(alerting_nodes: AlertingNodes) -> None:
    nodes = alerting_nodes
    nodes.smtp.stop()  # notices stay pending through both restarts
    for node_id in ("n1", "n2", "n3"):
        nodes.start(node_id)
    for proc in nodes.procs.values():
        proc.wait_ready()
    everyone = {"n1", "n2", "n3"}
    leader = wait_for(lambda: _agreed(nodes, everyone), 30, "3 live nodes and one leader", nodes.logs)
    wait_for(lambda: len(_firing(nodes, leader)) == DOWN_SITES, 40, "every dead site firing", nodes.logs)
    firing = set(_firing(nodes, leader))
    acked = sorted(firing)[0]
    status, body = nodes.post(leader, f"/api/v1/alerts/{acked}/ack", {"by": "noc", "comment": "đã biết"})
    assert status == 200, body

    # one server restarts: the other two keep the quorum, nobody notices
    restarted_at = time.time()
    nodes.nats.restart_server(nodes.nats.servers[0])
    for node_id in everyone:
        wait_for(lambda n=node_id: _fresh(nodes, n, restarted_at + 1), 20, f"observations on {node_id}")
    assert _agreed(nodes, everyone), nodes.logs()

    # all of them: the nodes go on alone (degraded), then find their state again
    down_at = time.time()
    nodes.nats.restart()
    healthy_at = time.time()
    back = wait_for(lambda: _agreed(nodes, everyone), 60, "one leader again after the outage", nodes.logs)
    recovered = time.time() - down_at
    rejoined = time.time() - healthy_at
    for node_id in everyone:
        wait_for(lambda n=node_id: _fresh(nodes, n, down_at + recovered), 20, f"observations on {node_id}")
        wait_for(lambda n=node_id: set(_firing(nodes, n)) == firing, 10, f"alerts restored on {node_id}")
        assert (_firing(nodes, node_id)[acked]["ack"] or {}).get("by") == "noc"

    # the receivers come back: every notice decided before the outages arrives, at most twice
    nodes.smtp.start()
    nodes.hook.refusing = False
    wait_for(lambda: firing <= _delivered(nodes)[2], 30, "every SiteDown on the webhook", nodes.logs)
    wait_for(
        lambda: _delivered(nodes)[0].keys() <= _delivered(nodes)[1].keys(),
        30,
        "the same by email",
        nodes.logs,
    )
    time.sleep(2)
    hook_ids, mail_ids, _ = _delivered(nodes)
    assert hook_ids.keys() == mail_ids.keys(), (hook_ids, mail_ids)
    assert max(hook_ids.values()) <= 2, hook_ids
    assert max(mail_ids.values()) <= 2, mail_ids
    duplicated = sum(c - 1 for c in hook_ids.values()) + sum(c - 1 for c in mail_ids.values())
    print(
        f"whole NATS cluster restart: servers healthy after {healthy_at - down_at:.1f} s, one leader"
        f" again {rejoined:.1f} s later (leader {leader} -> {back});"
        f" notices delivered: {len(hook_ids)} by webhook, {len(mail_ids)} by email; duplicated: {duplicated}"
    )


def test_notice_keys_come_from_the_stream_deleted_ones_included(nats_cluster: LocalNatsCluster) -> None:
    """A new leader lists the old one's pending notices from the bucket's stream, not through
    ``KeyValue.keys()``, whose watcher can end its replay early and list none."""
    import asyncio

    import nats
    import nats.js.errors
    from nats.js import api

    from uptimewatch.cluster.alerts import NOTICES_BUCKET, notice_key, notice_keys

    async def scenario() -> tuple[list[str], list[str], set[str]]:
        nc = await nats.connect(servers=nats_cluster.urls)
        try:
            js = nc.jetstream()
            kv = await js.create_key_value(api.KeyValueConfig(bucket=NOTICES_BUCKET, history=1, replicas=3))
            empty = await notice_keys(js)
            keys = [notice_key(f"notice-{i}", "webhook") for i in range(50)]
            for key in keys:
                await kv.put(key, b'{"x": 1}')
            await kv.delete(keys[0])
            listed = await notice_keys(js)
            live = set()
            for key in listed:
                try:
                    await kv.get(key)
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    continue
                live.add(key)
            return empty, listed, live
        finally:
            await nc.close()

    empty, listed, live = asyncio.run(scenario())
    assert empty == []
    keys = {notice_key(f"notice-{i}", "webhook") for i in range(50)}
    assert set(listed) == keys  # the deleted one too: its delete marker is a message
    assert live == keys - {notice_key("notice-0", "webhook")}
