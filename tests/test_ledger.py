"""The availability ledger on a real SQLite store: a hand-built timeline of state changes in,
intervals, on-battery spells and maintenance occurrences out; crash recovery at the heartbeat."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.fixtures.daemon import province_config, write_yaml
from uptimewatch.config.loader import load_config
from uptimewatch.ledger import Ledger
from uptimewatch.model.checks import CheckState
from uptimewatch.model.health import SiteState, StateChange
from uptimewatch.store import SqliteStore

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = dt.datetime(2026, 11, 1, tzinfo=TZ).timestamp()
H = 3600.0
U, G, D, X, K = SiteState.UP, SiteState.DEGRADED, SiteState.DOWN, SiteState.UNREACHABLE, SiteState.UNKNOWN


def site(sid: str, old: SiteState, new: SiteState, at: float, reason: str = "") -> StateChange:
    return StateChange("site", sid, None, None, old, new, reason or f"{new.value}", at)


def battery(sid: str, on: bool, at: float) -> StateChange:
    state, reason = (CheckState.WARNING, "on battery, ~60 min left") if on else (CheckState.OK, "on mains")
    old = CheckState.OK if on else CheckState.WARNING
    return StateChange("check", sid, "power", "power.on_battery", old, state, reason, at)


#: The replayed history (hours after T0, 2026-11-01 00:00 +07). Hand-computed outcomes are in
#: tests/test_report.py, which reads what this writes.
TIMELINE: list[tuple[float, StateChange]] = [
    (0, site("bts-a", K, U, T0)),
    (0, site("bts-b", K, U, T0)),
    (2, site("bts-a", U, G, T0 + 2 * H, "power unit: on battery, ~60 min left")),
    (2, battery("bts-a", True, T0 + 2 * H)),
    (3, site("bts-a", G, D, T0 + 3 * H, "base station: no reply to ping (3/3 lost)")),
    (1.5, site("bts-b", U, D, T0 + 1.5 * H, "router: SNMP timeout on router")),
    (2.5, site("bts-b", D, U, T0 + 2.5 * H)),
    (4, site("bts-a", D, U, T0 + 4 * H)),
    (4.5, battery("bts-a", False, T0 + 4.5 * H)),
    (5, site("bts-b", U, D, T0 + 5 * H, "router: no reply to ping (3/3 lost)")),
    (6, site("bts-b", D, U, T0 + 6 * H)),
    (10, site("bts-a", U, X, T0 + 10 * H, "behind hub-maichau")),
    (11, site("bts-a", X, U, T0 + 11 * H)),
    (12, site("bts-c", K, U, T0 + 12 * H)),
    (20, site("bts-a", U, D, T0 + 20 * H, "base station: SNMP timeout on base station")),
    (20.5, site("bts-a", D, U, T0 + 20.5 * H)),
]
END = T0 + 24 * H


def ledger_config(tmp_path: Path) -> Any:
    sites = [
        {"id": "bts-a", "name": "Trạm Pà Cò", "district": "d1", "commune": "c2", "carrier": "vnpt"},
        {"id": "bts-b", "name": "Trạm Vạn Mai", "district": "d2", "carrier": "viettel"},
        {"id": "bts-c", "name": "Trạm Mới", "district": "d1", "commune": "c1", "carrier": "vnpt"},
    ]
    data = province_config(sites, listen="127.0.0.1:1")
    data["districts"].append({"id": "d2", "name": "Huyện Đà Bắc"})
    data["alerting"] = {
        "maintenance": [
            # site maintenance: bts-b, every day 01:00-03:00
            {"name": "bts-b-works", "matchers": {"site": "bts-b"}, "from": "01:00", "to": "03:00"},
            # mutes one alert name only: not site maintenance
            {"name": "mute-battery", "matchers": {"alertname": "OnBattery"}, "from": "00:00", "to": "24:00"},
        ]
    }
    return load_config(write_yaml(tmp_path / "config.yaml", data)).config


async def write_timeline(tmp_path: Path, db: Path) -> None:
    """Replay TIMELINE through a Ledger on a real store, as the daemon would, and stop at END."""
    now = [T0]
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, clock=lambda: now[0], flush_delay=0.0)
    await ledger.start(ledger_config(tmp_path))
    for at, change in sorted(TIMELINE, key=lambda e: e[0]):
        now[0] = T0 + at * H
        ledger.record([change])
        await ledger.flush()
    now[0] = END
    await ledger.stop()
    await store.close()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


async def test_timeline_becomes_intervals(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    await write_timeline(tmp_path, db)
    got = rows(
        db,
        "SELECT state, start_at, end_at, reason FROM ledger_site_interval"
        " WHERE site_id='bts-a' ORDER BY start_at",
    )
    hours = [(s, (a - T0) / H, (b - T0) / H) for s, a, b, _ in got]
    assert hours == [
        ("up", 0, 2),
        ("degraded", 2, 3),
        ("down", 3, 4),
        ("up", 4, 10),
        ("unreachable", 10, 11),
        ("up", 11, 20),
        ("down", 20, 20.5),
        ("up", 20.5, 24),  # closed by the stop
    ]
    assert got[2][3] == "base station: no reply to ping (3/3 lost)"
    spells = rows(db, "SELECT site_id, device_id, start_at, end_at FROM ledger_battery_interval")
    assert [(s, d, (a - T0) / H, (b - T0) / H) for s, d, a, b in spells] == [("bts-a", "power", 2, 4.5)]
    names = rows(db, "SELECT site_id, name, district, carrier FROM ledger_site ORDER BY site_id")
    assert names[0] == ("bts-a", "Trạm Pà Cò", "d1", "vnpt")
    # only the site-level window is written down, once a day from a day back to a week ahead (the
    # week ahead moves on as the clock does)
    maint = rows(db, "SELECT name, start_at, end_at FROM ledger_maintenance ORDER BY start_at")
    assert {m[0] for m in maint} == {"bts-b-works"}
    assert ("bts-b-works", T0 + 1 * H, T0 + 3 * H) in maint
    days = [dt.datetime.fromtimestamp(m[1], TZ) for m in maint]
    assert len(days) >= 8
    assert all((d.hour, d.minute) == (1, 0) for d in days)
    assert len({d.date() for d in days}) == len(days)


async def test_crash_closes_open_intervals_at_last_heartbeat(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    config = ledger_config(tmp_path)
    now = [T0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, clock=clock, flush_delay=0.0)
    await ledger.start(config)
    ledger.record([site("bts-a", K, U, T0), battery("bts-a", True, T0 + 60)])
    now[0] = T0 + 600
    await ledger.flush()  # writes the heartbeat at T0 + 600
    await store.close()  # "kill -9": no ledger.stop, intervals stay open

    now[0] = T0 + 7200
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, clock=clock, flush_delay=0.0)
    await ledger.start(config)
    await ledger.stop()
    await store.close()
    assert rows(db, "SELECT state, start_at, end_at FROM ledger_site_interval") == [("up", T0, T0 + 600)]
    assert rows(db, "SELECT start_at, end_at FROM ledger_battery_interval") == [(T0 + 60, T0 + 600)]


async def test_removed_site_stops_its_clock_and_version_moves(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    config = ledger_config(tmp_path)
    now = [T0]
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, clock=lambda: now[0], flush_delay=0.0)
    await ledger.start(config)
    v0 = ledger.version
    ledger.record([site("bts-c", K, U, T0)])
    assert await ledger.wait_changed(v0, timeout=0.01) > v0
    v1 = ledger.version
    # a check that is not the battery one changes nothing the ledger keeps
    ledger.record(
        [StateChange("check", "bts-c", "bts", "icmp.loss", CheckState.OK, CheckState.WARNING, "x", T0)]
    )
    assert await ledger.wait_changed(v1, timeout=0.01) == v1
    now[0] = T0 + 100
    ledger.reconfigure(config.model_copy(update={"sites": [s for s in config.sites if s.id != "bts-c"]}))
    now[0] = T0 + 200
    await ledger.stop()
    await store.close()
    assert rows(db, "SELECT end_at FROM ledger_site_interval WHERE site_id='bts-c'") == [(T0 + 100,)]
