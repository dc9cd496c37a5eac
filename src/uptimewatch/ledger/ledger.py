"""The availability ledger: every hard site and device transition, on-battery spells and
maintenance occurrences, kept as intervals in the daemon's SQLite store.

``record`` is called from the ingest path for every batch of state changes: it only appends to
a list, and a single flush task writes what gathered in one transaction on the store's writer
thread, so a storm of thousands of transitions costs a handful of transactions, not one each.

Intervals are ``[start_at, end_at)`` with ``end_at`` NULL while open. A heartbeat row says until
when the daemon was watching: after a crash the intervals left open are closed at the last
heartbeat, so the time the daemon was not running reads as "no data", never as "up".

A failed write keeps its changes for the next attempt, up to ``max_pending`` (beyond that the
oldest are dropped and counted: a disk that stays full must not eat the daemon's memory). When
the store itself works (a heartbeat alone commits) the batch is split in halves until the rows
that fail on their own are found: those are dropped, logged and counted as ``poison``, and
everything else is written, so one bad row never holds back the transitions behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from ..i18n import Phrase, Text, phrase_dumps, phrase_loads
from ..model.checks import ON_BATTERY_CODE
from ..model.health import SiteState, StateChange
from ..store import SqliteStore
from ..supervisor import Supervisor
from .maintenance import occurrences, site_windows

log = logging.getLogger(__name__)

SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS ledger_site_interval (
        id INTEGER PRIMARY KEY,
        site_id TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        start_at REAL NOT NULL,
        end_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_site_interval_site ON ledger_site_interval (site_id, start_at)",
    "CREATE INDEX IF NOT EXISTS ledger_site_interval_open ON ledger_site_interval (end_at)"
    " WHERE end_at IS NULL",
    """CREATE TABLE IF NOT EXISTS ledger_device_interval (
        id INTEGER PRIMARY KEY,
        site_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        start_at REAL NOT NULL,
        end_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_device_interval_site ON ledger_device_interval"
    " (site_id, device_id, start_at)",
    """CREATE TABLE IF NOT EXISTS ledger_battery_interval (
        id INTEGER PRIMARY KEY,
        site_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        start_at REAL NOT NULL,
        end_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS ledger_battery_interval_site ON ledger_battery_interval (site_id, start_at)",
    """CREATE TABLE IF NOT EXISTS ledger_maintenance (
        name TEXT NOT NULL,
        start_at REAL NOT NULL,
        end_at REAL NOT NULL,
        matchers TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (name, start_at)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_site (
        site_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        district TEXT NOT NULL,
        commune TEXT,
        carrier TEXT NOT NULL,
        priority TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

BATTERY_CHECK: Final = "power.on_battery"
#: How far ahead recurring maintenance is written down, so a report of "this week" sees it.
MAINTENANCE_AHEAD_S: Final = 7 * 86400.0
MAINTENANCE_BEHIND_S: Final = 86400.0

Op = tuple[str, tuple[Any, ...]]
#: The most on-battery spells one site's history returns (the newest).
HISTORY_SPELLS: Final = 20


@dataclass(frozen=True, slots=True)
class Interval:
    """One recorded interval; ``end`` is None while it is still open."""

    state: str  # "down", "critical"...; "on_battery" for a battery spell
    reason: Phrase  # as recorded: rendered in the reader's language
    start: float
    end: float | None


@dataclass(frozen=True, slots=True)
class SiteHistory:
    """What the ledger holds about one site from ``start`` on (what the site page shows)."""

    start: float
    states: tuple[Interval, ...]
    devices: Mapping[str, tuple[Interval, ...]]
    battery: Mapping[str, tuple[Interval, ...]]  # per power device, oldest first


DEFAULT_MAX_PENDING: Final = 100_000


@dataclass(frozen=True, slots=True)
class LedgerStats:
    pending: int  # changes waiting to be written
    dropped: dict[str, int]  # by reason: "overflow", "poison"


def _word(state: object) -> str:
    """``SiteState.DOWN`` -> "down", ``CheckState.CRITICAL`` -> "critical"."""
    if isinstance(state, SiteState):
        return state.value
    name = getattr(state, "name", None)
    return str(name).lower() if name is not None else str(state)


class Ledger:
    """Records state changes; see the module docstring. ``version`` counts recorded batches, so
    the status page can tell "something changed" without looking at the whole snapshot."""

    def __init__(
        self,
        store: SqliteStore,
        *,
        clock: Callable[[], float] = time.time,
        flush_delay: float = 0.5,
        heartbeat_interval: float = 10.0,
        record_devices: bool = True,
        max_pending: int = DEFAULT_MAX_PENDING,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._max_pending = max_pending
        self._dropped = {"overflow": 0, "poison": 0}
        self._store = store
        self._clock = clock
        self._flush_delay = flush_delay
        self._heartbeat_interval = heartbeat_interval
        self._record_devices = record_devices
        self._pending: list[Op] = []
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sites: set[str] = set()
        self._maintenance_synced_at = 0.0
        self._config: Any = None
        self.version = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, config: Any) -> None:
        await self._store.migrate(SCHEMA)
        closed = await self._store.transaction(self._close_stale)
        if closed:
            log.info("ledger: closed %d intervals left open by an unclean stop", closed)
        self.reconfigure(config)
        await self.flush()
        self._task = self._supervisor.spawn(
            "ledger", self._run, vital=True, context=f"state store {self._store.path}"
        )

    async def stop(self) -> None:
        """Flush, then close every open interval now: the time until the next start is no data."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        now = self._clock()
        self._pending.append(("close_all", (now,)))
        await self.flush()

    # -- what the daemon feeds in ---------------------------------------------------------------

    def record(self, changes: Iterable[StateChange]) -> None:
        """Queue the hard transitions of one ingest; cheap, never blocks."""
        ops = self._pending
        before = len(ops)
        for c in changes:
            # reasons are kept as msgid + parameters (JSON), so a report can say them in any language
            if c.kind == "site":
                ops.append(("site", (c.site_id, _word(c.new), phrase_dumps(c.reason), c.at)))
            elif c.kind == "device":
                if self._record_devices:
                    ops.append(
                        ("device", (c.site_id, c.device_id, _word(c.new), phrase_dumps(c.reason), c.at))
                    )
            elif c.check == BATTERY_CHECK:
                # the check's reason says battery or mains whatever severity the thresholds give it
                reason = c.reason
                on_battery = (
                    reason.code == ON_BATTERY_CODE
                    if isinstance(reason, Text)
                    else reason.startswith("on battery")
                )
                ops.append(("battery", (c.site_id, c.device_id, on_battery, phrase_dumps(reason), c.at)))
        if len(ops) != before:
            self._bound()
            self._bump()
            self._wake.set()

    def reconfigure(self, config: Any) -> None:
        """A new configuration: remember site names, stop the clocks of removed sites, and write
        down the maintenance windows it declares."""
        self._config = config
        now = self._clock()
        current = {s.id for s in config.sites}
        for gone in sorted(self._sites - current):
            self._pending.append(("close_site", (gone, now)))
        self._sites = current
        self._pending.append(
            (
                "sites",
                tuple(
                    (s.id, s.name, s.district, s.commune, s.carrier, s.priority, now) for s in config.sites
                ),
            )
        )
        self._queue_maintenance(now)
        self._bump()
        self._wake.set()

    # -- change notification for the status page -------------------------------------------------

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, version: int, timeout: float) -> int:
        """Return as soon as ``self.version`` differs from ``version``, or after ``timeout``."""
        if self.version != version:
            return self.version
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        return self.version

    # -- reading ------------------------------------------------------------------------------

    async def site_history(self, site_id: str, start: float) -> SiteHistory:
        """The site's and its devices' intervals that overlap ``[start, now]``, and its last
        on-battery spells. Changes recorded in the last half second may not be written yet."""
        rows = await self._store.transaction(lambda conn: _read_site(conn, site_id, start))
        states, devices, battery = rows
        return SiteHistory(start, states, devices, battery)

    # -- writing -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_interval):
                    await self._wake.wait()
            # let a burst of transitions gather into one transaction
            await asyncio.sleep(self._flush_delay)
            self._wake.clear()
            try:
                now = self._clock()
                if now - self._maintenance_synced_at > 3600.0 and self._config is not None:
                    self._queue_maintenance(now)
                await self.flush()
            except Exception:
                # the store is failing (disk full, I/O error): the changes wait for the next pass
                log.exception("ledger: writing %d changes failed; retrying", len(self._pending))

    def stats(self) -> LedgerStats:
        return LedgerStats(len(self._pending), dict(self._dropped))

    def _bound(self) -> None:
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            del self._pending[:excess]
            self._dropped["overflow"] += excess
            log.error(
                "ledger: %d changes waiting, more than %d: dropped the %d oldest (the store keeps failing)",
                excess + self._max_pending,
                self._max_pending,
                excess,
            )

    async def flush(self) -> None:
        ops, self._pending = self._pending, []
        ops.append(("heartbeat", (self._clock(),)))
        try:
            await self._store.transaction(lambda conn: _apply(conn, ops))
        except asyncio.CancelledError:
            self._requeue(ops[:-1])
            raise
        except Exception as exc:
            heartbeat = ops[-1:]
            try:
                await self._store.transaction(lambda conn: _apply(conn, heartbeat))
            except BaseException:
                self._requeue(ops[:-1])  # the store fails, not a row: keep them all, in order
                raise exc from None
            poison = await self._salvage(ops[:-1])
            self._dropped["poison"] += len(poison)
            for op, args in poison:
                log.error("ledger: dropped a %s change that cannot be written: %r (%s)", op, args[:2], exc)

    def _requeue(self, ops: list[Op]) -> None:
        self._pending[:0] = ops  # before what arrived meanwhile: order is the intervals' meaning
        self._bound()

    async def _salvage(self, ops: list[Op]) -> list[Op]:
        """Write ``ops`` (whose batch failed) in halves, recursively; returns those that fail
        alone, in order. k bad rows among n cost about 2k log2(n) transactions."""
        poison: list[Op] = []
        middle = len(ops) // 2
        for part in (ops[:middle], ops[middle:]):
            if not part or await self._write(part):
                continue
            poison += part if len(part) == 1 else await self._salvage(part)
        return poison

    async def _write(self, ops: list[Op]) -> bool:
        try:
            await self._store.transaction(lambda conn: _apply(conn, ops))
        except Exception:
            return False
        return True

    def _queue_maintenance(self, now: float) -> None:
        config = self._config
        windows = site_windows(config)
        spans = occurrences(
            windows,
            ZoneInfo(config.province.timezone),
            now - MAINTENANCE_BEHIND_S,
            now + MAINTENANCE_AHEAD_S,
        )
        rows = tuple(
            (s.name, s.start, s.end, json.dumps(dict(s.matchers), sort_keys=True), s.comment) for s in spans
        )
        self._pending.append(("maintenance", (now, {w.name for w in windows}, rows)))
        self._maintenance_synced_at = now

    @staticmethod
    def _close_stale(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM ledger_meta WHERE key = 'heartbeat'").fetchone()
        last = float(row[0]) if row else None
        closed = 0
        for table in ("ledger_site_interval", "ledger_device_interval", "ledger_battery_interval"):
            if last is None:
                cur = conn.execute(f"UPDATE {table} SET end_at = start_at WHERE end_at IS NULL")
            else:
                cur = conn.execute(
                    f"UPDATE {table} SET end_at = max(start_at, ?) WHERE end_at IS NULL", (last,)
                )
            closed += cur.rowcount
        return closed


def _read_site(
    conn: sqlite3.Connection, site_id: str, start: float
) -> tuple[tuple[Interval, ...], dict[str, tuple[Interval, ...]], dict[str, tuple[Interval, ...]]]:
    states = tuple(
        Interval(state, phrase_loads(reason), s, e)
        for state, reason, s, e in conn.execute(
            "SELECT state, reason, start_at, end_at FROM ledger_site_interval"
            " WHERE site_id = ? AND (end_at IS NULL OR end_at > ?) ORDER BY start_at, id",
            (site_id, start),
        )
    )
    devices: dict[str, list[Interval]] = {}
    for device_id, *rest in conn.execute(
        "SELECT device_id, state, reason, start_at, end_at FROM ledger_device_interval"
        " WHERE site_id = ? AND (end_at IS NULL OR end_at > ?) ORDER BY start_at, id",
        (site_id, start),
    ):
        state, reason, s, e = rest
        devices.setdefault(device_id, []).append(Interval(state, phrase_loads(reason), s, e))
    battery: dict[str, list[Interval]] = {}
    for device_id, reason, s, e in conn.execute(
        "SELECT device_id, reason, start_at, end_at FROM ledger_battery_interval"
        " WHERE site_id = ? ORDER BY start_at DESC, id DESC LIMIT ?",
        (site_id, HISTORY_SPELLS),
    ):
        battery.setdefault(device_id, []).insert(0, Interval("on_battery", phrase_loads(reason), s, e))
    return (
        states,
        {k: tuple(v) for k, v in devices.items()},
        {k: tuple(v) for k, v in battery.items()},
    )


def _apply(conn: sqlite3.Connection, ops: list[Op]) -> None:
    """Runs on the store's writer thread, inside one transaction."""
    ex = conn.execute
    for op, args in ops:
        if op == "site":
            site_id, state, reason, at = args
            ex(
                "UPDATE ledger_site_interval SET end_at = ? WHERE site_id = ? AND end_at IS NULL",
                (at, site_id),
            )
            ex(
                "INSERT INTO ledger_site_interval (site_id, state, reason, start_at) VALUES (?, ?, ?, ?)",
                (site_id, state, reason, at),
            )
        elif op == "device":
            site_id, device_id, state, reason, at = args
            ex(
                "UPDATE ledger_device_interval SET end_at = ?"
                " WHERE site_id = ? AND device_id = ? AND end_at IS NULL",
                (at, site_id, device_id),
            )
            ex(
                "INSERT INTO ledger_device_interval (site_id, device_id, state, reason, start_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (site_id, device_id, state, reason, at),
            )
        elif op == "battery":
            site_id, device_id, on_battery, reason, at = args
            open_row = ex(
                "SELECT id FROM ledger_battery_interval"
                " WHERE site_id = ? AND device_id = ? AND end_at IS NULL",
                (site_id, device_id),
            ).fetchone()
            if on_battery and open_row is None:
                ex(
                    "INSERT INTO ledger_battery_interval (site_id, device_id, reason, start_at)"
                    " VALUES (?, ?, ?, ?)",
                    (site_id, device_id, reason, at),
                )
            elif not on_battery and open_row is not None:
                ex("UPDATE ledger_battery_interval SET end_at = ? WHERE id = ?", (at, open_row[0]))
        elif op == "close_site":
            site_id, at = args
            for table in ("ledger_site_interval", "ledger_device_interval", "ledger_battery_interval"):
                ex(f"UPDATE {table} SET end_at = ? WHERE site_id = ? AND end_at IS NULL", (at, site_id))
        elif op == "close_all":
            (at,) = args
            for table in ("ledger_site_interval", "ledger_device_interval", "ledger_battery_interval"):
                ex(f"UPDATE {table} SET end_at = max(start_at, ?) WHERE end_at IS NULL", (at,))
        elif op == "sites":
            conn.executemany(
                "INSERT INTO ledger_site (site_id, name, district, commune, carrier, priority, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET name = excluded.name,"
                " district = excluded.district, commune = excluded.commune, carrier = excluded.carrier,"
                " priority = excluded.priority, updated_at = excluded.updated_at",
                args,
            )
        elif op == "maintenance":
            now, names, rows = args
            # the past is history; only what has not begun yet follows the configuration
            ex("DELETE FROM ledger_maintenance WHERE start_at > ?", (now,))
            for (name,) in ex(
                "SELECT name FROM ledger_maintenance WHERE start_at <= ? AND end_at > ?", (now, now)
            ).fetchall():
                if name not in names:  # a window removed while it ran ends now
                    ex(
                        "UPDATE ledger_maintenance SET end_at = ?"
                        " WHERE name = ? AND start_at <= ? AND end_at > ?",
                        (now, name, now, now),
                    )
            conn.executemany(
                "INSERT OR IGNORE INTO ledger_maintenance (name, start_at, end_at, matchers, comment)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        elif op == "heartbeat":
            ex(
                "INSERT INTO ledger_meta (key, value) VALUES ('heartbeat', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(args[0]),),
            )
