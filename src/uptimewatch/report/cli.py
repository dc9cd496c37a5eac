"""``uptimewatch report``: availability tables from the daemon's ledger, read-only.

The language is ``province.language`` unless ``--lang`` says otherwise. Reading months of
ledger takes a while: on a terminal, a progress line on stderr says how far it got (nothing on
a pipe, see :mod:`uptimewatch.progress`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..config import capabilities
from ..config.loader import ConfigError, InventoryProgress, load_config
from ..i18n import Translator, translator
from ..probing.registry import RegistryError, installed
from ..progress import Progress
from .compute import Availability, CriticalReport, GroupBy, Ledger, availability, critical_period, read_ledger
from .pdf import PdfUnavailableError, html_to_pdf
from .render import Report, to_csv, to_html, to_markdown


def parse_time(text: str, tz: ZoneInfo, *, end_of_day: bool = False) -> float:
    """``2026-11-15`` (midnight; with ``end_of_day`` the next midnight) or ``2026-11-15 06:00``
    / ISO 8601; without an offset the time is in the province's time zone."""
    text = text.strip()
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end_of_day:
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), tz).timestamp()
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def _aware(moment: dt.datetime, tz: ZoneInfo) -> float:
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)).timestamp()


def group_names(config: Any) -> dict[str, str]:
    names: dict[str, str] = {c.id: c.name for c in config.carriers}
    for d in config.districts:
        names[d.id] = d.name
        for c in d.communes:
            names[f"{d.id}/{c.id}"] = c.name
    return names


def cli_report(args: argparse.Namespace) -> int:
    # before months of ledger are read: a PDF this installation cannot make fails now, saying how
    if args.format == "pdf" and (problem := capabilities.missing(capabilities.PDF)) is not None:
        _say(problem)
        return 1
    inventory = InventoryProgress()
    try:
        loaded = load_config(Path(args.config), on_resolve=inventory, probe_models=installed().settings())
    except RegistryError as exc:
        inventory.close()
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        inventory.close()
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    inventory.close()
    config = loaded.config
    tz = ZoneInfo(config.province.timezone)
    language = args.lang or config.province.language
    t = translator(language, tz=tz)
    if args.format == "pdf" and not args.output and sys.stdout.isatty():
        _say(t.gettext("a PDF goes to a file: give -o FILE.pdf"))
        return 2
    db = Path(args.db) if args.db else loaded.store_path()
    progress = Progress(_describe(t, "read"))
    try:
        ledger = read_ledger(
            db,
            province=config.province.id,
            now=time.time(),
            progress=lambda done, total: _step(progress, done, total),
        )
    except (FileNotFoundError, ValueError) as exc:
        progress.close()
        print(f"uptimewatch report: {exc}", file=sys.stderr)
        return 1
    progress.start(_site_steps(ledger, args), _describe(t, "compute"))

    by: GroupBy = args.by
    names = group_names(config)
    main = None
    critical = None
    try:
        if args.start or args.end:
            if not (args.start and args.end):
                _say(t.gettext("give both --from and --to"))
                return 2
            start = parse_time(args.start, tz)
            end = parse_time(args.end, tz, end_of_day=True)
            if end <= start:
                _say(t.gettext("--to must be after --from"))
                return 2
            main = availability(ledger, start, end, by, names, on_site=progress.advance)
        margin = args.margin * 3600.0 if args.margin is not None else None
        crit_by: GroupBy = by if args.start else "district"
        if args.critical_period:
            periods = getattr(getattr(config, "alerting", None), "critical_periods", None) or []
            found = next((p for p in periods if p.name == args.critical_period), None)
            if found is None:
                known = ", ".join(p.name for p in periods) or t.gettext("none configured")
                _say(
                    t.gettext(
                        "no critical period {name} ({known})", name=repr(args.critical_period), known=known
                    )
                )
                return 2
            critical = critical_period(
                ledger,
                found.name,
                _aware(found.start, tz),
                _aware(found.end, tz),
                margin=margin,
                by=crit_by,
                names=names,
                on_site=progress.advance,
            )
        elif args.window:
            start_w = parse_time(args.window[0], tz)
            end_w = parse_time(args.window[1], tz, end_of_day=True)
            if end_w <= start_w:
                _say(t.gettext("the window must end after it starts"))
                return 2
            critical = critical_period(
                ledger,
                t.gettext("chosen window"),
                start_w,
                end_w,
                margin=margin,
                by=crit_by,
                names=names,
                on_site=progress.advance,
            )
    except ValueError as exc:
        progress.close()
        print(f"uptimewatch report: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    if main is None and critical is None:
        _say(t.gettext("give --from and --to, --critical-period or --window"))
        return 2

    report = Report(
        config.province.name,
        tz,
        time.time(),
        main,
        critical,
        language=t.language,
        # the charts show districts whatever the tables are grouped by
        districts=_by_district(ledger, main, names),
        critical_districts=_critical_by_district(ledger, critical, margin, names),
    )
    if args.format == "md":
        text = to_markdown(report)
    elif args.format == "csv":
        text = to_csv(report, incidents=args.incidents)
    elif args.format == "pdf":
        try:
            pdf = html_to_pdf(to_html(report))
        except PdfUnavailableError as exc:
            print(f"uptimewatch report: {exc}", file=sys.stderr)
            return 1
        if args.output:
            Path(args.output).write_bytes(pdf)
        else:
            sys.stdout.buffer.write(pdf)
            sys.stdout.flush()
        return 0
    else:
        text = to_html(report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
        sys.stdout.write(text)
    return 0


def _say(message: str) -> None:
    print(f"uptimewatch report: {message}", file=sys.stderr)


def _describe(t: Translator, stage: str) -> Callable[[int, int | None], str]:
    def describe(done: int, total: int | None) -> str:
        share = t.percent(done / total) if total else ""
        if stage == "read":
            return t.gettext(
                "Reading the ledger: {done:num0} of {total:num0} intervals ({share})",
                done=done,
                total=total or 0,
                share=share,
            )
        return t.gettext(
            "Computing availability: {done:num0} of {total:num0} sites ({share})",
            done=done,
            total=total or 0,
            share=share,
        )

    return describe


def _step(progress: Progress, done: int, total: int) -> None:
    if progress.total != total:
        progress.start(total)
    progress.advance(done - progress.done)


def _site_steps(ledger: Ledger, args: argparse.Namespace) -> int:
    """How many site computations the report makes (each table walks every site once)."""
    tables = (1 if args.start or args.end else 0) + (3 if args.critical_period or args.window else 0)
    return len(ledger.sites) * max(1, tables)


def _by_district(ledger: Ledger, main: Availability | None, names: dict[str, str]) -> Availability | None:
    if main is None or main.by == "district":
        return None
    return availability(ledger, main.start, main.end, "district", names)


def _critical_by_district(
    ledger: Ledger, critical: CriticalReport | None, margin: float | None, names: dict[str, str]
) -> CriticalReport | None:
    if critical is None or dict(critical.phases)["during"].by == "district":
        return None
    return critical_period(
        ledger, critical.name, critical.start, critical.end, margin=margin, by="district", names=names
    )
