"""aiohttp application. It only reads the health snapshot and calls the daemon's reload; it never
polls, judges or holds state of its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..export.exposition import scrape
from ..i18n import normalize_language
from ..model.health import SiteStatus
from ..model.outages import outages, rechecking
from ..power import dispatch_list
from .context import ReloadResult, WebContext
from .csrf import middleware as csrf_middleware
from .jsonable import to_jsonable
from .status import setup_status
from .status.i18n import speaker

log = logging.getLogger(__name__)


__all__ = ["CONTEXT_KEY", "ReloadResult", "WebContext", "build_app"]

CONTEXT_KEY: web.AppKey[WebContext] = web.AppKey("context", WebContext)


def _site_summary(site: SiteStatus) -> dict[str, Any]:
    return {
        "id": site.site_id,
        "name": site.name,
        "district": site.district,
        "commune": site.commune,
        "carrier": site.carrier,
        "priority": site.priority,
        "state": to_jsonable(site.state),
        "reason": str(site.reason),
        "since": site.since,
        "devices": len(site.devices),
        "last_observed_at": last_observed_at(site),
    }


def last_observed_at(site: SiteStatus) -> float | None:
    """When the newest result of any probe of the site's devices started (unix seconds)."""
    stamps = [p.at for d in site.devices for p in d.probes.values()]
    return max(stamps) if stamps else None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


async def metrics(request: web.Request) -> web.Response:
    # the text is written in a worker thread, gzipped when the scraper accepts it (Prometheus does)
    ctx = request.app[CONTEXT_KEY]
    body, headers = await scrape(ctx.registry, request.headers.get("Accept-Encoding", ""), ctx.prepare_scrape)
    return web.Response(body=body, headers=headers)


def _placed(summary: dict[str, Any], ctx: WebContext) -> dict[str, Any]:
    """Name the nodes that poll the site, best first (the first owns it); alone, nothing is added."""
    nodes = ctx.site_pollers(summary["id"] if "id" in summary else summary["site_id"])
    if nodes:
        summary["owner"] = nodes[0]
        summary["polled_by"] = list(nodes)
    return summary


async def sites(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    snap = ctx.snapshot()
    filters = {k: request.query[k] for k in ("district", "commune", "carrier", "state") if k in request.query}
    out = []
    for site in snap.sites.values():
        summary = _placed(_site_summary(site), ctx)
        if all(str(summary[k]) == v for k, v in filters.items()):
            out.append(summary)
    return _json({"generated_at": snap.generated_at, "count": len(out), "sites": out})


async def site_detail(request: web.Request) -> web.Response:
    snap = request.app[CONTEXT_KEY].snapshot()
    site = snap.sites.get(request.match_info["site_id"])
    if site is None:
        return _json({"error": f"no site {request.match_info['site_id']!r}"}, status=404)
    return _json(_placed(to_jsonable(site), request.app[CONTEXT_KEY]))


async def summary(request: web.Request) -> web.Response:
    snap = request.app[CONTEXT_KEY].snapshot()
    return _json({"generated_at": snap.generated_at, "rollups": to_jsonable(snap.rollups)})


async def power_time_to_dark(request: web.Request) -> web.Response:
    """The generator dispatch list: sites on battery, soonest dark first, then those recharging."""
    ctx = request.app[CONTEXT_KEY]
    snap = ctx.snapshot()
    now = time.time()
    # reasons in English unless ?lang= asks otherwise (the status page asks in its language)
    lang = request.query.get("lang")
    say = speaker(normalize_language(lang, default="en"), None) if lang else str
    rows = dispatch_list(ctx.power.sites(), snap, now, say)
    on_battery = sum(1 for r in rows if r["status"] == "on_battery")
    return _json({"generated_at": now, "on_battery": on_battery, "count": len(rows), "sites": rows})


async def topology_outages(request: web.Request) -> web.Response:
    """Current root causes (failed hubs and links) with the sites and communes cut off behind each."""
    snap = request.app[CONTEXT_KEY].snapshot()
    found = outages(snap)
    return _json(
        {
            "generated_at": snap.generated_at,
            "count": len(found),
            "outages": to_jsonable(found),
            "rechecking": sorted(rechecking(snap)),
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ready, why = request.app[CONTEXT_KEY].readiness()
    return web.Response(text=why + "\n", status=200 if ready else 503)


async def reload(request: web.Request) -> web.Response:
    result = await request.app[CONTEXT_KEY].reload()
    return _json({"ok": result.ok, "message": result.message}, status=200 if result.ok else 400)


async def index(request: web.Request) -> web.Response:
    return web.Response(
        text="uptimewatch\n\n/metrics\n/api/v1/sites\n/api/v1/sites/{id}\n/api/v1/summary\n/healthz\n/readyz\n",
        content_type="text/plain",
    )


Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Any]


def build_app(context: WebContext) -> web.Application:
    # first of all middlewares: a forged request is refused before it costs a password check
    app = web.Application(middlewares=[csrf_middleware(context.trusted_origins)])
    app[CONTEXT_KEY] = context
    app.router.add_get("/api", index)  # "/" is the status page
    setup_status(app, CONTEXT_KEY)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/sites", sites)
    app.router.add_get("/api/v1/sites/{site_id}", site_detail)
    app.router.add_get("/api/v1/summary", summary)
    app.router.add_get("/api/v1/power/time-to-dark", power_time_to_dark)
    app.router.add_get("/api/v1/topology/outages", topology_outages)
    context.extend_app(app)  # components add their own routes and middlewares (alerts, silences, auth)
    return app
