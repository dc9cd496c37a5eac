"""Secrets out of every text that leaves the daemon: logs, errors, notices, the outbox, the API.

Two kinds of secret reach error texts. URLs carry theirs in the URL itself (``user:pass@`` and
``?token=...``): a webhook's address, an Alertmanager behind basic auth. Every URL found in a text
loses its user information, the values of its query string and its fragment; the scheme, host,
port and path stay, so the operator still sees which endpoint failed. The configuration's own
secret values (SNMP communities, v3 keys, passwords, tokens: every ``SecretStr`` field) may turn
up anywhere, echoed by a library or a peer: they are remembered when a configuration is loaded and
masked wherever they appear.

A leaf module: the standard library only, so any layer may call it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "RedactingFormatter",
    "install_log_redaction",
    "redact",
    "redact_url",
    "remember_secrets",
    "url_secrets",
]

MASK = "***"

#: a URL in running text: scheme://, then anything up to white space or a quote or bracket
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s'\"<>()\[\]{}]+")
#: a query parameter: its name survives, its value does not
_PARAM = re.compile(r"([^&=;]*)(=)?([^&;]*)")
#: secrets shorter than this are not masked in running text: "ok" or "1" would eat words; such a
#: secret is no secret anyway (and the config reference says so)
_MIN_SECRET = 4


class _Known:
    """The secrets of every configuration loaded by this process, and one pattern matching them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: frozenset[str] = frozenset()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if len(v) >= _MIN_SECRET}
        with self.lock:
            if new <= self.values:
                return
            self.values = self.values | new
            # longest first: a secret containing another is masked whole
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_known = _Known()


def remember_secrets(values: Iterable[str]) -> None:
    """Add ``values`` to the secrets masked in every text from now on (configuration load and
    reload call this; values are kept for the life of the process, so a text about the previous
    configuration is still masked after a reload)."""
    _known.add(values)


def _query(query: str) -> str:
    def one(m: re.Match[str]) -> str:
        name, eq, value = m.group(1), m.group(2), m.group(3)
        if not eq:
            # a bare ?TOKEN is the secret itself
            return MASK if name else ""
        return f"{name}={MASK}" if value else f"{name}="

    return _PARAM.sub(one, query)


def redact_url(url: str) -> str:
    """``https://u:p@host:8443/hook?token=abc#x`` -> ``https://***@host:8443/hook?token=***#***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname  # also validates the port
        _ = parts.port
    except ValueError:
        return _redact_unparsable(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = _query(parts.query) if parts.query else ""
    fragment = MASK if parts.fragment else ""
    if host is None and not netloc:
        return _redact_unparsable(url)
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries: its password (and user) and its query values. Remembered with
    the configuration's, so a peer that echoes ``/hook?token=...`` without the scheme and host
    (an error page repeating the request line) is masked too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [v for v in (parts.username, parts.password) if v]
    for _name, value in parse_qsl(parts.query, keep_blank_values=False):
        found.append(value)
    if parts.query and "=" not in parts.query:
        found.append(parts.query)
    if parts.fragment:
        found.append(parts.fragment)
    return found


def _redact_unparsable(url: str) -> str:
    """A URL ``urlsplit`` refuses (a bad port, a broken IPv6 literal): keep the scheme only."""
    scheme, sep, _rest = url.partition("://")
    return f"{scheme}{sep}{MASK}" if sep else MASK


def _mask_known(text: str) -> str:
    pattern = _known.pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def _url_in_text(m: re.Match[str]) -> str:
    # "POST http://h/x?token=abc: refused": the colon ends the sentence, not the URL
    url = m.group(0)
    core = url.rstrip(".,:;!?")
    return redact_url(core) + url[len(core) :]


def redact(text: str) -> str:
    """``text`` with every URL's credentials and query values, and every remembered secret, masked."""
    if "://" in text:
        text = _URL.sub(_url_in_text, text)
    return _mask_known(text)


class RedactingFormatter(logging.Formatter):
    """Formats as the wrapped formatter does (message, arguments, traceback), then redacts the
    whole line: a secret in an exception's text or in a traceback is caught too."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of ``logger`` (default: the root logger) once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
