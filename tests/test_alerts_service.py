"""The alert service on a real SQLite store with an injected clock: persistence across a close
and reopen (no duplicate firing notice, no lost resolved notice, notices left between the commit
and the hand-over re-handed with the same ids), and the HTTP API with its authentication."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml
from tests.test_health import T0, ping
from uptimewatch.alerts import api
from uptimewatch.alerts.service import AlertService
from uptimewatch.config.loader import LoadedConfig, load_config
from uptimewatch.model.health import HealthModel
from uptimewatch.notify.types import Notification
from uptimewatch.store import SqliteStore

TOKEN = "tok-Vx81-never-logged"
PASSWORD = "mật-khẩu-trực-ca"


class MemorySink:
    """Stands in for the durable outbox (tested on its own): keeps one notice per id."""

    def __init__(self) -> None:
        self.notices: list[Notification] = []
        self.offered = 0
        self.fail = False

    async def enqueue(self, notifications: Sequence[Notification]) -> None:
        if self.fail:
            raise OSError("outbox unavailable")
        known = {n.id for n in self.notices}
        for n in notifications:
            self.offered += 1
            if n.id not in known:
                self.notices.append(n)
                known.add(n.id)

    def kinds(self) -> list[str]:
        return [n.kind for n in self.notices]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **alerting: Any) -> LoadedConfig:
    sites = [
        {
            "id": "s1",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "commune": "c2",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
        }
    ]
    data = province_config(sites, listen="127.0.0.1:9847")
    data["alerting"] = {"default_receiver": "noc", "group_wait": 0, **alerting}
    return load_config(write_yaml(tmp_path / "config.yaml", data))


class Rig:
    """One "daemon life": a store, a health model and the alert service, on a shared clock."""

    def __init__(self, tmp_path: Path, sink: MemorySink, clock: Clock, **alerting: Any) -> None:
        self.loaded = _config(tmp_path, **alerting)
        self.store = SqliteStore(tmp_path / "state.sqlite")
        self.model = HealthModel(self.loaded.config, self.loaded.devices, clock=clock)
        self.service = AlertService(self.store, self.loaded, self.model.snapshot, sink=sink, clock=clock)
        self.clock = clock

    async def __aenter__(self) -> Rig:
        await self.store.open()
        await self.service.start(background=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop()
        await self.store.close()

    async def ping(self, loss: float, times: int = 3) -> None:
        for _ in range(times):
            self.model.ingest(ping("s1", "bts", self.clock.now, loss=loss))
            self.clock.now += 60
            await self.service.evaluate()


async def test_restart_keeps_state_no_duplicate_firing_no_lost_resolved(tmp_path: Path) -> None:
    sink, clock = MemorySink(), Clock()
    async with Rig(tmp_path, sink, clock) as rig:
        await rig.ping(0.0)
        await rig.ping(1.0)
        assert sink.kinds() == ["firing"]
        (alert,) = rig.service.alerts("firing")
    # a new life: the health model starts empty, the store remembers
    async with Rig(tmp_path, sink, clock) as rig:
        await rig.service.evaluate()  # nothing polled yet: the site is unjudged, nothing resolves
        assert rig.service.alerts("firing")[0]["id"] == alert["id"]
        await rig.ping(1.0)
        assert sink.kinds() == ["firing"]  # not announced twice
        await rig.ping(0.0)
        assert sink.kinds() == ["firing", "resolved"]
        assert sink.offered == 2
        history = await rig.service.history(alert["id"])
        events = [h["event"] for h in reversed(history)]
        assert events == ["firing", "notice:firing", "resolved", "notice:resolved"]


async def test_notices_committed_but_not_handed_are_handed_at_the_next_start(tmp_path: Path) -> None:
    sink, clock = MemorySink(), Clock()
    async with Rig(tmp_path, sink, clock) as rig:
        await rig.ping(0.0)
        sink.fail = True  # the outbox refuses: the decision is stored, the hand-over is not done
        await rig.ping(1.0)
        assert sink.notices == []
        decided = await rig.service._db.outbound()
        assert [n.kind for n in decided] == ["firing"]
    sink.fail = False
    # as if the crash came after the outbox stored them but before they were marked handed
    await sink.enqueue(decided)
    async with Rig(tmp_path, sink, clock) as rig:
        assert sink.kinds() == ["firing"]
        assert sink.offered == 2
        assert await rig.service._db.outbound() == []
        await rig.ping(1.0)
        await rig.ping(0.0)
        assert sink.kinds() == ["firing", "resolved"]


# -- the HTTP API ---------------------------------------------------------------------------------


@pytest.fixture
async def api_server(tmp_path: Path) -> AsyncIterator[tuple[str, Rig, MemorySink]]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    sink, clock = MemorySink(), Clock()
    auth = {"bearer_tokens": [TOKEN], "basic": [{"user": "an", "password_bcrypt": hashed}]}
    async with Rig(tmp_path, sink, clock, auth=auth) as rig:
        app = web.Application()

        async def reload(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        app.router.add_post("/-/reload", reload)
        api.install(app, rig.service)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_tcp_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", rig, sink
        finally:
            await runner.cleanup()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_api_lists_alerts_and_mutations_need_credentials(
    api_server: tuple[str, Rig, MemorySink],
) -> None:
    base, rig, sink = api_server
    await rig.ping(0.0)
    await rig.ping(1.0)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v1/alerts") as resp:
            assert resp.status == 200
            body = await resp.json()
        (alert,) = body["alerts"]
        assert (alert["name"], alert["state"], alert["severity"]) == ("SiteDown", "firing", "critical")
        assert alert["labels"]["site"] == "s1"
        assert alert["ack"] is None
        ack_url = f"{base}/api/v1/alerts/{alert['id']}/ack"
        payload = {"by": "Nguyễn Văn An", "comment": "xe đang đến trạm"}

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": _basic("an", "nope")}):
            async with http.post(ack_url, json=payload, headers=headers) as resp:
                assert resp.status == 401
                assert "Bearer" in resp.headers["WWW-Authenticate"]
                assert "Basic" in resp.headers["WWW-Authenticate"]
        async with http.post(f"{base}/-/reload") as resp:
            assert resp.status == 401  # the reload endpoint is guarded by the same auth

        async with http.post(ack_url, json=payload, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200
            acked = await resp.json()
        assert acked["ack"]["by"] == "Nguyễn Văn An"
        assert sink.kinds() == ["firing", "acknowledged"]
        async with http.post(
            f"{base}/api/v1/alerts/ffffffffffffffff/ack",
            json=payload,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 404

        # silences: create with basic auth (bcrypt), list, expire
        silence = {
            "matchers": {"district": "d1"},
            "duration": "2h",
            "created_by": "an",
            "comment": "thay ắc quy",
        }
        async with http.post(f"{base}/api/v1/silences", json=silence) as resp:
            assert resp.status == 401
        async with http.post(
            f"{base}/api/v1/silences", json=silence, headers={"Authorization": _basic("an", PASSWORD)}
        ) as resp:
            assert resp.status == 201
            created = await resp.json()
        async with http.post(
            f"{base}/api/v1/silences",
            json={**silence, "matchers": {"site": "(unclosed"}},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 400
        async with http.get(f"{base}/api/v1/alerts") as resp:
            assert (await resp.json())["alerts"][0]["muted_by"] == f"silence:{created['id']}"
        async with http.delete(f"{base}/api/v1/silences/{created['id']}") as resp:
            assert resp.status == 401
        async with http.delete(
            f"{base}/api/v1/silences/{created['id']}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/v1/silences") as resp:
            listed = await resp.json()
            text = await resp.text()
        assert [s["state"] for s in listed["silences"]] == ["expired"]
        assert TOKEN not in text
        assert PASSWORD not in text
