"""Availability ledger: state changes, on-battery spells and maintenance, kept in SQLite for reports."""

from .ledger import SCHEMA, Interval, Ledger, LedgerStats, SiteHistory
from .maintenance import MaintenanceSpan, occurrences, site_labels, site_windows

__all__ = [
    "SCHEMA",
    "Interval",
    "Ledger",
    "LedgerStats",
    "MaintenanceSpan",
    "SiteHistory",
    "occurrences",
    "site_labels",
    "site_windows",
]
