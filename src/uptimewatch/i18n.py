"""Two languages: gettext catalogs through Babel, and locale-aware numbers, dates and durations.

Source strings are English. The catalogs live in ``uptimewatch/locale/<lang>/LC_MESSAGES/<domain>.po``
and are read from the ``.po`` files at run time (cached per language and domain), so a wheel needs
nothing but the package data and a change to a catalog needs no build step.

Two gettext domains, so two people can work on catalogs at once without colliding:

- ``uptimewatch``: emails, reports, alert summaries and reasons, CLI messages;
- ``status``: the status page.

The language is chosen at the edge, for one email, one report, one request: nothing stores
translated text. What is stored is a message id and its parameters (see :class:`Text`), and
:meth:`Translator.text` renders it. Placeholders carry a format spec that says how a parameter is
written in the reader's locale::

    t.gettext("loss {loss:pct} over {window:dur}", loss=0.25, window=300)  # vi: "mất 25% gói trong 5 phút"
    Text(N_("loss {loss:pct} over {window:dur}"), {"loss": 0.25, "window": 300})  # stored, rendered later

Specs: ``num`` (a number; ``num1`` with one decimal, ``num0`` rounded), ``pct`` (a ratio 0..1 as
percent; ``pct2`` with two decimals), ``dur`` (seconds as "2 h 15 min"), ``dt`` and ``time`` (a unix
timestamp in the translator's time zone), ``date``, ``raw`` (as it is: ids, ports). Without a spec a
number is written as ``num`` (``1.234`` in Vietnamese). A list parameter is joined with "; ",
or with ``list`` ", ", ``sp`` " ", ``and`` the locale's "a, b và c".

Update the catalogs after changing strings with ``make catalogs`` (``pybabel extract`` and
``pybabel update`` for each domain); ``tests/test_i18n_catalogs.py`` fails while a string is missing
from a catalog or lacks its Vietnamese translation.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gettext
import io
import json
import logging
import math
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from babel.units import format_unit

log = logging.getLogger(__name__)

Language = Literal["vi", "en"]
LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)
DEFAULT_LANGUAGE: Final[Language] = "en"
#: The gettext domains: ``uptimewatch`` (emails, reports, reasons, CLI) and ``status`` (the page).
DOMAINS: Final = ("uptimewatch", "status")
LOCALE_DIR: Final = Path(__file__).parent / "locale"

# Dates as people in each language write them (CLDR's short Vietnamese date is d/M/yy; the
# department writes 03/12/2026).
_DATE: Final[dict[str, str]] = {"vi": "dd/MM/yyyy", "en": "d MMM yyyy"}
_DATETIME: Final[dict[str, str]] = {"vi": "HH:mm dd/MM/yyyy", "en": "d MMM yyyy HH:mm"}
_TIME: Final = "HH:mm"
_DASH: Final = "–"


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it (the translation happens at render)."""
    return message


def normalize_language(value: str | None, default: Language = DEFAULT_LANGUAGE) -> Language:
    """``"vi-VN"``, ``"VI"``, ``"en_US"`` -> a supported language; anything else -> ``default``."""
    if not value:
        return default
    head = re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower()
    return cast(Language, head) if head in LANGUAGES else default


def terminal_language(explicit: str | None = None) -> Language:
    """A command's language without a province to ask: ``--lang`` if given, else the locale
    (``LC_ALL``, ``LC_MESSAGES``, ``LANG``: ``vi_VN.UTF-8`` reads Vietnamese), else English."""
    if explicit:
        return normalize_language(explicit, default="en")
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := os.environ.get(name):
            return normalize_language(value.partition(".")[0], default="en")
    return "en"


def negotiate(accept_language: str | None, default: Language = DEFAULT_LANGUAGE) -> Language:
    """The best supported language for an ``Accept-Language`` header (q-values honoured)."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.strip()))
    for _q, _i, tag in sorted(ranked):
        if tag == "*":
            return default
        if (language := normalize_language(tag, default="")) in LANGUAGES:  # type: ignore[arg-type]
            return language
    return default


class Text(msgspec.Struct, frozen=True, gc=False):
    """A message to translate later: the English msgid (marked with :func:`N_`) and its parameters.

    This is what the ledger, the outbox and the health snapshot keep; :meth:`Translator.text`
    renders it in one language. A parameter may itself be a :class:`Text` (a site's reason quotes
    its device's), or a list of them (joined with "; "). ``str()`` gives the English text, for logs
    and the JSON API. ``code`` is an optional stable machine name.
    """

    msgid: str
    params: Mapping[str, Any] = msgspec.field(default_factory=dict)
    code: str = ""

    # a struct, not a dataclass: the health model builds one for nearly every result it judges
    # and compares it with the last one; msgspec does both in C. ``gc=False``: parameters are
    # plain values, or other texts, never the text itself.

    def __hash__(self) -> int:
        return hash((self.msgid, self.code))

    def __str__(self) -> str:
        return translator("en").text(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "msgid": self.msgid,
            "params": {k: _param_json(v) for k, v in self.params.items()},
        }
        if self.code:
            out["code"] = self.code
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Text:
        params = {k: _param_from_json(v) for k, v in (data.get("params") or {}).items()}
        return cls(str(data["msgid"]), params, str(data.get("code") or ""))

    def english(self) -> str:
        """The text in the source language (for logs, which are not translated)."""
        return str(self)


#: What a reason or a summary is: a translatable :class:`Text`, or a plain string (a device's own
#: words, a user's template) shown as it is in every language.
Phrase = Text | str


def joined(parts: list[Phrase]) -> Phrase:
    """Several phrases as one, joined with "; " in every language (one phrase stays itself)."""
    if len(parts) == 1:
        return parts[0]
    # "{items}" is not marked for extraction: it is the same in every language
    return Text("{items}", {"items": list(parts)})


def _param_json(value: Any) -> Any:
    if isinstance(value, Text):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_param_json(v) for v in value]
    return value


def _param_from_json(value: Any) -> Any:
    if isinstance(value, Mapping) and "msgid" in value:
        return Text.from_json(value)
    if isinstance(value, list):
        return [_param_from_json(v) for v in value]
    return value


def phrase_to_json(value: Phrase) -> Any:
    """A :data:`Phrase` as JSON: a string stays a string, a :class:`Text` becomes a mapping."""
    return value.to_json() if isinstance(value, Text) else value


def phrase_dumps(value: Phrase) -> str:
    """A :data:`Phrase` for one text column (the ledger's reasons): JSON for a Text, else the string."""
    if isinstance(value, Text):
        return json.dumps(value.to_json(), ensure_ascii=False, separators=(",", ":"))
    return value


def phrase_loads(value: str | None) -> Phrase:
    """The inverse of :func:`phrase_dumps`; rows written before reasons were Texts read as strings."""
    if value and value.startswith('{"msgid"'):
        try:
            return Text.from_json(json.loads(value))
        except (ValueError, KeyError, TypeError):
            return value
    return value or ""


def phrase_from_json(value: Any) -> Phrase:
    """The inverse of :func:`phrase_to_json` (an absent value reads as an empty string)."""
    if isinstance(value, Mapping) and "msgid" in value:
        return Text.from_json(value)
    return "" if value is None else str(value)


class _LocaleFormatter(string.Formatter):
    def __init__(self, t: Translator) -> None:
        self._t = t

    def format_field(self, value: Any, format_spec: str) -> str:
        t = self._t
        spec = format_spec.strip()
        if isinstance(value, Text):
            return format(t.text(value), spec)
        if isinstance(value, list | tuple):
            items = [t.text(v) if isinstance(v, Text) else str(v) for v in value]
            if spec == "and":
                return t.join(items)
            return {"list": ", ", "sp": " "}.get(spec, "; ").join(items)
        if spec.startswith("num"):
            return t.number(value, digits=int(spec[3:]) if spec[3:] else None)
        if spec.startswith("pct"):
            return t.percent(value, digits=int(spec[3:]) if spec[3:] else 0)
        if spec == "dur":
            return t.duration(value)
        if spec == "dt":
            return t.datetime(value)
        if spec == "time":
            return t.time(value)
        if spec == "date":
            return t.date(value)
        if spec == "raw":
            return str(value)
        if not spec and isinstance(value, int | float) and not isinstance(value, bool):
            return t.number(value)
        return str(super().format_field(value, format_spec))


@dataclass(frozen=True, slots=True)
class Translator:
    """Translations of one domain in one language, plus that locale's way of writing numbers and time."""

    language: Language
    translations: gettext.NullTranslations
    tz: _dt.tzinfo = _dt.UTC

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    def with_timezone(self, tz: str | _dt.tzinfo | None) -> Translator:
        """The same translator, writing times in ``tz`` (an IANA name or a tzinfo)."""
        if tz is None:
            return self
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("unknown time zone %r; writing times in UTC", tz)
                tz = _dt.UTC
        return Translator(self.language, self.translations, tz)

    # -- strings ---------------------------------------------------------------------------
    # With keyword parameters the translation's ``{placeholders}`` are filled the locale's way;
    # without, the translation comes back as it is (braces and all).
    def gettext(self, message: str, /, **params: Any) -> str:
        translated = self.translations.gettext(message)
        return self._fill(translated, message, params) if params else translated

    def ngettext(self, singular: str, plural: str, n: int, /, **params: Any) -> str:
        """The plural form for ``n``; ``n`` is also available as ``{n}``."""
        params.setdefault("n", n)
        translated = self.translations.ngettext(singular, plural, n)
        return self._fill(translated, singular if n == 1 else plural, params)

    def pgettext(self, context: str, message: str, /, **params: Any) -> str:
        translated = self.translations.pgettext(context, message)
        return self._fill(translated, message, params) if params else translated

    def join(self, items: list[str]) -> str:
        """``a, b và c`` / ``a, b, and c``."""
        return str(format_list(items, style="standard", locale=self.language)) if items else ""

    def text(self, text: Text | str) -> str:
        """Render a stored :class:`Text` (a plain string passes through, translated if it is a msgid)."""
        if isinstance(text, str):
            return self.translations.gettext(text)
        translated = self.translations.gettext(text.msgid)
        return self._fill(translated, text.msgid, text.params) if text.params else translated

    def _fill(self, translated: str, source: str, params: Mapping[str, Any]) -> str:
        formatter = _LocaleFormatter(self)
        try:
            return formatter.vformat(translated, (), params)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            # A translation with a broken placeholder must not lose the message: say it in English.
            log.warning("catalog %s: cannot fill %r: %s", self.language, translated, exc)
            try:
                english = Translator("en", gettext.NullTranslations(), self.tz)
                return _LocaleFormatter(english).vformat(source, (), params)
            except (KeyError, IndexError, ValueError, TypeError):
                return source

    # -- numbers and time --------------------------------------------------------------------
    def number(self, value: float | int | None, digits: int | None = None) -> str:
        """``1234.5`` -> ``1.234,5`` (vi) / ``1,234.5`` (en); ``digits`` fixes the decimals."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return _DASH
        if self.language == "en":  # the source language, on hot paths (logs, the API): plain Python
            if digits is None:
                out = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
                return "0" if out == "-0" else out
            return f"{value:,.{digits}f}"
        if digits is None:
            return format_decimal(value, locale=self.language)
        pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
        return format_decimal(value, format=pattern, locale=self.language)

    def percent(self, ratio: float | None, digits: int = 0) -> str:
        """A ratio 0..1 as a percentage: ``0.9987`` -> ``99,87 %``-style per locale."""
        if ratio is None or not math.isfinite(ratio):
            return _DASH
        return f"{self.number(ratio * 100.0, digits)}%"

    def _as_datetime(self, value: float | _dt.datetime) -> _dt.datetime:
        if isinstance(value, _dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
        else:
            moment = _dt.datetime.fromtimestamp(float(value), _dt.UTC)
        return moment.astimezone(self.tz)

    def datetime(self, value: float | _dt.datetime | None) -> str:
        """A unix timestamp or aware datetime, in this translator's time zone: ``14:05 03/12/2026``."""
        if value is None:
            return _DASH
        return format_datetime(self._as_datetime(value), _DATETIME[self.language], locale=self.language)

    def time(self, value: float | _dt.datetime | None) -> str:
        if value is None:
            return _DASH
        return format_datetime(self._as_datetime(value), _TIME, locale=self.language)

    def date(self, value: float | _dt.date | None) -> str:
        """``03/12/2026`` (vi) / ``3 Dec 2026`` (en)."""
        if value is None:
            return _DASH
        if isinstance(value, _dt.datetime) or not isinstance(value, _dt.date):
            value = self._as_datetime(value).date()
        return format_date(value, _DATE[self.language], locale=self.language)

    def duration(self, seconds: float | None, *, max_units: int = 2, length: str = "short") -> str:
        """Seconds as the largest ``max_units`` units: ``8100`` -> ``2 tiếng 15 phút`` / ``2 hr 15 min``."""
        if seconds is None or not math.isfinite(seconds):
            return _DASH
        units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
        total = max(0.0, float(seconds))
        remaining = total
        for _ in range(2):  # round to the smallest unit shown (2 h 14 min 50 s reads 2 h 15 min)
            first = next((i for i, (_u, size) in enumerate(units) if remaining >= size), len(units) - 1)
            shown = units[first : first + max_units]
            remaining = round(total / shown[-1][1]) * shown[-1][1]
        parts: list[str] = []
        for unit, size in shown:
            count, remaining = divmod(remaining, size)
            if count:
                parts.append(self._unit(int(count), unit, length))
        if not parts:
            return self._unit(0, shown[-1][0], length)
        return format_list(parts, style="unit-narrow", locale=self.language)

    def _unit(self, count: int, unit: str, length: str) -> str:
        return _unit(count, unit, length, self.language)


@functools.lru_cache(maxsize=4096)
def _unit(count: int, unit: str, length: str, language: str) -> str:
    return str(format_unit(count, f"duration-{unit}", length=length, locale=language))  # type: ignore[arg-type]


@functools.cache
def _translations(language: str, domain: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    if not path.is_file():
        if language != "en":
            log.warning(
                "no %s catalog for %r at %s; using the English source strings", domain, language, path
            )
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=domain)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as msgfmt does
    buffer.seek(0)
    return Translations(buffer, domain=domain)


def translator(
    language: str | None = None, domain: str = "uptimewatch", tz: str | _dt.tzinfo | None = None
) -> Translator:
    """The translator for ``language`` (normalized; unknown -> English) in ``domain``."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown gettext domain {domain!r}; known: {', '.join(DOMAINS)}")
    lang = normalize_language(language)
    return Translator(lang, _translations(lang, domain)).with_timezone(tz)
