"""Durable state in SQLite: one database file, one writer thread, tables owned by their component."""

from .sqlite import SqliteStore

__all__ = ["SqliteStore"]
