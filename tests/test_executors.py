"""Slow auth cannot starve the daemon: bcrypt runs on its own bounded lane, failed logins are
rate-limited per client, and a ``/metrics`` scrape is answered in the middle of a flood of wrong
passwords. (How long the scrape takes is measured in bench/auth_flood.py, not asserted here.)"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml
from uptimewatch import executors
from uptimewatch.app import run_daemon

PASSWORD = "correct horse battery staple"


def _config(tmp_path: Path, listen: str, **auth: Any) -> Path:
    site = {
        "id": "s1",
        "name": "Trạm 1",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
    }
    data = province_config([site], listen=listen, defaults={"interval": "30s"})
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    # the default cost (12): each wrong guess costs what it costs in production
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode()
    data["alerting"] = {"auth": {"basic": [{"user": "an", "password_bcrypt": hashed}], **auth}}
    return write_yaml(tmp_path / "config.yaml", data)


def _basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"an:{password}".encode()).decode()}


async def test_scrape_is_answered_during_a_bcrypt_flood(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    # no rate limit here: this test is about the lanes alone
    async with run_daemon(_config(tmp_path, listen, max_failures=100_000)) as daemon:
        answered: list[int] = []
        refused = asyncio.Event()

        async def guess(http: aiohttp.ClientSession, n: int) -> None:
            async with http.post(daemon.url + "/-/reload", headers=_basic(f"wrong-{n}")) as resp:
                answered.append(resp.status)
                if resp.status == 401:
                    refused.set()

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            flood = [asyncio.create_task(guess(http, n)) for n in range(200)]
            # until bcrypt is busy: the first guesses have been refused
            await refused.wait()
            async with aiohttp.ClientSession() as scraper, scraper.get(daemon.url + "/metrics") as resp:
                body = await resp.text()
                assert resp.status == 200
            in_flight_at_scrape = 200 - len(answered)
            await asyncio.gather(*flood)
        assert "uptimewatch_config_last_reload_successful" in body
        # the scrape did not wait for the guesses queued for bcrypt
        assert in_flight_at_scrape > 0, answered
        # every guess is refused; those beyond the auth lane's bound at once (503), not queued
        assert set(answered) <= {401, 503}
        assert answered.count(503) > 0
        assert answered.count(401) <= 200


async def test_failed_logins_are_rate_limited_per_client(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    async with run_daemon(_config(tmp_path, listen, max_failures=5, failure_window="60s")) as daemon:
        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:
            for n in range(8):
                async with http.post(daemon.url + "/-/reload", headers=_basic(f"wrong-{n}")) as resp:
                    statuses.append(resp.status)
                    retry_after = resp.headers.get("Retry-After")
            assert statuses == [401] * 5 + [429] * 3
            assert retry_after is not None
            assert 1 <= int(retry_after) <= 60
            # while refused, even the right password is not checked (no bcrypt for this client)
            async with http.post(daemon.url + "/-/reload", headers=_basic(PASSWORD)) as resp:
                assert resp.status == 429
            # reads stay open
            async with http.get(daemon.url + "/api/v1/sites") as resp:
                assert resp.status == 200


async def test_lane_refuses_beyond_its_bound_and_counts_calls_until_they_return() -> None:
    lane = executors.Lane("test", workers=1, max_waiting=1)
    release = threading.Event()
    first = asyncio.create_task(lane.run(release.wait, 10))
    second = asyncio.create_task(lane.run(time.sleep, 0))
    await asyncio.sleep(0.05)
    with pytest.raises(executors.LaneFull):
        await lane.run(time.sleep, 0)
    assert lane.stats().rejected == 1
    first.cancel()  # the thread cannot be cancelled: its call still counts
    await asyncio.sleep(0.05)
    assert lane.stats().pending == 2
    release.set()
    await second
    assert lane.stats().pending == 0
    assert await lane.run(lambda: 42) == 42
