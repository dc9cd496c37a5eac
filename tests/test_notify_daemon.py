"""The notifier inside the whole daemon: the outbox on the daemon's store, the MQTT site-state
topics fed by the health model, and the outbox metrics on /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.mosquitto import Mosquitto
from tests.test_notify_mqtt import _subscribe
from tests.test_notify_outbox import WebhookReceiver, alert, notice, webhook_server
from uptimewatch.app import run_daemon

FAST = {"interval": "1s", "timeout": "4s", "hard_after": 1, "icmp": {"count": 2, "interval": "20ms"}}


async def test_daemon_delivers_notices_publishes_site_states_and_exports_outbox_metrics(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with webhook_server() as webhook:
        await _run(tmp_path, mosquitto, webhook)


async def _run(tmp_path: Path, mosquitto: Mosquitto, webhook: WebhookReceiver) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    config = province_config(
        [
            {
                "id": "bts-paco",
                "name": "Trạm Pà Cò",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
            }
        ],
        listen=listen,
        defaults=FAST,
    )
    config["storage"] = {"path": str(tmp_path / "state.sqlite")}
    config["mqtt"] = {"host": mosquitto.host, "port": mosquitto.port, "client_id": "uw-e2e"}
    config["notify"] = {"receivers": [{"name": "duty", "webhook": {"url": webhook.url}, "mqtt": {}}]}
    path = write_yaml(tmp_path / "config.yaml", config)

    states: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    async with run_daemon(path) as daemon:
        await daemon.outbox.enqueue([notice("e2e-1", "firing", alert("fp-e2e", site="bts-paco"))])
        await wait_until(lambda: webhook.ids() == ["e2e-1"], timeout=15)

        watchers = [
            asyncio.create_task(_subscribe(mosquitto, "uptimewatch/test/+/+/state", states, "e2e-states")),
            asyncio.create_task(_subscribe(mosquitto, "uptimewatch/test/events", events, "e2e-events")),
        ]
        try:
            # the site came up on its first ping: its retained state is there for a late subscriber
            await wait_until(lambda: any(s["state"] == "up" for s in states), timeout=20)
            await daemon.outbox.enqueue([notice("e2e-2", "resolved", alert("fp-e2e", "resolved"))])
            await wait_until(lambda: [e["id"] for e in events] == ["e2e-2"], timeout=15)
        finally:
            for task in watchers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        status, text = await async_http("GET", f"{daemon.url}/metrics")
        assert status == 200
    assert states[0]["topic"] == "uptimewatch/test/d1/bts-paco/state"
    assert states[0]["name"] == "Trạm Pà Cò"
    assert webhook.ids() == ["e2e-1", "e2e-2"]
    sent = {
        (s.labels["receiver"], s.labels["channel"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "uptimewatch_notifications_sent"
        for s in family.samples
        if s.name.endswith("_total")
    }
    # e2e-1 went out on the events topic too, before anyone listened there
    assert sent == {("duty", "mqtt"): 2.0, ("duty", "webhook"): 2.0}
