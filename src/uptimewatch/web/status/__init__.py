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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from aiohttp import web

from ... import executors
from ...model.health import HealthSnapshot, Rollup, SiteStatus
from ...model.observation import FieldValue

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
#: Routes of optional parts the page uses when the daemon has them.
FEATURES: Final[dict[str, str]] = {
    "alerts": "/api/v1/alerts",
    "time_to_dark": "/api/v1/power/time-to-dark",
    "topology": "/api/v1/topology/outages",
}
PAGES: Final = ("/", "/status", "/status/", "/status/dispatch", "/status/alerts")
#: Content types with an explicit charset, so Vietnamese text in any file decodes as UTF-8.
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
KEEPALIVE_S: Final = 15.0
MIN_EVENT_GAP_S: Final = 0.5  # a storm of transitions becomes one "changed" every half second


class _Source(Protocol):
    def snapshot(self) -> HealthSnapshot: ...


class _Versioned(Protocol):
    version: int

    async def wait_changed(self, version: int, timeout: float) -> int: ...


_ASSETS: web.AppKey[dict[str, bytes]] = web.AppKey("status_assets", dict)
_STOPPING: web.AppKey[asyncio.Event] = web.AppKey("status_stopping", asyncio.Event)


def setup_status(app: web.Application, context_key: web.AppKey[Any]) -> None:
    """Register the pages, the assets, ``/api/v1/status/...`` and ``/api/v1/events``."""
    app[_ASSETS] = {}
    app[_STOPPING] = asyncio.Event()

    async def page(request: web.Request) -> web.Response:
        return await _asset(request, "index.html")

    async def static(request: web.Request) -> web.Response:
        return await _asset(request, request.match_info["name"])

    def ctx(request: web.Request) -> Any:
        return request.app[context_key]

    async def overview(request: web.Request) -> web.Response:
        return _json(overview_view(ctx(request).snapshot(), _version(ctx(request)), _features(request)))

    async def district(request: web.Request) -> web.Response:
        view = district_view(ctx(request).snapshot(), request.match_info["district_id"])
        if view is None:
            return _json({"error": f"no district {request.match_info['district_id']!r}"}, status=404)
        return _json(view)

    async def dispatch(request: web.Request) -> web.Response:
        return _json(dispatch_view(ctx(request).snapshot()))

    async def events(request: web.Request) -> web.StreamResponse:
        return await _events(request, ctx(request))

    async def stopping(app: web.Application) -> None:
        app[_STOPPING].set()

    app.on_shutdown.append(stopping)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/status/district/{district_id}", page)
    app.router.add_get("/status/static/{name}", static)
    app.router.add_get("/api/v1/status/overview", overview)
    app.router.add_get("/api/v1/status/districts/{district_id}", district)
    app.router.add_get("/api/v1/status/dispatch", dispatch)
    app.router.add_get("/api/v1/events", events)


# -- plumbing ------------------------------------------------------------------------------------


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps, headers={"Cache-Control": "no-store"})


async def _asset(request: web.Request, name: str) -> web.Response:
    kind = _TYPES.get(Path(name).suffix)
    if kind is None or "/" in name or name.startswith("."):
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
    return web.Response(body=body, headers={"Content-Type": kind, "Cache-Control": "no-cache"})


def _version(context: Any) -> int:
    ledger = getattr(context, "ledger", None)
    return int(getattr(ledger, "version", 0))


def _features(request: web.Request) -> dict[str, bool]:
    paths = {r.canonical for r in request.app.router.resources()}
    return {name: path in paths for name, path in FEATURES.items()}


async def _events(request: web.Request, context: Any) -> web.StreamResponse:
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
    ledger: _Versioned | None = getattr(context, "ledger", None)
    loop = asyncio.get_running_loop()

    async def send(version: int) -> None:
        await resp.write(f"retry: 3000\nevent: changed\ndata: {_dumps({'version': version})}\n\n".encode())

    version = ledger.version if ledger is not None else 0
    snap = context.snapshot() if ledger is None else None
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        await send(version)
        last_write = loop.time()
        while not stopping.is_set():
            if ledger is not None:
                new = await ledger.wait_changed(version, timeout=1.0)
            else:
                # without a ledger, any new snapshot is news (coarser, but correct)
                await asyncio.sleep(1.0)
                current = context.snapshot()
                new = version + 1 if current is not snap else version
                snap = current
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


def power_of(site: SiteStatus) -> dict[str, Any] | None:
    """The site's power plant as the dispatch list needs it; None without a power device."""
    powers = [d for d in site.devices if d.role.value == "power"]
    if not powers:
        return None
    on_battery = any(d.fields.get("power.on_battery") is True for d in powers)
    chosen = next((d for d in powers if d.fields.get("power.on_battery") is True), powers[0])
    f: Mapping[str, FieldValue] = chosen.fields
    source = f.get("power.source")
    known = "power.on_battery" in f
    return {
        "device": chosen.device_id,
        "on_battery": on_battery if known or on_battery else None,
        "source": source if isinstance(source, str) else ("battery" if on_battery else None),
        "battery_minutes": _num(f.get("power.battery_minutes_remaining")),
        "charge_percent": _num(f.get("power.battery_charge_percent")),
        "voltage_volts": _num(f.get("power.battery_voltage_volts")),
        "on_battery_seconds": _num(f.get("power.on_battery_seconds")),
        "reachable": chosen.reachable,
    }


def links_of(site: SiteStatus) -> list[dict[str, Any]]:
    out = []
    for d in site.devices:
        f = d.fields
        rx, snr = _num(f.get("link.rx_level_dbm")), _num(f.get("link.snr_db"))
        if d.role.value != "link" and rx is None and snr is None:
            continue
        oper = f.get("link.oper_up")
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


def _site_view(site: SiteStatus, communes: Mapping[str, str], carriers: Mapping[str, str]) -> dict[str, Any]:
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
        "reason": site.reason,
        "since": site.since,
        "power": power_of(site),
        "links": links_of(site),
    }


_STATE_ORDER: Final = {"down": 0, "unreachable": 1, "degraded": 2, "unknown": 3, "up": 4}
_PRIORITY_ORDER: Final = {"critical": 0, "high": 1, "normal": 2, "low": 3}


def district_view(snap: HealthSnapshot, district_id: str) -> dict[str, Any] | None:
    rollup = next((r for r in snap.rollups if r.level == "district" and r.id == district_id), None)
    if rollup is None:
        return None
    communes = {r.id: r.name for r in snap.rollups if r.level == "commune" and r.parent == district_id}
    carriers = _names(snap, "carrier")
    sites = [_site_view(s, communes, carriers) for s in snap.sites.values() if s.district == district_id]
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


def dispatch_view(snap: HealthSnapshot) -> dict[str, Any]:
    """Sites on battery, fewest battery minutes first (unknown minutes last); the page re-ranks
    by time-to-dark when the daemon estimates it."""
    districts = _names(snap, "district")
    carriers = _names(snap, "carrier")
    out: list[dict[str, Any]] = []
    for site in snap.sites.values():
        power = power_of(site)
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
                "reason": site.reason,
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
