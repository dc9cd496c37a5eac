"""MQTT channel and retained site states against Debian's mosquitto, restarted in the middle."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.fixtures.daemon import wait_until
from tests.fixtures.mosquitto import Mosquitto
from tests.test_notify_outbox import NAMES, FakeClock, alert, notice, notify_config, run_clock, stats_of
from uptimewatch.config.models import MqttBroker
from uptimewatch.model.health import SiteState, SiteStatus
from uptimewatch.notify.base import ChannelContext
from uptimewatch.notify.dispatcher import Dispatcher, build_channels
from uptimewatch.notify.mqtt import MqttLink, SiteStatePublisher
from uptimewatch.notify.outbox import Outbox
from uptimewatch.store import SqliteStore

EVENTS = "uptimewatch/hoa-binh/events"


@pytest.fixture
async def link(mosquitto: Mosquitto) -> AsyncIterator[MqttLink]:
    broker = MqttBroker(host=mosquitto.host, port=mosquitto.port, client_id="uw-test")
    mqtt_link = MqttLink(broker, reconnect_initial=0.05, reconnect_max=0.3)
    mqtt_link.start()
    try:
        await wait_until(lambda: mqtt_link.connected, timeout=10)
        yield mqtt_link
    finally:
        await mqtt_link.stop()


async def _subscribe(mosquitto: Mosquitto, topic: str, into: list[dict[str, Any]], client_id: str) -> None:
    """A dashboard with a persistent session: reconnects, and the broker keeps its QoS 1 queue."""
    while True:
        try:
            async with aiomqtt.Client(
                mosquitto.host, mosquitto.port, identifier=client_id, clean_session=False
            ) as client:
                await client.subscribe(topic, qos=1)
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    into.append(
                        {"topic": str(message.topic), "retain": message.retain, **json.loads(message.payload)}
                    )
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)


async def test_events_are_delivered_with_qos1_across_a_broker_restart(
    mosquitto: Mosquitto, link: MqttLink, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []
    subscriber = asyncio.create_task(_subscribe(mosquitto, EVENTS, received, "noc-dashboard"))
    store = SqliteStore(tmp_path / "outbox.sqlite")
    await store.open()
    clock = FakeClock()
    outbox = Outbox(store, clock=clock)
    await outbox.open()
    config = notify_config([{"name": "duty", "mqtt": {"timeout": "2s"}}], retry_initial="5s")
    dispatcher = Dispatcher(outbox, config.outbox, max_sleep=0.02)
    await dispatcher.start(build_channels(config, ChannelContext(names=NAMES, mqtt=link)))
    try:
        await outbox.enqueue([notice("mq-1", "firing", alert("fp-1"))])
        await wait_until(lambda: [r["id"] for r in received] == ["mq-1"], timeout=10)

        await asyncio.to_thread(mosquitto.stop)
        await wait_until(lambda: not link.connected, timeout=10)
        await outbox.enqueue(
            [notice("mq-2", "firing", alert("fp-2")), notice("mq-3", "resolved", alert("fp-1", "resolved"))]
        )
        # no PUBACK without a broker: nothing counts as sent
        await wait_until(lambda: stats_of(dispatcher, "mqtt").retried >= 1, timeout=10)
        assert stats_of(dispatcher, "mqtt").sent == 1

        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: link.connected, timeout=10)
        await run_clock(dispatcher, clock, 60, step=10)
        await wait_until(lambda: stats_of(dispatcher, "mqtt").sent == 3, timeout=10)
        await wait_until(lambda: len({r["id"] for r in received}) == 3, timeout=10)
    finally:
        await dispatcher.stop()
        await store.close()
        subscriber.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await subscriber
    ids = [r["id"] for r in received]
    duplicates = len(ids) - len(set(ids))
    assert (3, len(set(ids)), duplicates) == (3, 3, 0)
    assert ids == ["mq-1", "mq-2", "mq-3"]
    assert received[2]["alerts"][0]["state"] == "resolved"
    assert received[2]["version"] == 1
    assert link.connects == 2


def _site(site_id: str, state: SiteState, reason: str, since: float) -> SiteStatus:
    return SiteStatus(
        site_id=site_id,
        name=NAMES.sites[site_id],
        district="mai-chau",
        commune=None,
        carrier="vnpt",
        priority="normal",
        upstream=(),
        state=state,
        reason=reason,
        since=since,
        devices=(),
    )


async def test_site_states_are_retained_for_late_subscribers_and_survive_a_restart(
    mosquitto: Mosquitto, link: MqttLink
) -> None:
    sites = {"bts-paco": _site("bts-paco", SiteState.UP, "all 2 devices OK", 1000.0)}
    publisher = SiteStatePublisher(link, sites.get, province="hoa-binh")
    publisher.start()
    try:
        publisher.site_changed("bts-paco")
        await wait_until(lambda: publisher.published == 1, timeout=10)
        # a flap while the broker is away: only the final state goes out, once it is back
        await asyncio.to_thread(mosquitto.stop)
        sites["bts-paco"] = _site("bts-paco", SiteState.DOWN, "bts: no reply to ping", 2000.0)
        publisher.site_changed("bts-paco")
        sites["bts-paco"] = _site("bts-paco", SiteState.DEGRADED, "power: on battery", 2100.0)
        publisher.site_changed("bts-paco")
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: publisher.published == 2, timeout=15)
        await asyncio.to_thread(mosquitto.restart)  # retained messages persist with the broker
    finally:
        await publisher.stop()

    seen: list[dict[str, Any]] = []
    late = asyncio.create_task(_subscribe(mosquitto, "uptimewatch/hoa-binh/+/+/state", seen, "late-viewer"))
    try:
        await wait_until(lambda: seen, timeout=10)
    finally:
        late.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await late
    state = seen[0]
    assert state["topic"] == "uptimewatch/hoa-binh/mai-chau/bts-paco/state"
    assert state["retain"] is True
    assert (state["state"], state["reason"], state["since"]) == ("degraded", "power: on battery", 2100.0)
    assert state["name"] == "Trạm Pà Cò"
