"""The alert engine's tables (``alert_*``) in the daemon's SQLite store.

Write order, which makes a crash at any point harmless:

1. one transaction holds everything a step decided: the changed alerts, groups and silences, the
   history rows, and the notices to hand over (``alert_outbound``);
2. the notices are handed to the sink (the durable outbox), which drops an id it already has;
3. the ``alert_outbound`` rows are deleted.

A crash before 1 loses nothing that anybody heard of: the engine decides again from the restored
state. A crash between 1 and 3 re-hands the same notices (same ids) at the next start, and the
sink keeps one of each. So no firing notice is sent twice and no resolved notice is lost.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..notify.types import Notification
from ..store import SqliteStore
from .engine import Alert, EngineState, Group
from .routing import Policy
from .silences import Silence

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alert_state (
        fingerprint TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_group (
        key TEXT PRIMARY KEY,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_silence (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        fingerprint TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS alert_history_fp ON alert_history (fingerprint, at)",
    """CREATE TABLE IF NOT EXISTS alert_outbound (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        data TEXT NOT NULL
    )""",
)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    at: float
    fingerprint: str
    name: str
    event: str
    detail: dict[str, Any]


def history_of(
    old: EngineState, new: EngineState, notes: Sequence[Notification], now: float
) -> list[HistoryRow]:
    """What changed between two states, as rows a person can audit later."""
    rows: list[HistoryRow] = []
    for fp, a in new.alerts.items():
        before = old.alerts.get(fp)
        if before is None or before.state != a.state:
            rows.append(
                HistoryRow(now, fp, a.name, a.state, {"summary": str(a.summary), "labels": dict(a.labels)})
            )
        if a.ack_by is not None and (before is None or before.ack_at != a.ack_at):
            rows.append(
                HistoryRow(now, fp, a.name, "acknowledged", {"by": a.ack_by, "comment": a.ack_comment})
            )
    for sid, s in new.silences.items():
        before_s = old.silences.get(sid)
        if before_s is None:
            rows.append(HistoryRow(now, sid, "silence", "silence_added", s.to_dict()))
        elif before_s.ends_at != s.ends_at:
            rows.append(HistoryRow(now, sid, "silence", "silence_expired", s.to_dict()))
    for n in notes:
        for info in n.alerts:
            rows.append(
                HistoryRow(
                    now, info.fingerprint, info.name, f"notice:{n.kind}", {"receiver": n.receiver, "id": n.id}
                )
            )
    return rows


class AlertStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._seq = 0

    async def open(self) -> None:
        await self._store.migrate(SCHEMA)

    async def load(self, policy: Policy) -> EngineState:
        alerts = {
            r["fingerprint"]: Alert.from_dict(json.loads(r["data"]))
            for r in await self._store.query("SELECT fingerprint, data FROM alert_state")
        }
        groups = {
            r["key"]: Group.from_dict(json.loads(r["data"]))
            for r in await self._store.query("SELECT key, data FROM alert_group")
        }
        silences = {
            r["id"]: Silence.from_dict(json.loads(r["data"]))
            for r in await self._store.query("SELECT id, data FROM alert_silence")
        }
        meta = {r["key"]: r["value"] for r in await self._store.query("SELECT key, value FROM alert_meta")}
        heartbeat = float(meta["heartbeat_at"]) if "heartbeat_at" in meta else None
        return EngineState(policy, alerts, groups, silences, heartbeat)

    async def outbound(self) -> list[Notification]:
        rows = await self._store.query("SELECT data, seq FROM alert_outbound ORDER BY seq")
        if rows:
            self._seq = max(self._seq, *(int(r["seq"]) for r in rows))
        return [Notification.from_dict(json.loads(r["data"])) for r in rows]

    async def save(
        self, old: EngineState, new: EngineState, notes: Sequence[Notification], now: float
    ) -> None:
        """Persist one step: the state diff, its history and its notices, in one transaction."""
        upserts = [(fp, _dumps(a.to_dict()), now) for fp, a in new.alerts.items() if old.alerts.get(fp) != a]
        deletes = [(fp,) for fp in old.alerts if fp not in new.alerts]
        groups = [(k, _dumps(g.to_dict())) for k, g in new.groups.items() if old.groups.get(k) != g]
        gone_groups = [(k,) for k in old.groups if k not in new.groups]
        silences = [(k, _dumps(s.to_dict())) for k, s in new.silences.items() if old.silences.get(k) != s]
        gone_silences = [(k,) for k in old.silences if k not in new.silences]
        history = history_of(old, new, notes, now)
        outbound = []
        for n in notes:
            self._seq += 1
            outbound.append((n.id, self._seq, _dumps(n.to_dict())))
        heartbeat = new.heartbeat_at if new.heartbeat_at != old.heartbeat_at else None
        if (
            not (
                upserts
                or deletes
                or groups
                or gone_groups
                or silences
                or gone_silences
                or history
                or outbound
            )
            and heartbeat is None
        ):
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO alert_state (fingerprint, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (fingerprint) DO UPDATE SET "
                "data = excluded.data, updated_at = excluded.updated_at",
                upserts,
            )
            conn.executemany("DELETE FROM alert_state WHERE fingerprint = ?", deletes)
            conn.executemany("INSERT OR REPLACE INTO alert_group (key, data) VALUES (?, ?)", groups)
            conn.executemany("DELETE FROM alert_group WHERE key = ?", gone_groups)
            conn.executemany("INSERT OR REPLACE INTO alert_silence (id, data) VALUES (?, ?)", silences)
            conn.executemany("DELETE FROM alert_silence WHERE id = ?", gone_silences)
            conn.executemany(
                "INSERT INTO alert_history (at, fingerprint, name, event, detail) VALUES (?, ?, ?, ?, ?)",
                [(h.at, h.fingerprint, h.name, h.event, _dumps(h.detail)) for h in history],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO alert_outbound (id, seq, data) VALUES (?, ?, ?)", outbound
            )
            if heartbeat is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO alert_meta (key, value) VALUES ('heartbeat_at', ?)",
                    (repr(heartbeat),),
                )

        await self._store.transaction(write)

    async def handed(self, ids: Iterable[str]) -> None:
        await self._store.executemany("DELETE FROM alert_outbound WHERE id = ?", [(i,) for i in ids])

    async def history(self, fingerprint: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if fingerprint is None:
            rows = await self._store.query(
                "SELECT at, fingerprint, name, event, detail FROM alert_history ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = await self._store.query(
                "SELECT at, fingerprint, name, event, detail FROM alert_history WHERE fingerprint = ? "
                "ORDER BY id DESC LIMIT ?",
                (fingerprint, limit),
            )
        return [
            {
                "at": r["at"],
                "fingerprint": r["fingerprint"],
                "name": r["name"],
                "event": r["event"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]
