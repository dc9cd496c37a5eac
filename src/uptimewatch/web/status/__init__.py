"""The operators' status page: plain HTML, CSS and one vanilla JS file, shipped as package data
and served by the daemon's aiohttp app, plus the JSON views behind it and the SSE feed.

Like the rest of the web side, it only reads the health snapshot. Parts built elsewhere (alerts,
time-to-dark, topology outages) are found by their routes at request time: the page asks for
them only when the daemon serves them, so it works before they exist and picks them up after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from ... import executors
from ...config.models import Config
from ...ledger import SiteHistory
from ...model.fields import LINK_OPER_UP, LINK_RX_LEVEL, LINK_SNR
from ...model.health import HealthSnapshot, Rollup, SiteStatus
from ...model.observation import FieldValue
from ..context import WebContext
from .i18n import page_catalog, page_language, speaker
from .views import TIMELINE_S, Say, map_view, power_of, site_page_view

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
#: Routes of optional parts the page uses when the daemon has them.
FEATURES: Final[dict[str, str]] = {
    "alerts": "/api/v1/alerts",
    "time_to_dark": "/api/v1/power/time-to-dark",
    "topology": "/api/v1/topology/outages",
}
PAGES: Final = ("/", "/status", "/status/", "/status/dispatch", "/status/alerts")
#: Path patterns of the pages that take an id (the page script reads the id from the path).
ID_PAGES: Final = ("/status/district/{district_id}", "/status/site/{site_id}")
#: Content types with an explicit charset, so Vietnamese text in any file decodes as UTF-8.
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
KEEPALIVE_S: Final = 15.0
MIN_EVENT_GAP_S: Final = 0.5  # a storm of transitions becomes one "changed" every half second


_ASSETS: web.AppKey[dict[str, bytes]] = web.AppKey("status_assets", dict)
_CONTEXT: web.AppKey[web.AppKey[WebContext]] = web.AppKey("status_context_key", web.AppKey)
_STOPPING: web.AppKey[asyncio.Event] = web.AppKey("status_stopping", asyncio.Event)


def setup_status(app: web.Application, context_key: web.AppKey[WebContext]) -> None:
    """Register the pages, the assets, ``/api/v1/status/...`` and ``/api/v1/events``."""
    app[_ASSETS] = {}
    app[_CONTEXT] = context_key
    app[_STOPPING] = asyncio.Event()

    async def page(request: web.Request) -> web.Response:
        return await _page(request)

    async def static(request: web.Request) -> web.Response:
        return await _asset(request, request.match_info["name"])

    def ctx(request: web.Request) -> WebContext:
        return request.app[context_key]

    async def overview(request: web.Request) -> web.Response:
        context = ctx(request)
        return _json(overview_view(context.snapshot(), context.ledger.version, _features(request)))

    async def district(request: web.Request) -> web.Response:
        context = ctx(request)
        view = district_view(
            context.snapshot(), request.match_info["district_id"], _battery_since(context), _say(request)
        )
        if view is None:
            return _json({"error": f"no district {request.match_info['district_id']!r}"}, status=404)
        return _json(view)

    async def dispatch(request: web.Request) -> web.Response:
        return _json(dispatch_view(ctx(request).snapshot(), _battery_since(ctx(request)), _say(request)))

    async def province_map(request: web.Request) -> web.Response:
        context = ctx(request)
        return _json(map_view(context.snapshot(), context.config.sites, _say(request)))

    async def site(request: web.Request) -> web.Response:
        return await _site_page(ctx(request), request.match_info["site_id"], _say(request))

    async def i18n(request: web.Request) -> web.Response:
        return _json(page_catalog(_language(request), _timezone(request)))

    async def events(request: web.Request) -> web.StreamResponse:
        return await _events(request, ctx(request))

    async def stopping(app: web.Application) -> None:
        app[_STOPPING].set()

    app.on_shutdown.append(stopping)
    for path in PAGES:
        app.router.add_get(path, page)
    for path in ID_PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/status/static/{name}", static)
    app.router.add_get("/api/v1/status/overview", overview)
    app.router.add_get("/api/v1/status/districts/{district_id}", district)
    app.router.add_get("/api/v1/status/dispatch", dispatch)
    app.router.add_get("/api/v1/status/map", province_map)
    app.router.add_get("/api/v1/status/sites/{site_id}", site)
    app.router.add_get("/api/v1/status/i18n", i18n)
    app.router.add_get("/api/v1/events", events)


# -- plumbing ------------------------------------------------------------------------------------


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps, headers={"Cache-Control": "no-store"})


async def _asset(request: web.Request, name: str) -> web.Response:
    kind = _TYPES.get(Path(name).suffix)
    if kind is None or name == "index.html":
        raise web.HTTPNotFound()
    body = await _asset_bytes(request, name)
    return web.Response(body=body, headers={"Content-Type": kind, "Cache-Control": "no-cache"})


async def _asset_bytes(request: web.Request, name: str) -> bytes:
    if "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    cache = request.app[_ASSETS]
    body = cache.get(name)
    if body is None:
        path = STATIC_DIR / name
        try:
            body = await executors.RENDER.run(path.read_bytes)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        cache[name] = body
    return body


def _battery_since(context: WebContext) -> dict[str, float]:
    return {
        sid: e.on_battery_since
        for sid, e in context.power.sites().items()
        if e.status == "on_battery" and e.on_battery_since is not None
    }


def _config(request: web.Request) -> Config:
    return request.app[request.app[_CONTEXT]].config


def _timezone(request: web.Request) -> str | None:
    return _config(request).province.timezone


def _language(request: web.Request) -> str:
    return page_language(request, _config(request).province.language)


def _say(request: web.Request) -> Say:
    return speaker(_language(request), _timezone(request))


async def _site_page(context: WebContext, site_id: str, say: Say) -> web.Response:
    snap: HealthSnapshot = context.snapshot()
    if site_id not in snap.sites:
        return _json({"error": f"no site {site_id!r}"}, status=404)
    now = time.time()
    history: SiteHistory | None = None
    try:
        history = await context.ledger.site_history(site_id, now - TIMELINE_S)
    except (sqlite3.Error, OSError) as exc:  # the page still shows the live state
        log.warning("site %s: cannot read the ledger: %s", site_id, exc)
    view = site_page_view(
        snap,
        site_id,
        now=now,
        config_site=next((s for s in context.config.sites if s.id == site_id), None),
        history=history,
        estimate=context.power.sites().get(site_id),
        ping=context.samples.ping(site_id),
        discharges=context.samples.discharges(site_id),
        say=say,
    )
    return _json(view)


async def _page(request: web.Request) -> web.Response:
    """index.html with the catalog of the reader's language rendered into it."""
    template = await _asset_bytes(request, "index.html")
    catalog = page_catalog(_language(request), _timezone(request))
    data = json.dumps(catalog, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    body = template.decode().replace("{{lang}}", catalog["lang"]).replace("{{catalog}}", data)
    return web.Response(
        text=body,
        headers={
            "Content-Type": _TYPES[".html"],
            "Cache-Control": "no-cache",
            "Vary": "Accept-Language, Cookie",
        },
    )


def _features(request: web.Request) -> dict[str, bool]:
    paths = {r.canonical for r in request.app.router.resources()}
    return {name: path in paths for name, path in FEATURES.items()}


async def _events(request: web.Request, context: WebContext) -> web.StreamResponse:
    """Server-sent events: ``changed`` with a version whenever a site or device changes state.

    The page refetches its JSON on each one; a comment line every 15 s keeps proxies from
    closing an idle stream.
    """
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx in front must not buffer the stream
        }
    )
    await resp.prepare(request)
    stopping = request.app[_STOPPING]
    ledger = context.ledger
    loop = asyncio.get_running_loop()

    async def send(version: int) -> None:
        await resp.write(f"retry: 3000\nevent: changed\ndata: {_dumps({'version': version})}\n\n".encode())

    version = ledger.version
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        await send(version)
        last_write = loop.time()
        while not stopping.is_set():
            new = await ledger.wait_changed(version, timeout=1.0)
            if new != version:
                version = new
                await send(version)
                last_write = loop.time()
                await asyncio.sleep(MIN_EVENT_GAP_S)
            elif loop.time() - last_write >= KEEPALIVE_S:
                await resp.write(b": keepalive\n\n")
                last_write = loop.time()
    return resp


# -- the views (pure functions of the snapshot, tested directly) ---------------------------------


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    return float(value)


def _counts(rollup: Rollup | None) -> dict[str, int]:
    if rollup is None:
        return {}
    return {str(state.value): n for state, n in rollup.counts.items()}


def _names(snap: HealthSnapshot, level: str) -> dict[str, str]:
    return {r.id: r.name for r in snap.rollups if r.level == level}


def links_of(site: SiteStatus) -> list[dict[str, Any]]:
    out = []
    for d in site.devices:
        f = d.fields
        rx, snr = _num(f.get(LINK_RX_LEVEL)), _num(f.get(LINK_SNR))
        if d.role.value != "link" and rx is None and snr is None:
            continue
        oper = f.get(LINK_OPER_UP)
        out.append(
            {
                "device": d.device_id,
                "name": d.name,
                "rx_level_dbm": rx,
                "snr_db": snr,
                "oper_up": oper if isinstance(oper, bool) else None,
                "state": d.state.name.lower(),
            }
        )
    return out


def overview_view(snap: HealthSnapshot, version: int, features: Mapping[str, bool]) -> dict[str, Any]:
    province = next((r for r in snap.rollups if r.level == "province"), None)
    on_battery: dict[str, int] = {}
    for site in snap.sites.values():
        power = power_of(site)
        if power is not None and power["on_battery"]:
            on_battery[site.district] = on_battery.get(site.district, 0) + 1
    districts = [
        {
            "id": r.id,
            "name": r.name,
            "state": r.state.value,
            "counts": _counts(r),
            "total": r.total,
            "on_battery": on_battery.get(r.id, 0),
        }
        for r in snap.rollups
        if r.level == "district" and r.total > 0
    ]
    return {
        "version": version,
        "generated_at": snap.generated_at,
        "province": {
            "id": province.id if province else "",
            "name": province.name if province else "",
            "state": province.state.value if province else "unknown",
            "counts": _counts(province),
            "total": province.total if province else 0,
        },
        "districts": districts,
        "on_battery": sum(on_battery.values()),
        "features": dict(features),
    }


def _site_view(
    site: SiteStatus,
    communes: Mapping[str, str],
    carriers: Mapping[str, str],
    on_battery_since: float | None = None,
    say: Say = str,
) -> dict[str, Any]:
    return {
        "id": site.site_id,
        "name": site.name,
        "commune": site.commune,
        "commune_name": communes.get(site.commune or "", site.commune),
        "carrier": site.carrier,
        "carrier_name": carriers.get(site.carrier, site.carrier),
        "priority": site.priority,
        "upstream": list(site.upstream),
        "state": site.state.value,
        "reason": say(site.reason),
        "since": site.since,
        "power": power_of(site, on_battery_since),
        "links": links_of(site),
    }


_STATE_ORDER: Final = {"down": 0, "unreachable": 1, "degraded": 2, "unknown": 3, "up": 4}
_PRIORITY_ORDER: Final = {"critical": 0, "high": 1, "normal": 2, "low": 3}


def district_view(
    snap: HealthSnapshot,
    district_id: str,
    on_battery_since: Mapping[str, float] | None = None,
    say: Say = str,
) -> dict[str, Any] | None:
    rollup = next((r for r in snap.rollups if r.level == "district" and r.id == district_id), None)
    if rollup is None:
        return None
    communes = {r.id: r.name for r in snap.rollups if r.level == "commune" and r.parent == district_id}
    carriers = _names(snap, "carrier")
    since = on_battery_since or {}
    sites = [
        _site_view(s, communes, carriers, since.get(s.site_id), say)
        for s in snap.sites.values()
        if s.district == district_id
    ]
    sites.sort(
        key=lambda s: (_STATE_ORDER.get(s["state"], 9), _PRIORITY_ORDER.get(s["priority"], 9), s["name"])
    )
    return {
        "generated_at": snap.generated_at,
        "id": rollup.id,
        "name": rollup.name,
        "state": rollup.state.value,
        "counts": _counts(rollup),
        "sites": sites,
    }


def dispatch_view(
    snap: HealthSnapshot, on_battery_since: Mapping[str, float] | None = None, say: Say = str
) -> dict[str, Any]:
    """Sites on battery, fewest battery minutes first (unknown minutes last); the page re-ranks
    by time-to-dark when the daemon estimates it. ``on_battery_since``: per site, since when,
    as the time-to-dark tracker saw it."""
    since = on_battery_since or {}
    districts = _names(snap, "district")
    carriers = _names(snap, "carrier")
    out: list[dict[str, Any]] = []
    for site in snap.sites.values():
        power = power_of(site, since.get(site.site_id))
        if power is None or not power["on_battery"]:
            continue
        out.append(
            {
                "id": site.site_id,
                "name": site.name,
                "district": site.district,
                "district_name": districts.get(site.district, site.district),
                "carrier_name": carriers.get(site.carrier, site.carrier),
                "priority": site.priority,
                "state": site.state.value,
                "reason": say(site.reason),
                "since": site.since,
                "power": power,
            }
        )
    out.sort(
        key=lambda s: (
            s["power"]["battery_minutes"] is None,
            s["power"]["battery_minutes"] or 0.0,
            _PRIORITY_ORDER.get(s["priority"], 9),
            s["name"],
        )
    )
    return {"generated_at": snap.generated_at, "count": len(out), "sites": out}
