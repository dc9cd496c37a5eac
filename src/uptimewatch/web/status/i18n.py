"""The status page's language: which one a request gets, and the catalog the page script reads.

The page's words live in the gettext domain ``status`` (``locale/<lang>/LC_MESSAGES/status.po``,
extracted from ``static/status.js`` by ``make catalogs``). The daemon renders the catalog of the
reader's language into the page, and serves it at ``/api/v1/status/i18n?lang=`` for the switch,
together with what the script needs to write numbers, dates and durations the locale's way
(Babel's symbols, unit patterns and month names, and the same date patterns as
:mod:`uptimewatch.i18n`), so the page and the emails and reports write them alike.

Reasons in the JSON views come from the health model as translatable phrases of the
``uptimewatch`` domain; :func:`speaker` renders them in the request's language.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from babel import Locale
from babel.messages.pofile import read_po
from babel.numbers import get_decimal_symbol, get_group_symbol
from babel.units import format_unit

from ...i18n import LANGUAGES, LOCALE_DIR, Language, Text, negotiate, normalize_language, translator

__all__ = ["COOKIE", "DOMAIN", "PATTERNS", "page_catalog", "page_language", "speaker"]

DOMAIN: Final = "status"
#: The cookie the language switch sets (the page script writes it; the daemon only reads it).
COOKIE: Final = "uptimewatch_lang"
#: Date and time patterns (CLDR syntax), the ones :class:`uptimewatch.i18n.Translator` writes;
#: tests/test_status_i18n.py checks that both render a moment alike.
PATTERNS: Final[dict[str, dict[str, str]]] = {
    "vi": {"date": "dd/MM/yyyy", "datetime": "HH:mm dd/MM/yyyy", "time": "HH:mm", "time_seconds": "HH:mm:ss"},
    "en": {"date": "d MMM yyyy", "datetime": "d MMM yyyy HH:mm", "time": "HH:mm", "time_seconds": "HH:mm:ss"},
}
_UNITS: Final = ("day", "hour", "minute", "second")


def page_language(request: web.Request, default: str | None) -> Language:
    """``?lang=`` first, then the switch's cookie, then Accept-Language, then ``default``
    (the province's ``language``)."""
    fallback = normalize_language(default)
    for candidate in (request.query.get("lang"), request.cookies.get(COOKIE)):
        if candidate and normalize_language(candidate, default="") in LANGUAGES:  # type: ignore[arg-type]
            return normalize_language(candidate)
    return negotiate(request.headers.get("Accept-Language"), default=fallback)


def speaker(language: str, timezone: str | None) -> Callable[[Any], str]:
    """Renders a reason (a translatable phrase or a plain string) in ``language``."""
    t = translator(language, "uptimewatch", timezone)

    def say(phrase: Any) -> str:
        if phrase is None:
            return ""
        return t.text(phrase) if isinstance(phrase, str | Text) else str(phrase)

    return say


@functools.cache
def _messages(language: str) -> tuple[dict[str, str | list[str]], str]:
    """msgid -> msgstr (a list of forms for plurals) and the catalog's plural expression.
    Untranslated and fuzzy entries are left out: the script shows the English msgid for them."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.is_file():
        return {}, "(n != 1)"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    out: dict[str, str | list[str]] = {}
    for m in catalog:
        if not m.id or m.fuzzy:
            continue
        if isinstance(m.id, str):
            if isinstance(m.string, str) and m.string:
                out[m.id] = m.string
        elif isinstance(m.string, tuple | list) and all(m.string):
            out[m.id[0]] = list(m.string)
    return out, catalog.plural_expr


@functools.cache
def _locale_data(language: str) -> dict[str, Any]:
    locale = Locale.parse(language)
    units: dict[str, dict[str, str]] = {}
    for unit in _UNITS:
        forms = {}
        for form, n in (("one", 1), ("other", 7)):
            text = str(format_unit(n, f"duration-{unit}", length="short", locale=language))
            forms[form] = text.replace(str(n), "{0}", 1)
        units[unit] = forms
    months = locale.months["format"]["abbreviated"]
    return {
        "formats": {
            "decimal": get_decimal_symbol(language),
            "group": get_group_symbol(language),
            "months": [str(months[i]) for i in range(1, 13)],
            **PATTERNS.get(language, PATTERNS["en"]),
        },
        "units": units,
    }


def page_catalog(language: str, timezone: str | None) -> dict[str, Any]:
    """What the page script reads (the ``i18n`` JSON in the page, and the switch's endpoint)."""
    lang = normalize_language(language)
    messages, plural = _messages(lang)
    return {
        "lang": lang,
        "languages": list(LANGUAGES),
        "messages": messages,
        "plural": plural,
        "timezone": timezone,
        **_locale_data(lang),
    }
