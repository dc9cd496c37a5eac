"""HTTP API of the alert engine: alerts, acks and silences.

``GET /api/v1/alerts[?state=firing]``, ``GET /api/v1/alerts/{id}`` (with its history),
``POST /api/v1/alerts/{id}/ack`` ``{"by": ..., "comment": ...}``, ``GET /api/v1/silences``,
``POST /api/v1/silences`` ``{"matchers": {...}, "ends_at" | "duration", "created_by", "comment"}``,
``DELETE /api/v1/silences/{id}``. Mutating requests pass through :mod:`.auth`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from .auth import middleware
from .engine import AckError
from .service import AlertService, NoLeader
from .silences import check_matchers

SERVICE_KEY: web.AppKey[AlertService] = web.AppKey("alert_service", AlertService)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"))
    )


def _error(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be JSON"}), content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}), content_type="application/json"
        )
    return data


def _text(data: dict[str, Any], key: str, *, required: bool = True, limit: int = 1000) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise ValueError(f"'{key}' must be a non-empty string of at most {limit} characters")
    return value.strip()


def _time(value: Any, key: str) -> float:
    """Unix seconds, or an ISO 8601 time with an offset."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    raise ValueError(f"'{key}' must be unix seconds or an ISO 8601 time with an offset")


async def list_alerts(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    state = request.query.get("state")
    if state is not None and state not in ("pending", "firing", "resolved"):
        return _error("state must be pending, firing or resolved")
    alerts = service.alerts(state)
    return _json({"count": len(alerts), "alerts": alerts})


async def alert_detail(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    alert = service.find(request.match_info["id"])
    if alert is None:
        return _error(f"no alert '{request.match_info['id']}'", 404)
    view = service.alert_view(alert)
    view["history"] = await service.history(alert.fingerprint, 100)
    return _json(view)


async def ack(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    data = await _body(request)
    try:
        by = _text(data, "by", limit=100)
        comment = _text(data, "comment", required=False)
    except ValueError as exc:
        return _error(str(exc))
    try:
        alert = await service.ack(request.match_info["id"], by, comment)
    except AckError as exc:
        return _error(str(exc), 404)
    except NoLeader as exc:
        return _error(str(exc), 503)
    return _json(service.alert_view(alert))


async def list_silences(request: web.Request) -> web.Response:
    silences = request.app[SERVICE_KEY].silences()
    return _json({"count": len(silences), "silences": silences})


async def create_silence(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    data = await _body(request)
    try:
        from ..primitives import parse_duration

        matchers = check_matchers(data.get("matchers"))
        created_by = _text(data, "created_by", limit=100)
        comment = _text(data, "comment")
        starts_at = _time(data["starts_at"], "starts_at") if data.get("starts_at") is not None else None
        if data.get("ends_at") is not None:
            ends_at = _time(data["ends_at"], "ends_at")
        elif data.get("duration") is not None:
            ends_at = (starts_at if starts_at is not None else service.now()) + parse_duration(
                data["duration"]
            )
        else:
            raise ValueError("give 'ends_at' or 'duration'")
        if ends_at <= (starts_at if starts_at is not None else service.now()):
            raise ValueError("the silence must end after it starts (and in the future)")
    except ValueError as exc:
        return _error(str(exc))
    try:
        silence = await service.add_silence(
            matchers, starts_at=starts_at, ends_at=ends_at, created_by=created_by, comment=comment
        )
    except NoLeader as exc:
        return _error(str(exc), 503)
    return _json(silence.to_dict(), 201)


async def delete_silence(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    try:
        expired = await service.expire_silence(request.match_info["id"])
    except NoLeader as exc:
        return _error(str(exc), 503)
    if not expired:
        return _error(f"no silence '{request.match_info['id']}'", 404)
    return _json({"id": request.match_info["id"], "state": "expired"})


def install(app: web.Application, service: AlertService) -> None:
    """Add the routes and the authentication middleware (which also guards ``POST /-/reload``)."""
    app[SERVICE_KEY] = service
    app.middlewares.append(middleware(lambda: service.authenticator))
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/{id}", alert_detail)
    app.router.add_post("/api/v1/alerts/{id}/ack", ack)
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", delete_silence)
