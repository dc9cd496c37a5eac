"""The durable outbox: one row per (notification, channel), in SQLite through the store's writer.

:meth:`Outbox.enqueue` returns once the rows are committed (WAL, synchronous=FULL), so a notice
that was enqueued survives ``kill -9``; the dispatcher picks pending rows up at start. A row
leaves ``pending`` only as ``sent`` (the channel's peer accepted it), ``failed`` (the peer refused
it for good) or ``expired`` (older than ``expire_after``). Delivery is at least once: a crash
between the peer's acceptance and the ``sent`` update resends, with the same notification id.

Tables (owned here, prefixed ``outbox_``):

- ``outbox_delivery``: the rows; ``order_keys`` are the fingerprints of the notice's alerts, which
  the dispatcher uses to keep each alert's notices in order within a channel;
- ``outbox_thread``: per channel and alert group, the first firing notice, which later notices of
  the group reply to (email threading), and the alerts still firing in that thread;
- ``outbox_channel_state``: since when a channel fails and whether that was announced, so a
  restart neither repeats the ChannelFailing notice nor forgets to resolve it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..redact import redact
from .types import Notification

log = logging.getLogger(__name__)

Final = Literal["sent", "failed", "expired"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox_delivery (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        notification_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        order_keys TEXT NOT NULL,
        payload TEXT NOT NULL,
        thread_root TEXT,
        created_at REAL NOT NULL,
        next_attempt REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT,
        done_at REAL,
        UNIQUE (notification_id, channel)
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_delivery_pending ON outbox_delivery (status, channel, id)",
    """CREATE TABLE IF NOT EXISTS outbox_thread (
        channel TEXT NOT NULL,
        group_key TEXT NOT NULL,
        root_id TEXT NOT NULL,
        firing TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (channel, group_key)
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_channel_state (
        channel TEXT PRIMARY KEY,
        failing_since REAL,
        last_error TEXT,
        announced_id TEXT
    )""",
)


class Store(Protocol):
    """The part of :class:`uptimewatch.store.SqliteStore` the outbox uses."""

    async def migrate(self, statements: Iterable[str]) -> None: ...
    async def execute(self, sql: str, params: Any = ()) -> int: ...
    async def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]: ...
    async def transaction(self, func: Callable[[sqlite3.Connection], Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class PendingRow:
    id: int
    channel: str
    notification: Notification
    order_keys: frozenset[str]
    thread_root: str | None
    created_at: float
    next_attempt: float
    attempts: int


@dataclass(frozen=True, slots=True)
class ChannelState:
    failing_since: float | None
    last_error: str | None
    announced_id: str | None


def order_keys(n: Notification) -> str:
    """The alerts whose notices must not overtake each other; the group when a notice has none."""
    keys = sorted({a.fingerprint for a in n.alerts if a.fingerprint})
    return " ".join(keys) if keys else f"group:{n.group_key}"


def _thread_root(conn: sqlite3.Connection, channel: str, n: Notification) -> str | None:
    """The id the notice replies to, or None when it starts a thread (or there is none).

    A thread lives from the group's first firing notice until every alert seen firing in it
    was seen resolved; the next firing notice of the group starts a new one.
    """
    row = conn.execute(
        "SELECT root_id, firing FROM outbox_thread WHERE channel = ? AND group_key = ?",
        (channel, n.group_key),
    ).fetchone()
    root: str | None = row[0] if row else None
    firing = set(row[1].split()) if row else set()
    firing |= {a.fingerprint for a in n.alerts if a.state == "firing"}
    firing -= {a.fingerprint for a in n.alerts if a.state == "resolved"}
    if root is None:
        if n.kind != "firing" or not firing:
            return None
        conn.execute(
            "INSERT INTO outbox_thread (channel, group_key, root_id, firing) VALUES (?, ?, ?, ?)",
            (channel, n.group_key, n.id, " ".join(sorted(firing))),
        )
        return None
    if firing:
        conn.execute(
            "UPDATE outbox_thread SET firing = ? WHERE channel = ? AND group_key = ?",
            (" ".join(sorted(firing)), channel, n.group_key),
        )
    else:
        conn.execute("DELETE FROM outbox_thread WHERE channel = ? AND group_key = ?", (channel, n.group_key))
    return root


class Outbox:
    """Where the alert engine hands notices over: ``await outbox.enqueue(notifications)``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.clock = clock
        self._routes: dict[str, tuple[str, ...]] = {}
        self._listeners: list[Callable[[Collection[str]], None]] = []
        self._final_listeners: list[Callable[[str, str], None]] = []

    async def open(self) -> None:
        await self._store.migrate(SCHEMA)

    def set_routes(self, routes: Mapping[str, Sequence[str]]) -> None:
        """Receiver name -> its channel keys (``<receiver>/<kind>``)."""
        self._routes = {name: tuple(channels) for name, channels in routes.items()}

    @property
    def routes(self) -> Mapping[str, tuple[str, ...]]:
        return self._routes

    def add_listener(self, listener: Callable[[Collection[str]], None]) -> None:
        """``listener(channels)`` is called after rows for those channels were committed."""
        self._listeners.append(listener)

    async def enqueue(self, notifications: Iterable[Notification]) -> int:
        """Write one row per channel of each notice's receiver, all in one transaction; returns the
        number of new rows. A notice whose id was enqueued before is not written again."""
        items: list[tuple[Notification, tuple[str, ...]]] = []
        for n in notifications:
            channels = self._routes.get(n.receiver)
            if channels is None:
                log.error(
                    "notice %s (%s, group %s) names receiver '%s', which is not configured: dropped",
                    n.id,
                    n.title,
                    n.group_key,
                    n.receiver,
                )
                continue
            items.append((n, channels))
        return await self._write(items)

    async def enqueue_to(self, notification: Notification, channels: Sequence[str]) -> int:
        """Enqueue for the given channels rather than the receiver's (the dispatcher's own notices)."""
        return await self._write([(notification, tuple(channels))])

    async def _write(self, items: list[tuple[Notification, tuple[str, ...]]]) -> int:
        if not items:
            return 0
        now = self.clock()

        def write(conn: sqlite3.Connection) -> int:
            written = 0
            for n, channels in items:
                payload = json.dumps(n.to_dict(), ensure_ascii=False, separators=(",", ":"))
                keys = order_keys(n)
                for channel in channels:
                    seen = conn.execute(
                        "SELECT 1 FROM outbox_delivery WHERE notification_id = ? AND channel = ?",
                        (n.id, channel),
                    ).fetchone()
                    if seen:
                        continue
                    conn.execute(
                        "INSERT INTO outbox_delivery (notification_id, channel, order_keys, payload,"
                        " thread_root, created_at, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (n.id, channel, keys, payload, _thread_root(conn, channel, n), now, now),
                    )
                    written += 1
            return written

        written: int = await self._store.transaction(write)
        touched = {c for _, channels in items for c in channels}
        for listener in self._listeners:
            listener(touched)
        return written

    # -- what the dispatcher reads and records -------------------------------------------------

    async def pending(self, channel: str, limit: int = 1000) -> list[PendingRow]:
        rows = await self._store.query(
            "SELECT id, channel, order_keys, payload, thread_root, created_at, next_attempt, attempts"
            " FROM outbox_delivery WHERE status = 'pending' AND channel = ? ORDER BY id LIMIT ?",
            (channel, limit),
        )
        return [
            PendingRow(
                id=r["id"],
                channel=r["channel"],
                notification=Notification.from_dict(json.loads(r["payload"])),
                order_keys=frozenset(r["order_keys"].split()),
                thread_root=r["thread_root"],
                created_at=r["created_at"],
                next_attempt=r["next_attempt"],
                attempts=r["attempts"],
            )
            for r in rows
        ]

    async def record_retry(self, row_id: int, next_attempt: float, error: str) -> None:
        await self._store.execute(
            "UPDATE outbox_delivery SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
            " WHERE id = ? AND status = 'pending'",
            (next_attempt, redact(error)[:500], row_id),
        )

    def add_final_listener(self, listener: Callable[[str, str], None]) -> None:
        """``listener(notification_id, channel)`` is called once a delivery left ``pending``."""
        self._final_listeners.append(listener)

    async def finish(self, row: PendingRow, status: Final, error: str | None = None) -> None:
        """:meth:`record_final` for a row the dispatcher holds, and tell the listeners."""
        await self.record_final(row.id, status, error)
        for listener in self._final_listeners:
            listener(row.notification.id, row.channel)

    async def is_final(self, notification_id: str, channel: str) -> bool:
        """Whether that delivery is recorded here and no longer pending."""
        rows = await self._store.query(
            "SELECT status FROM outbox_delivery WHERE notification_id = ? AND channel = ?",
            (notification_id, channel),
        )
        return bool(rows) and rows[0]["status"] != "pending"

    async def record_final(self, row_id: int, status: Final, error: str | None = None) -> None:
        await self._store.execute(
            "UPDATE outbox_delivery SET status = ?, attempts = attempts + ?, last_error = ?, done_at = ?"
            " WHERE id = ? AND status = 'pending'",
            (
                status,
                0 if status == "expired" else 1,
                None if error is None else redact(error)[:500],
                self.clock(),
                row_id,
            ),
        )

    async def depths(self) -> dict[str, tuple[int, float]]:
        """Per channel with pending rows: (how many, created_at of the oldest)."""
        rows = await self._store.query(
            "SELECT channel, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox_delivery"
            " WHERE status = 'pending' GROUP BY channel"
        )
        return {r["channel"]: (int(r["n"]), float(r["oldest"])) for r in rows}

    async def history(self, notification_id: str | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (newest last), for tests and troubleshooting."""
        where, params = ("WHERE notification_id = ?", (notification_id,)) if notification_id else ("", ())
        rows = await self._store.query(
            "SELECT id, notification_id, channel, status, attempts, last_error, created_at, done_at"
            f" FROM outbox_delivery {where} ORDER BY id",
            params,
        )
        return [dict(r) for r in rows]

    async def expire_orphans(self, configured: Collection[str], older_than: float) -> int:
        """Pending rows of channels no longer configured, queued before ``older_than``: expired."""
        marks = ",".join("?" * len(configured))
        sql = (
            "UPDATE outbox_delivery SET status = 'expired', done_at = ?,"
            " last_error = 'channel not configured' WHERE status = 'pending' AND created_at < ?"
        )
        if configured:
            sql += f" AND channel NOT IN ({marks})"
        params = (self.clock(), older_than, *configured)
        return await self._rowcount(sql, params)

    async def purge(self, done_before: float) -> int:
        return await self._rowcount(
            "DELETE FROM outbox_delivery WHERE status != 'pending' AND done_at < ?", (done_before,)
        )

    async def _rowcount(self, sql: str, params: Sequence[Any]) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        count: int = await self._store.transaction(run)
        return count

    # -- channel health ----------------------------------------------------------------------

    async def channel_states(self) -> dict[str, ChannelState]:
        rows = await self._store.query(
            "SELECT channel, failing_since, last_error, announced_id FROM outbox_channel_state"
        )
        return {
            r["channel"]: ChannelState(r["failing_since"], r["last_error"], r["announced_id"]) for r in rows
        }

    async def save_channel_state(self, channel: str, state: ChannelState) -> None:
        if state.failing_since is None:
            await self._store.execute("DELETE FROM outbox_channel_state WHERE channel = ?", (channel,))
            return
        await self._store.execute(
            "INSERT INTO outbox_channel_state (channel, failing_since, last_error, announced_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET failing_since = excluded.failing_since,"
            " last_error = excluded.last_error, announced_id = excluded.announced_id",
            (channel, state.failing_since, redact(state.last_error or "")[:500], state.announced_id),
        )
