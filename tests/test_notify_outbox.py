"""The durable outbox and its dispatcher, against real peers: aiosmtpd (STARTTLS, AUTH), an aiohttp
webhook receiver, and a process killed with SIGKILL. Time is injected, so an hour of outage and
its retries take well under a second."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.daemon import free_tcp_port, wait_until
from tests.fixtures.smtp import PASSWORD, USERNAME, HangingServer, SmtpServer
from uptimewatch.notify.base import ChannelContext, Names
from uptimewatch.notify.config import NotifyConfig
from uptimewatch.notify.dispatcher import Dispatcher, build_channels
from uptimewatch.notify.outbox import Outbox
from uptimewatch.notify.types import AlertInfo, Notification
from uptimewatch.store import SqliteStore

T0 = 1_760_000_000.0
REPO = Path(__file__).resolve().parents[1]
SECRET = "whk-Sg7-test-secret"
NAMES = Names(
    province_id="hoa-binh",
    province_name="Tỉnh Hòa Bình",
    timezone="Asia/Ho_Chi_Minh",
    districts={"mai-chau": "Huyện Mai Châu"},
    carriers={"vnpt": "VNPT"},
    sites={"bts-paco": "Trạm Pà Cò", "bts-vanmai": "Trạm Vạn Mai", "bts-tongdau": "Trạm Tòng Đậu"},
)


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def alert(
    fingerprint: str, state: str = "firing", site: str = "bts-paco", name: str = "SiteDown"
) -> AlertInfo:
    return AlertInfo(
        fingerprint=fingerprint,
        name=name,
        severity="critical",
        state=state,  # type: ignore[arg-type]
        labels={"province": "hoa-binh", "district": "mai-chau", "carrier": "vnpt", "site": site},
        summary=f"{NAMES.sites.get(site, site)} down: no reply to ping",
        starts_at=T0,
        ends_at=T0 + 600 if state == "resolved" else None,
    )


def notice(
    nid: str,
    kind: str,
    *alerts: AlertInfo,
    receiver: str = "duty",
    group_key: str = "district=mai-chau,carrier=vnpt",
    created_at: float = T0,
) -> Notification:
    return Notification(
        id=nid,
        kind=kind,  # type: ignore[arg-type]
        receiver=receiver,
        group_key=group_key,
        title=f"{len(alerts)} alerts",
        alerts=alerts,
        created_at=created_at,
        labels={"district": "mai-chau", "carrier": "vnpt"},
    )


@dataclass
class WebhookReceiver:
    """An aiohttp server in the test: records every POST; answers from ``script`` (per notice id,
    a list of statuses used up one by one; ``0`` means hang), else 200."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]

    def ids(self) -> list[str]:
        return [b["id"] for b in self.bodies()]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        nid = json.loads(body).get("id", "") if body.startswith(b"{") else ""
        statuses = self.script.get(nid)
        status = statuses.pop(0) if statuses else 200
        if status == 0:
            await asyncio.sleep(3600)
        if 200 <= status < 300:
            self.posts.append((dict(request.headers), body))
        return web.Response(status=status, text="ok" if status < 300 else "no")


@contextlib.asynccontextmanager
async def webhook_server() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with webhook_server() as receiver:
        yield receiver


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "outbox.sqlite")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def email_channel(server: SmtpServer | HangingServer, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "sender": "uptimewatch Hòa Bình <noc@hoabinh.example.vn>",
        "to": ["Trực ca NOC <truc-ca@hoabinh.example.vn>"],
    }
    if isinstance(server, SmtpServer):
        settings |= {"username": USERNAME, "password": PASSWORD, "ca_file": server.ca_file}
    return settings | extra


def notify_config(receivers: list[dict[str, Any]], **outbox: Any) -> NotifyConfig:
    timing = {"retry_initial": "10s", "retry_max": "10m", "expire_after": "24h"} | outbox
    return NotifyConfig.model_validate({"receivers": receivers, "outbox": timing})


async def start(store: SqliteStore, config: NotifyConfig, clock: Callable[[], float]) -> Dispatcher:
    outbox = Outbox(store, clock=clock)
    await outbox.open()
    dispatcher = Dispatcher(outbox, config.outbox, max_sleep=0.02)
    await dispatcher.start(build_channels(config, ChannelContext(names=NAMES)))
    return dispatcher


def stats_of(dispatcher: Dispatcher, channel: str) -> Any:
    return next(s for s in dispatcher.stats() if s.channel == channel)


async def run_clock(dispatcher: Dispatcher, clock: FakeClock, seconds: float, step: float = 30.0) -> None:
    """Move the injected clock forward in steps, letting the workers act at each step."""
    moved = 0.0
    while moved < seconds:
        clock.advance(step)
        moved += step
        dispatcher.wake()
        for _ in range(5):
            await asyncio.sleep(0.005)


# -- the SMTP relay down for an hour ------------------------------------------------------------


async def test_smtp_down_for_an_hour_then_back_delivers_each_notice_once_in_order(
    smtp_server: SmtpServer, webhook: WebhookReceiver, store: SqliteStore
) -> None:
    smtp_server.stop()
    clock = FakeClock()
    config = notify_config(
        [{"name": "duty", "email": email_channel(smtp_server), "webhook": {"url": webhook.url}}],
        channel_failure_alert_after="10m",
    )
    dispatcher = await start(store, config, clock)
    outbox = dispatcher.outbox
    a, b, c = "fp-a", "fp-b", "fp-c"
    timeline = [
        (0, notice("n1-firing-a", "firing", alert(a))),
        (0, notice("n2-firing-b", "firing", alert(b, site="bts-vanmai"))),
        (1200, notice("n3-resolved-a", "resolved", alert(a, "resolved"))),
        (1800, notice("n4-firing-c", "firing", alert(c, site="bts-tongdau"))),
        (3000, notice("n5-resolved-b", "resolved", alert(b, "resolved", site="bts-vanmai"))),
        (3000, notice("n6-resolved-c", "resolved", alert(c, "resolved", site="bts-tongdau"))),
    ]
    expected = [n.id for _, n in timeline]
    try:
        elapsed = 0.0
        for at, n in timeline:
            await run_clock(dispatcher, clock, at - elapsed)
            elapsed = at
            assert await outbox.enqueue([n]) == 2  # one row for email, one for the webhook
        await run_clock(dispatcher, clock, 3600 - elapsed)

        email = stats_of(dispatcher, "email")
        assert smtp_server.messages == []
        assert email.sent == 0
        assert email.retried >= 6  # backed off, but kept trying through the hour
        assert email.depth == 6
        assert email.oldest_pending_age == pytest.approx(3600, abs=1)
        # the webhook never waited for the relay; the relay's hour of failure was announced there
        await wait_until(lambda: len(webhook.posts) >= 7, timeout=5)
        hooks = webhook.bodies()
        notice_ids = [h["id"] for h in hooks if not h["id"].startswith("channelfailing")]
        assert notice_ids == expected
        failing = [h for h in hooks if h["id"].startswith("channelfailing")]
        assert [(f["kind"], f["alerts"][0]["name"]) for f in failing] == [("firing", "ChannelFailing")]
        assert "duty/email" in failing[0]["alerts"][0]["summary"]

        smtp_server.start()
        await run_clock(dispatcher, clock, 600)
        await wait_until(lambda: len(smtp_server.messages) >= 6, timeout=10)
        await wait_until(lambda: len(webhook.posts) >= 8, timeout=5)
        await run_clock(dispatcher, clock, 1200)  # more time: nothing is sent twice
    finally:
        await dispatcher.stop()

    received = [m.message["X-Uptimewatch-Notification-Id"] for m in smtp_server.messages]
    duplicates = len(received) - len(set(received))
    assert (len(expected), len(received), duplicates) == (6, 6, 0)
    assert received == expected  # in order: no resolved before its firing, and FIFO besides
    first = smtp_server.messages[0]
    assert first.tls
    assert first.auth_mechanism in ("PLAIN", "LOGIN")
    # every later notice of the group threads under the first firing one
    root = first.message["Message-ID"]
    assert all(m.message["In-Reply-To"] == root for m in smtp_server.messages[1:])
    final = webhook.bodies()[-1]
    assert (final["alerts"][0]["name"], final["kind"]) == ("ChannelFailing", "resolved")
    assert {r["status"] for r in await dispatcher.outbox.history()} == {"sent"}
    email = stats_of(dispatcher, "email")
    assert (email.sent, email.failed, email.expired, email.depth) == (6, 0, 0, 0)


async def test_a_refused_message_fails_alone_and_a_tempfail_is_retried(
    smtp_server: SmtpServer, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = notify_config([{"name": "duty", "email": email_channel(smtp_server)}])
    dispatcher = await start(store, config, clock)
    try:
        smtp_server.mode = "550"
        await dispatcher.outbox.enqueue([notice("refused-1", "firing", alert("fp-r"))])
        await wait_until(lambda: stats_of(dispatcher, "email").failed == 1, timeout=10)
        assert "refused-1" in caplog.text
        assert "not retried" in caplog.text

        smtp_server.mode = "421"
        await dispatcher.outbox.enqueue([notice("tempfail-2", "firing", alert("fp-t"))])
        await wait_until(lambda: stats_of(dispatcher, "email").retried == 1, timeout=10)
        smtp_server.mode = "accept"
        await run_clock(dispatcher, clock, 30, step=15)
        await wait_until(lambda: stats_of(dispatcher, "email").sent == 1, timeout=10)
    finally:
        await dispatcher.stop()
    assert [m.message["X-Uptimewatch-Notification-Id"] for m in smtp_server.messages] == ["tempfail-2"]
    statuses = {r["notification_id"]: (r["status"], r["attempts"]) for r in await dispatcher.outbox.history()}
    assert statuses == {"refused-1": ("failed", 1), "tempfail-2": ("sent", 2)}


async def test_a_hanging_relay_never_delays_the_webhook(
    smtp_hanging: HangingServer, webhook: WebhookReceiver, store: SqliteStore
) -> None:
    clock = FakeClock()
    config = notify_config(
        [
            {
                "name": "duty",
                "email": email_channel(smtp_hanging, starttls="opportunistic", timeout="1h"),
                "webhook": {"url": webhook.url},
            }
        ]
    )
    dispatcher = await start(store, config, clock)
    try:
        notices = [notice(f"iso-{i}", "firing", alert(f"fp-{i}")) for i in range(5)]
        await dispatcher.outbox.enqueue(notices[:2])
        await dispatcher.outbox.enqueue(notices[2:])
        await wait_until(lambda: len(webhook.posts) == 5, timeout=10)
        email = stats_of(dispatcher, "email")
        # the email worker is still inside its first send, stuck on the silent relay
        assert (email.sent, email.retried, email.failed, email.depth) == (0, 0, 0, 5)
    finally:
        await dispatcher.stop(grace=0.1)
    pending = [r for r in await dispatcher.outbox.history() if r["channel"] == "duty/email"]
    assert {r["status"] for r in pending} == {"pending"}  # cancelled by stop: sent after the next start


# -- webhook ----------------------------------------------------------------------------------------


async def test_webhook_is_signed_and_its_status_codes_decide_retry(
    webhook: WebhookReceiver, store: SqliteStore
) -> None:
    clock = FakeClock()
    config = notify_config([{"name": "duty", "webhook": {"url": webhook.url, "secret": SECRET}}])
    webhook.script = {"bad-request": [400], "busy": [503, 429]}
    dispatcher = await start(store, config, clock)
    try:
        await dispatcher.outbox.enqueue(
            [notice("bad-request", "firing", alert("fp-1")), notice("busy", "firing", alert("fp-2"))]
        )
        await wait_until(lambda: stats_of(dispatcher, "webhook").retried == 1, timeout=10)
        await run_clock(dispatcher, clock, 15, step=15)
        await wait_until(lambda: stats_of(dispatcher, "webhook").retried == 2, timeout=10)
        await run_clock(dispatcher, clock, 30, step=30)
        await wait_until(lambda: stats_of(dispatcher, "webhook").sent == 1, timeout=10)
    finally:
        await dispatcher.stop()
    stats = stats_of(dispatcher, "webhook")
    assert (stats.sent, stats.failed, stats.retried) == (1, 1, 2)
    assert webhook.ids() == ["busy"]
    headers, body = webhook.posts[0]
    # what a receiver does to check it (docs/notifications.md shows the same lines)
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Uptimewatch-Signature"], expected)
    payload = json.loads(body)
    assert payload["version"] == 1
    assert payload["alerts"][0]["fingerprint"] == "fp-2"
    assert headers["X-Uptimewatch-Notification-Id"] == "busy"


# -- durability and order -----------------------------------------------------------------------

KILLED_SCRIPT = """
import asyncio, os, sys, time
sys.path.insert(0, {repo!r})
from tests.test_notify_outbox import alert, notice
from uptimewatch.notify.outbox import Outbox
from uptimewatch.store import SqliteStore

async def main():
    store = SqliteStore({db!r})
    await store.open()
    outbox = Outbox(store)
    await outbox.open()
    outbox.set_routes({{"duty": ["duty/webhook"]}})
    await outbox.enqueue([notice(f"crash-{{i}}", "firing", alert(f"fp-{{i}}")) for i in range(3)])
    print("enqueued", flush=True)
    await asyncio.sleep(3600)  # no dispatcher: the kill comes before any send

asyncio.run(main())
"""


async def test_kill_9_between_enqueue_and_send_then_delivered_after_restart(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    db = tmp_path / "crash.sqlite"
    script = tmp_path / "enqueue_and_hang.py"
    script.write_text(KILLED_SCRIPT.format(repo=str(REPO), db=str(db)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line.strip() == b"enqueued"
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    store = SqliteStore(db)
    await store.open()
    try:
        config = notify_config([{"name": "duty", "webhook": {"url": webhook.url}}])
        dispatcher = await start(store, config, time.time)  # the killed process queued in real time
        try:
            await wait_until(lambda: len(webhook.posts) == 3, timeout=10)
        finally:
            await dispatcher.stop()
    finally:
        await store.close()
    ids = webhook.ids()
    assert (3, len(ids), len(ids) - len(set(ids))) == (3, 3, 0)
    assert ids == ["crash-0", "crash-1", "crash-2"]


async def test_a_resolved_notice_waits_for_its_firing_one_but_other_alerts_go_ahead(
    webhook: WebhookReceiver, store: SqliteStore
) -> None:
    clock = FakeClock()
    config = notify_config([{"name": "duty", "webhook": {"url": webhook.url}}])
    webhook.script = {"firing-a": [503]}
    dispatcher = await start(store, config, clock)
    await dispatcher.outbox.enqueue([notice("firing-a", "firing", alert("fp-a"))])
    await wait_until(lambda: stats_of(dispatcher, "webhook").retried == 1, timeout=10)
    await dispatcher.stop()
    # after a restart the failed firing notice is not due yet; its resolved one must wait behind it
    dispatcher = await start(store, config, clock)
    try:
        await dispatcher.outbox.enqueue(
            [
                notice("resolved-a", "resolved", alert("fp-a", "resolved")),
                notice("firing-b", "firing", alert("fp-b", site="bts-vanmai")),
            ]
        )
        await wait_until(lambda: webhook.ids() == ["firing-b"], timeout=10)
        await run_clock(dispatcher, clock, 5, step=5)
        assert webhook.ids() == ["firing-b"]
        await run_clock(dispatcher, clock, 30, step=30)
        await wait_until(lambda: len(webhook.posts) == 3, timeout=10)
    finally:
        await dispatcher.stop()
    assert webhook.ids() == ["firing-b", "firing-a", "resolved-a"]


async def test_enqueue_is_idempotent_and_unknown_receivers_are_reported(
    webhook: WebhookReceiver, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = notify_config([{"name": "duty", "webhook": {"url": webhook.url}}])
    dispatcher = await start(store, config, clock)
    try:
        n = notice("once", "firing", alert("fp-1"))
        assert await dispatcher.outbox.enqueue([n]) == 1
        assert await dispatcher.outbox.enqueue([n]) == 0  # the engine re-sent it after a crash
        lost = notice("nobody", "firing", alert("fp-2"), receiver="no-such-receiver")
        with caplog.at_level(logging.ERROR):
            assert await dispatcher.outbox.enqueue([lost]) == 0
        assert "no-such-receiver" in caplog.text
        await wait_until(lambda: stats_of(dispatcher, "webhook").sent == 1, timeout=10)
        await run_clock(dispatcher, clock, 60)
    finally:
        await dispatcher.stop()
    assert webhook.ids() == ["once"]


async def test_a_notice_past_expire_after_is_expired_counted_and_logged(
    webhook: WebhookReceiver, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = notify_config(
        [{"name": "duty", "webhook": {"url": webhook.url}}],
        expire_after="1h",
        channel_failure_alert_after="2h",
    )
    webhook.script = {"stale": [503] * 100}
    dispatcher = await start(store, config, clock)
    try:
        await dispatcher.outbox.enqueue([notice("stale", "firing", alert("fp-s"))])
        await wait_until(lambda: stats_of(dispatcher, "webhook").retried == 1, timeout=10)
        with caplog.at_level(logging.ERROR):
            await run_clock(dispatcher, clock, 3700, step=100)
            await wait_until(lambda: stats_of(dispatcher, "webhook").expired == 1, timeout=10)
    finally:
        await dispatcher.stop()
    stats = stats_of(dispatcher, "webhook")
    assert (stats.sent, stats.expired, stats.depth) == (0, 1, 0)
    assert "stale" in caplog.text
    assert "expired undelivered through duty/webhook" in caplog.text
    assert webhook.posts == []
