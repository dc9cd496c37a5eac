"""The gettext catalogs match the source: every extracted string is in every language's catalog of
its domain, and has a Vietnamese translation with the same placeholders.

Extraction uses the same mapping files as ``make catalogs`` (``src/uptimewatch/locale/<domain>.cfg``),
through Babel's own extractor, so what this test sees is what ``pybabel extract`` writes.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from uptimewatch.i18n import DOMAINS, LANGUAGES, LOCALE_DIR

SRC = Path(__file__).resolve().parents[1] / "src" / "uptimewatch"
FIX = "run `make catalogs`, then fill in the Vietnamese msgstr in"

MsgId = str | tuple[str, ...]


@functools.cache
def extracted(domain: str) -> dict[MsgId, str]:
    """msgid (or (singular, plural)) -> the first place it occurs."""
    with (LOCALE_DIR / f"{domain}.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[MsgId, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(SRC), method_map, options_map, keywords=DEFAULT_KEYWORDS
    ):
        key: MsgId = message if isinstance(message, str) else tuple(m for m in message if m)
        found.setdefault(key, f"{filename}:{lineno}")
    return found


def catalog(domain: str, language: str) -> Catalog:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    assert path.is_file(), f"missing catalog {path}: {FIX} it"
    with path.open("rb") as fh:
        return read_po(fh, locale=language, domain=domain)


def placeholders(text: str) -> set[str]:
    try:
        return {f"{name}:{spec}" for _lit, name, spec, _conv in string.Formatter().parse(text) if name}
    except ValueError:
        return {"<unbalanced braces>"}


def catalog_ids(cat: Catalog) -> set[MsgId]:
    return {m.id if isinstance(m.id, str) else tuple(m.id) for m in cat if m.id}


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_has_every_string(domain: str, language: str) -> None:
    source = extracted(domain)
    have = catalog_ids(catalog(domain, language))
    missing = sorted((str(k), where) for k, where in source.items() if k not in have)
    assert not missing, (
        f"{language}/{domain}.po lacks {len(missing)} string(s), e.g. {missing[:5]}: "
        f"{FIX} src/uptimewatch/locale/{language}/LC_MESSAGES/{domain}.po"
    )


@pytest.mark.parametrize("domain", DOMAINS)
def test_vietnamese_translations_are_complete(domain: str) -> None:
    source = extracted(domain)
    problems: list[str] = []
    for message in catalog(domain, "vi"):
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else tuple(message.id)
        if key not in source:
            continue  # obsolete: harmless, `make catalogs` drops it
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strs = [message.string] if isinstance(message.string, str) else list(message.string)
        if message.fuzzy:
            problems.append(f"fuzzy: {ids[0]!r}")
        if not all(s and s.strip() for s in strs):
            problems.append(f"untranslated: {ids[0]!r}")
            continue
        # The plural form may show {n} where the singular says "one"; everything else must match.
        expected = {p for i in ids for p in placeholders(i) if not p.startswith("n:")}
        for s in strs:
            if {p for p in placeholders(s) if not p.startswith("n:")} != expected:
                problems.append(f"placeholders differ: {ids[0]!r} -> {s!r}")
    assert not problems, f"vi/{domain}.po: {problems[:10]} ({len(problems)} in all)"


def test_domains_do_not_share_files() -> None:
    """Each source file feeds one domain, so two people never edit one catalog for one file."""
    seen: dict[str, str] = {}
    for domain in DOMAINS:
        for where in extracted(domain).values():
            filename = where.rsplit(":", 1)[0]
            assert seen.setdefault(filename, domain) == domain, f"{filename} feeds two domains"


def test_catalog_headers_declare_language_and_plurals() -> None:
    for domain in DOMAINS:
        for language in LANGUAGES:
            text = (LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po").read_text(encoding="utf-8")
            assert f'"Language: {language}\\n"' in text
            assert re.search(r'"Plural-Forms: nplurals=\d;', text)
