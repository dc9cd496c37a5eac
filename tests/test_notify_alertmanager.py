"""Alertmanager v2 channel against Debian's prometheus-alertmanager, read back through its API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.fixtures.alertmanager import Alertmanager
from tests.fixtures.daemon import wait_until
from tests.test_notify_outbox import NAMES, FakeClock, alert, notice, notify_config, stats_of
from uptimewatch.notify.base import ChannelContext
from uptimewatch.notify.dispatcher import Dispatcher, build_channels
from uptimewatch.notify.outbox import Outbox
from uptimewatch.store import SqliteStore


async def test_alertmanager_receives_firing_then_resolved(alertmanager: Alertmanager, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "outbox.sqlite")
    await store.open()
    # real time: Alertmanager judges startsAt and endsAt against its own clock
    clock = FakeClock(start=time.time())
    outbox = Outbox(store, clock=clock)
    await outbox.open()
    config = notify_config([{"name": "duty", "alertmanager": {"url": alertmanager.url}}])
    dispatcher = Dispatcher(outbox, config.outbox, max_sleep=0.02)
    context = ChannelContext(names=NAMES, external_url="https://noc.example.vn/uptimewatch")
    await dispatcher.start(build_channels(config, context))
    fingerprint = "fp-am-1"
    try:
        firing = alert(fingerprint)
        firing = type(firing)(**{**firing.to_dict(), "starts_at": clock.now - 60, "ends_at": None})
        await outbox.enqueue([notice("am-1", "firing", firing, created_at=clock.now)])
        await wait_until(lambda: stats_of(dispatcher, "alertmanager").sent == 1, timeout=10)
        alerts = await asyncio.to_thread(alertmanager.alerts)
        assert len(alerts) == 1
        shown = alerts[0]
        assert shown["status"]["state"] == "active"
        assert shown["labels"] == {
            "alertname": "SiteDown",
            "severity": "critical",
            "province": "hoa-binh",
            "district": "mai-chau",
            "carrier": "vnpt",
            "site": "bts-paco",
        }
        assert shown["annotations"]["summary"] == "Trạm Pà Cò down: no reply to ping"
        assert shown["generatorURL"] == "https://noc.example.vn/uptimewatch/status/site/bts-paco"

        resolved = type(firing)(**{**firing.to_dict(), "state": "resolved", "ends_at": clock.now - 1})
        await outbox.enqueue([notice("am-2", "resolved", resolved, created_at=clock.now)])
        await wait_until(lambda: stats_of(dispatcher, "alertmanager").sent == 2, timeout=10)

        # a resolved alert leaves the list of alerts Alertmanager still routes
        async def still_listed() -> bool:
            return any(
                a["labels"].get("alertname") == "SiteDown"
                for a in await asyncio.to_thread(alertmanager.alerts)
            )

        assert await still_listed() is False
    finally:
        await dispatcher.stop()
        await store.close()
