"""Authentication of the mutating HTTP endpoints: bearer tokens and basic auth with bcrypt hashes.

When ``alerting.auth`` is set, every request other than GET/HEAD/OPTIONS needs credentials: acks,
silences and ``POST /-/reload`` alike. Without it the daemon keeps its old behaviour (open),
which suits a daemon listening on 127.0.0.1 only.

Guessing is bounded twice: a client address that failed ``max_failures`` times within
``failure_window`` is answered 429 with ``Retry-After`` until its oldest failure leaves the window,
without its credentials being checked at all; and bcrypt runs on its own small lane
(:mod:`uptimewatch.executors`), which answers 503 when full, so guesses from many addresses never
queue work for the threads that render ``/metrics``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import bcrypt
from aiohttp import web

from .. import executors
from ..config.alerting import AlertingAuth, read_token_file

log = logging.getLogger(__name__)

REALM = "uptimewatch"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Authenticator:
    """Checks an ``Authorization`` header. Secrets stay inside; nothing here logs them."""

    def __init__(
        self,
        tokens: list[str],
        users: dict[str, bytes],
        *,
        max_failures: int = 10,
        failure_window: float = 60.0,
    ) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._users = users
        self.max_failures = max_failures
        self.failure_window = failure_window

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
        return cls(tokens, users, max_failures=cfg.max_failures, failure_window=cfg.failure_window)

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
            ok = await executors.AUTH.run(bcrypt.checkpw, password.encode(), hashed)
            return user if ok else None
        return None


class FailureLimiter:
    """Failed authentications per client address, over a sliding window.

    Remembers at most ``max_clients`` addresses (the least recently failing are forgotten first),
    so a spray from many addresses cannot grow it without bound.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000) -> None:
        self._clock = clock
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.refused = 0  # requests answered 429

    def retry_after(self, client: str, max_failures: int, window: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        times = self._failures.get(client)
        if times is None:
            return None
        cutoff = self._clock() - window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        if len(times) < max_failures:
            return None
        return max(times[-max_failures] - cutoff, 0.001)

    def failed(self, client: str, max_failures: int) -> int:
        """Count one failure; returns how many the window holds now."""
        times = self._failures.pop(client, None)
        if times is None:
            times = deque(maxlen=max_failures)
        elif times.maxlen != max_failures:
            times = deque(times, maxlen=max_failures)
        times.append(self._clock())
        self._failures[client] = times
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
        return len(times)


def too_many(retry_after: float, message: str, status: int = 429) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}
    )


def unauthorized(message: str = "authentication required") -> web.Response:
    return web.json_response(
        {"error": message},
        status=401,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}", Basic realm="{REALM}", charset="UTF-8"'},
    )


def middleware(
    get: Callable[[], Authenticator | None], limiter: FailureLimiter | None = None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware: mutating requests need credentials whenever ``get()`` returns one."""
    limits = limiter if limiter is not None else FailureLimiter()

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        authenticator = get()
        if authenticator is None:
            return await handler(request)
        client = request.remote or "?"
        max_failures, window = authenticator.max_failures, authenticator.failure_window
        wait = limits.retry_after(client, max_failures, window)
        if wait is not None:
            limits.refused += 1
            return too_many(wait, f"too many failed authentications from {client}; retry later")
        try:
            principal = await authenticator.check(request.headers.get("Authorization"))
        except executors.LaneFull:
            return too_many(1.0, "too many authentications in progress; retry later", status=503)
        if principal is None:
            failures = limits.failed(client, max_failures)
            if failures < max_failures:
                log.warning(
                    "refused %s %s from %s: bad or missing credentials",
                    request.method,
                    request.path,
                    client,
                )
            else:
                log.warning(
                    "refused %s %s from %s: %d failed authentications within %.0f s;"
                    " refusing it for up to %.0f s",
                    request.method,
                    request.path,
                    client,
                    failures,
                    window,
                    window,
                )
            return unauthorized()
        log.debug("%s %s by %s", request.method, request.path, principal)
        return await handler(request)

    return auth
