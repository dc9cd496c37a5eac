"""Durable state in SQLite: one database file, one writer thread, tables owned by their component."""

from .sqlite import SqliteStore, StoreError

__all__ = ["SqliteStore", "StoreError"]
