"""What the web side reads from the daemon: one typed protocol, so a handler never probes for a
part with ``getattr`` and a daemon missing one fails the type check, not a request at run time.

A leaf of the web package: the JSON API (``app.py``) and the status page (``status/``) both
import it, and it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..config.models import Config
from ..ledger import SiteHistory
from ..model.health import HealthSnapshot
from ..model.history import Discharge, PingSeries
from ..power import TimeToDark


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    message: str


class PowerView(Protocol):
    def sites(self) -> dict[str, TimeToDark]:
        """One time-to-dark estimate per site (sites without a power plant are absent)."""
        ...


class SamplesView(Protocol):
    """The recent samples behind the site page's charts."""

    def ping(self, site_id: str) -> list[PingSeries]: ...

    def discharges(self, site_id: str) -> list[Discharge]: ...


class LedgerView(Protocol):
    """The state history: a version that moves with every hard change, and one site's timeline."""

    @property
    def version(self) -> int: ...

    async def wait_changed(self, version: int, timeout: float) -> int: ...

    async def site_history(self, site_id: str, start: float) -> SiteHistory: ...


class WebContext(Protocol):
    """The daemon as the web side sees it; :class:`uptimewatch.app.Daemon` is the one in use."""

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def config(self) -> Config:
        """The running configuration (names, coordinates, language, trusted origins)."""
        ...

    @property
    def power(self) -> PowerView: ...

    @property
    def samples(self) -> SamplesView: ...

    @property
    def ledger(self) -> LedgerView: ...

    def snapshot(self) -> HealthSnapshot: ...

    def prepare_scrape(self) -> bool:
        """One bounded step of the work a scrape would do on the loop; True while more remains."""
        ...

    def readiness(self) -> tuple[bool, str]: ...

    async def reload(self) -> ReloadResult: ...

    def trusted_origins(self) -> list[str]: ...

    def site_pollers(self, site_id: str) -> tuple[str, ...]:
        """The nodes that poll a site, best first (the first owns it and exports its metrics);
        () for a daemon that runs alone, whose sites then carry no such fields."""
        ...

    def extend_app(self, app: web.Application) -> None:
        """Let the parts that serve their own routes (alerts, the cluster) add them."""
        ...
