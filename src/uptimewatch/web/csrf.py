"""Cross-site request forgery guard for every mutating endpoint (acks, silences, ``POST /-/reload``).

A web page on any site can make the operator's browser send a "simple" request to the daemon
without a CORS preflight: a form POST (``application/x-www-form-urlencoded``,
``multipart/form-data``, ``text/plain``) or a bodiless ``fetch`` in ``no-cors`` mode. The
answer is unreadable to that page, but the side effect (a silence on every site, a reload)
happens. Two rules close that door, whether or not ``alerting.auth`` is set:

* a request other than GET/HEAD/OPTIONS that carries a body must be ``application/json``, and
  a bodiless one must not name a type a form can send (``text/plain``, form-encoded, multipart):
  a browser sends JSON cross-site only after a preflight, which this daemon never grants (it
  answers no CORS headers);
* a browser's request from a foreign origin is refused (403): ``Sec-Fetch-Site: cross-site`` or
  ``same-site``, or an ``Origin`` that is neither the daemon's own (as the ``Host`` header names
  it) nor listed in ``server.trusted_origins``. Clients that are not browsers (curl, Prometheus,
  scripts) send neither header and pass.

docs/deploy.md describes the model for operators.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _normal_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def foreign_origin(request: web.Request, trusted: Collection[str]) -> str | None:
    """Why the request comes from another site's page, or None when it does not."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and _normal_origin(origin) in trusted:
        return None
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"Sec-Fetch-Site: {fetch_site}"
    if origin is None:
        return None  # not a browser, or a same-origin request of an old one
    if origin == "null":
        return "Origin: null"
    own = (request.host or "").lower()
    if urlsplit(origin.strip()).netloc.lower() == own and own:
        return None
    return f"Origin {origin!r} is not this daemon's ({own or 'no Host header'})"


#: what a page may send cross-site without a CORS preflight (the Fetch standard's safelist)
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def _simple_type(request: web.Request) -> bool:
    return "Content-Type" in request.headers and request.content_type in SIMPLE_TYPES


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def middleware(get_trusted: Callable[[], Collection[str]]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """``get_trusted()``: extra origins (``scheme://host[:port]``) whose pages may call the API."""

    @web.middleware
    async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        trusted = {_normal_origin(o) for o in get_trusted()}
        why = foreign_origin(request, trusted)
        if why is not None:
            log.warning(
                "refused %s %s from %s: cross-origin request (%s)",
                request.method,
                request.path,
                request.remote,
                why,
            )
            return web.json_response(
                {"error": f"cross-origin requests are refused ({why}); see server.trusted_origins"},
                status=403,
            )
        has_body = _has_body(request)
        if (has_body and request.content_type != JSON) or (not has_body and _simple_type(request)):
            return web.json_response(
                {"error": f"the body must be {JSON} (got {request.content_type or 'none'})"},
                status=415,
                headers={"Accept-Post": JSON},
            )
        return await handler(request)

    return csrf
