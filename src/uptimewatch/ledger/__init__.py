"""Availability ledger: state changes, on-battery spells and maintenance, kept in SQLite for reports."""

from .ledger import SCHEMA, Ledger, LedgerStats
from .maintenance import MaintenanceSpan, occurrences, site_labels, site_windows

__all__ = ["SCHEMA", "Ledger", "LedgerStats", "MaintenanceSpan", "occurrences", "site_labels", "site_windows"]
