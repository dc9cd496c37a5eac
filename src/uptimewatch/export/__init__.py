"""Exporters: render the health snapshot for other systems (Prometheus, at scrape time)."""

from .metrics import HealthCollector, RuntimeInfo, build_registry

__all__ = ["HealthCollector", "RuntimeInfo", "build_registry"]
