"""Availability reports over the ledger: ``uptimewatch report``."""

from .compute import (
    GROUP_BY,
    Availability,
    CriticalReport,
    GroupBy,
    Incident,
    Ledger,
    Row,
    SiteInfo,
    Span,
    availability,
    critical_period,
    read_ledger,
)
from .render import Report, to_csv, to_html, to_markdown

__all__ = [
    "GROUP_BY",
    "Availability",
    "CriticalReport",
    "GroupBy",
    "Incident",
    "Ledger",
    "Report",
    "Row",
    "SiteInfo",
    "Span",
    "availability",
    "critical_period",
    "read_ledger",
    "to_csv",
    "to_html",
    "to_markdown",
]
