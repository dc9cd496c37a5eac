"""SQLite behind a single dedicated thread.

Every statement runs on one thread that owns the connection, so the event loop never blocks on
disk and writes are serialized without locks. WAL with ``synchronous=FULL``: a transaction that
returned is on disk and survives ``kill -9`` and power loss. Components own their tables: each
calls :meth:`SqliteStore.migrate` with its ``CREATE TABLE IF NOT EXISTS`` statements at start.
The daemon opens its store ``exclusive``: see :mod:`.lock`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .lock import StateLock, StateLocked

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class StoreError(Exception):
    """The database file cannot be opened or used; the message names the file."""


class SqliteStore:
    """``exclusive``: hold the database's lock file for as long as it is open (the daemon does;
    readers such as reports do not)."""

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uptimewatch-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = StateLock(self.path) if exclusive and str(path) != ":memory:" else None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._lock is not None:
                self._lock.acquire()
        except StateLocked as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            where = self._lock.path if self._lock is not None else self.path
            why = exc.strerror or type(exc).__name__
            raise StoreError(f"cannot open the state store {self.path}: cannot lock {where}: {why}") from exc
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
        except (sqlite3.Error, OSError) as exc:
            if self._lock is not None:
                self._lock.release()
            # a read-only or full disk, a directory or a corrupt file in its place: say which file
            raise StoreError(f"cannot open the state store {self.path}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        if self._lock is not None:
            self._lock.release()  # after the last write: the next daemon may start now
        self._executor.shutdown(wait=True)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"store {self.path} is not open")
        return self._conn

    async def migrate(self, statements: Iterable[str]) -> None:
        stmts = list(statements)

        def apply() -> None:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for stmt in stmts:
                    conn.execute(stmt)

        try:
            await self._run(apply)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare the state store {self.path}: {exc}") from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction; returns lastrowid (inserts) or rowcount."""

        def run() -> int:
            cur = self._connection().execute(sql, params)
            return cur.lastrowid if cur.lastrowid else cur.rowcount

        return await self._run(run)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        batch = list(rows)

        def run() -> None:
            conn = self._connection()
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, batch)

        await self._run(run)

    async def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            conn = self._connection()
            conn.row_factory = sqlite3.Row
            try:
                return list(conn.execute(sql, params))
            finally:
                conn.row_factory = None

        return await self._run(run)

    async def transaction(self, func: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``func(conn)`` inside one IMMEDIATE transaction on the writer thread; commit or roll back."""

        def run() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = func(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(run)
