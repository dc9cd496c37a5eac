"""The daemon's HTTP side: /metrics, the JSON API, health endpoints and reload."""

from .app import WebContext, build_app

__all__ = ["WebContext", "build_app"]
