"""Availability ledger: state changes, on-battery spells and maintenance, kept in SQLite for reports."""

from .ledger import SCHEMA, Interval, Ledger, SiteHistory
from .maintenance import MaintenanceSpan, occurrences, site_labels, site_windows

__all__ = [
    "SCHEMA",
    "Interval",
    "Ledger",
    "MaintenanceSpan",
    "SiteHistory",
    "occurrences",
    "site_labels",
    "site_windows",
]
