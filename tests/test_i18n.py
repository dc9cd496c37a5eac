"""Locale-aware numbers, dates and durations, language negotiation, and stored texts rendered later."""

from __future__ import annotations

import datetime as dt
import gettext
import io
import logging

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.support import Translations

from uptimewatch.i18n import (
    LANGUAGES,
    LOCALE_DIR,
    N_,
    Text,
    Translator,
    negotiate,
    normalize_language,
    translator,
)

# 2026-12-03 08:00 UTC = 15:00 in Hà Nội
MOMENT = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC).timestamp()


def test_vietnamese_numbers_and_dates() -> None:
    t = translator("vi", tz="Asia/Ho_Chi_Minh")
    assert t.number(1234.5) == "1.234,5"
    assert t.number(1234.5, 2) == "1.234,50"
    assert t.number(99.96, 1) == "100,0"
    assert t.percent(0.9987, 2) == "99,87%"
    assert t.date(MOMENT) == "03/12/2026"
    assert t.date(dt.date(2026, 5, 7)) == "07/05/2026"
    assert t.datetime(MOMENT) == "15:00 03/12/2026"
    assert t.time(MOMENT) == "15:00"


def test_english_numbers_and_dates() -> None:
    t = translator("en", tz="Asia/Ho_Chi_Minh")
    assert t.number(1234.5) == "1,234.5"
    assert t.percent(0.9987, 2) == "99.87%"
    assert t.date(MOMENT) == "3 Dec 2026"
    assert t.datetime(MOMENT) == "3 Dec 2026 15:00"
    assert translator("en").datetime(MOMENT) == "3 Dec 2026 08:00"  # UTC by default


@pytest.mark.parametrize(
    ("seconds", "vi", "en"),
    [
        (0, "0 giây", "0 sec"),
        (45, "45 giây", "45 sec"),
        (59.6, "1 phút", "1 min"),
        (3600, "1 tiếng", "1 hr"),
        (8090, "2 tiếng 15 phút", "2 hr 15 min"),  # 2 h 14 min 50 s, rounded to the minute shown
        (90061, "1 ngày 1 tiếng", "1 day 1 hr"),
        (3 * 86400, "3 ngày", "3 days"),
    ],
)
def test_durations(seconds: float, vi: str, en: str) -> None:
    assert translator("vi").duration(seconds) == vi
    assert translator("en").duration(seconds) == en


def test_missing_values_are_a_dash() -> None:
    t = translator("vi")
    assert t.number(None) == t.percent(float("nan")) == t.duration(None) == t.datetime(None) == "–"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("vi-VN,vi;q=0.9,en-US;q=0.8", "vi"),
        ("en-GB,en;q=0.9", "en"),
        ("fr;q=1.0, vi;q=0.5, en;q=0.7", "en"),
        ("de, fr", "vi"),  # nothing supported: the default passed in
        ("", "vi"),
        ("vi;q=0, en;q=0.1", "en"),
        ("*", "vi"),
    ],
)
def test_negotiate(header: str, expected: str) -> None:
    assert negotiate(header, default="vi") == expected


def test_normalize_language() -> None:
    assert normalize_language("vi_VN") == "vi"
    assert normalize_language("EN-us") == "en"
    assert normalize_language("fr") == "en"
    assert normalize_language(None, default="vi") == "vi"
    assert translator("fr").language == "en"


def _translator_with(entries: dict[str, str], language: str = "vi") -> Translator:
    cat = Catalog(locale=language, domain="uptimewatch")
    for msgid, msgstr in entries.items():
        cat.add(msgid, msgstr)
    buffer = io.BytesIO()
    write_mo(buffer, cat)
    buffer.seek(0)
    return Translator("vi", Translations(buffer, domain="uptimewatch"))


def test_placeholders_are_filled_the_locale_way() -> None:
    msgid = N_("loss {loss:pct} over {window:dur}, {volts:num1} V")
    t = _translator_with({msgid: "mất {loss:pct} gói trong {window:dur}, {volts:num1} V"})
    assert t.gettext(msgid, loss=0.25, window=300, volts=48.25) == "mất 25% gói trong 5 phút, 48,2 V"
    # a stored Text renders the same way, in either language
    stored = Text.from_json(Text(msgid, {"loss": 0.25, "window": 300, "volts": 48.25}).to_json())
    assert t.text(stored) == "mất 25% gói trong 5 phút, 48,2 V"
    assert translator("en").text(stored) == "loss 25% over 5 min, 48.2 V"
    assert stored.english() == "loss 25% over 5 min, 48.2 V"


def test_a_broken_translation_falls_back_to_english(caplog: pytest.LogCaptureFixture) -> None:
    t = _translator_with({"on battery for {seconds:dur}": "dùng ắc quy {giây:dur}"})
    with caplog.at_level(logging.WARNING, logger="uptimewatch.i18n"):
        assert t.gettext("on battery for {seconds:dur}", seconds=120) == "on battery for 2 min"
    assert "cannot fill" in caplog.text


def test_plurals() -> None:
    t = translator("en")
    assert t.ngettext("{n} site is down", "{n} sites are down", 1) == "1 site is down"
    assert t.ngettext("{n} site is down", "{n} sites are down", 1234) == "1,234 sites are down"
    # Vietnamese has one plural form; the number is still written the Vietnamese way
    assert translator("vi").number(1234) == "1.234"


def test_text_without_params_keeps_braces() -> None:
    assert translator("en").text(Text("use {curly} braces")) == "use {curly} braces"
    assert translator("en").gettext("use {curly} braces") == "use {curly} braces"


def test_unknown_domain_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown gettext domain"):
        translator("vi", domain="nope")


def test_catalogs_load_for_every_language_and_domain() -> None:
    for language in LANGUAGES:
        for domain in ("uptimewatch", "status"):
            assert (LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po").is_file()
            t = translator(language, domain)
            assert isinstance(t.translations, gettext.NullTranslations)


def test_package_data_ships_the_catalogs() -> None:
    """pyproject's package-data globs pick up every catalog (the wheel test builds one for real)."""
    import tomllib

    pyproject = tomllib.loads((LOCALE_DIR.parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["uptimewatch"]
    shipped = {p.relative_to(LOCALE_DIR.parent).as_posix() for g in globs for p in LOCALE_DIR.parent.glob(g)}
    for po in LOCALE_DIR.glob("*/LC_MESSAGES/*.po"):
        assert po.relative_to(LOCALE_DIR.parent).as_posix() in shipped
