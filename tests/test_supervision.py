"""Supervised background work: a crashing loop is logged with its context, counted and restarted
with backoff, /readyz fails while a vital one is down, and the ledger's retry queue is bounded
with a poison row set aside instead of blocking everything behind it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from uptimewatch import app as app_module
from uptimewatch.app import run_daemon
from uptimewatch.config.loader import load_config
from uptimewatch.ledger import Ledger
from uptimewatch.model.health import SiteState, StateChange
from uptimewatch.store import SqliteStore
from uptimewatch.supervisor import Supervisor


async def test_a_crashing_loop_is_logged_counted_and_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(initial_backoff=0.05, max_backoff=0.2)
    runs: list[float] = []
    done = asyncio.Event()

    async def flaky() -> None:
        runs.append(time.monotonic())
        if len(runs) <= 3:
            raise RuntimeError(f"crash {len(runs)}")
        done.set()
        await asyncio.sleep(3600)

    with caplog.at_level(logging.ERROR, logger="uptimewatch.supervisor"):
        task = supervisor.spawn("worker", flaky, vital=True, context="channel duty/email")
        await asyncio.wait_for(done.wait(), 10)
    (stats,) = supervisor.stats()
    assert (stats.name, stats.restarts, stats.up) == ("worker", 3, True)
    assert stats.last_error == "RuntimeError: crash 3"
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # the backoff doubles: 0.05, 0.1, 0.2 s with ±20% jitter (a sleep never ends early)
    assert gaps[0] >= 0.04
    assert gaps[2] >= 0.16
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 3
    assert "worker (channel duty/email)" in crashes[0].getMessage()
    assert crashes[0].exc_info is not None  # the traceback is in the log
    assert supervisor.vital_down() == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_loop_that_returns_is_finished_not_restarted() -> None:
    supervisor = Supervisor(initial_backoff=0.01)
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    await supervisor.spawn("once", once)
    await asyncio.sleep(0.05)
    assert calls == 1
    assert supervisor.stats() == []


def _site(site_id: str) -> dict[str, Any]:
    return {
        "id": site_id,
        "name": f"Trạm {site_id}",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
    }


async def test_daemon_is_not_ready_while_its_ledger_writer_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    data = province_config([_site("s1")], listen=listen, defaults={"interval": "30s"})
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    path = write_yaml(tmp_path / "config.yaml", data)
    crashes = 0
    original = Ledger._run

    async def crash_once(self: Ledger) -> None:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("the ledger writer hit a bug")
        await original(self)

    monkeypatch.setattr(Ledger, "_run", crash_once)
    monkeypatch.setattr(app_module, "Supervisor", lambda: Supervisor(initial_backoff=2.0))
    async with run_daemon(path) as daemon, aiohttp.ClientSession() as http:

        async def readyz() -> tuple[int, str]:
            async with http.get(daemon.url + "/readyz") as resp:
                return resp.status, await resp.text()

        status, text = await readyz()
        assert status == 503, text
        assert "ledger (RuntimeError: the ledger writer hit a bug)" in text

        async def ready_again() -> bool:
            return (await readyz())[0] == 200

        await wait_until(ready_again, timeout=15)
        async with http.get(daemon.url + "/metrics") as resp:
            metrics = await resp.text()
        assert 'uptimewatch_task_restarts_total{task="ledger"} 1.0' in metrics
        assert 'uptimewatch_task_up{task="ledger"} 1.0' in metrics
        assert 'uptimewatch_task_restarts_total{task="alert-engine"} 0.0' in metrics


def _change(site_id: str, at: float, reason: object = "no answer") -> StateChange:
    return StateChange("site", site_id, None, None, SiteState.UP, SiteState.DOWN, reason, at)  # type: ignore[arg-type]


def _config(tmp_path: Path, sites: list[str]) -> Any:
    data = province_config([_site(s) for s in sites], listen="127.0.0.1:9847")
    return load_config(write_yaml(tmp_path / "config.yaml", data)).config


async def test_a_poison_row_is_set_aside_and_the_rest_is_written(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, flush_delay=0.0)
    await ledger.start(_config(tmp_path, ["s1", "s2", "s3"]))
    now = time.time()
    # a value sqlite cannot bind, as a bug upstream would produce: it fails alone, every time
    ledger.record([_change("s1", now), _change("s2", now + 1, reason=object()), _change("s3", now + 2)])
    await ledger.flush()
    assert ledger.stats().dropped == {"overflow": 0, "poison": 1}
    assert ledger.stats().pending == 0
    await ledger.stop()
    await store.close()
    conn = sqlite3.connect(db)
    try:
        written = sorted(r[0] for r in conn.execute("SELECT site_id FROM ledger_site_interval"))
    finally:
        conn.close()
    assert written == ["s1", "s3"]


class _FailingStore(SqliteStore):
    """A real store whose disk 'fills up' on demand."""

    failing = False

    async def transaction(self, func: Any) -> Any:
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        return await super().transaction(func)


async def test_the_retry_queue_is_bounded_and_overflow_counted(tmp_path: Path) -> None:
    store = _FailingStore(tmp_path / "state.sqlite")
    await store.open()
    ledger = Ledger(store, flush_delay=0.0, max_pending=50)
    await ledger.start(_config(tmp_path, ["s1"]))
    store.failing = True
    now = time.time()
    for n in range(30):
        ledger.record([_change("s1", now + n)])
        with pytest.raises(sqlite3.OperationalError):
            await ledger.flush()  # the store fails, not a row: everything is kept for later
    assert ledger.stats().pending == 30
    assert ledger.stats().dropped == {"overflow": 0, "poison": 0}
    for n in range(30, 100):
        ledger.record([_change("s1", now + n)])
    # the oldest beyond the bound go, and each is counted
    assert ledger.stats().pending == 50
    assert ledger.stats().dropped == {"overflow": 50, "poison": 0}
    store.failing = False
    await ledger.flush()
    assert ledger.stats().pending == 0
    await ledger.stop()
    await store.close()
