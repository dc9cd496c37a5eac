"""Authentication of the mutating HTTP endpoints: bearer tokens and basic auth with bcrypt hashes.

When ``alerting.auth`` is set, every request other than GET/HEAD/OPTIONS needs credentials: acks,
silences and ``POST /-/reload`` alike. Without it the daemon keeps its old behaviour (open),
which suits a daemon listening on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import bcrypt
from aiohttp import web

from ..config.alerting import AlertingAuth, read_token_file

log = logging.getLogger(__name__)

REALM = "uptimewatch"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Authenticator:
    """Checks an ``Authorization`` header. Secrets stay inside; nothing here logs them."""

    def __init__(self, tokens: list[str], users: dict[str, bytes]) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._users = users

    @classmethod
    def from_config(cls, cfg: AlertingAuth | None, base_dir: Path) -> Authenticator | None:
        """Blocking (reads ``bearer_token_file``): call it in a thread."""
        if cfg is None:
            return None
        tokens = [t.get_secret_value() for t in cfg.bearer_tokens]
        if cfg.bearer_token_file is not None:
            token, problem = read_token_file(cfg.bearer_token_file, base_dir)
            if token is None:
                raise ValueError(problem)
            tokens.append(token)
        users = {u.user: u.password_bcrypt.get_secret_value().encode() for u in cfg.basic}
        return cls(tokens, users)

    async def check(self, header: str | None) -> str | None:
        """The authenticated principal (``token`` or the user name), or None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            given = value.encode()
            # compare with every token, so timing does not tell which one nearly matched
            ok = False
            for token in self._tokens:
                ok |= hmac.compare_digest(given, token)
            return "token" if ok else None
        if scheme == "basic" and value:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            hashed = self._users.get(user)
            if hashed is None:
                return None
            # bcrypt is deliberately slow (~0.2 s): keep it off the event loop
            ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
            return user if ok else None
        return None


def unauthorized(message: str = "authentication required") -> web.Response:
    return web.json_response(
        {"error": message},
        status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", Basic realm="{REALM}", charset="UTF-8"'},
    )


def middleware(get: Callable[[], Authenticator | None]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware: mutating requests need credentials whenever ``get()`` returns one."""

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        authenticator = get()
        if authenticator is None:
            return await handler(request)
        principal = await authenticator.check(request.headers.get("Authorization"))
        if principal is None:
            log.warning(
                "refused %s %s from %s: bad or missing credentials",
                request.method,
                request.path,
                request.remote,
            )
            return unauthorized()
        log.debug("%s %s by %s", request.method, request.path, principal)
        return await handler(request)

    return auth
