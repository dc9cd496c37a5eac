"""The leadership report in both languages, from three months of ledger written through the real
Ledger over the demo province: md, csv, html with inline SVG charts, and the PDF checked with
poppler's own tools (``pdftotext``, ``pdfinfo``, ``pdffonts``, ``pdftoppm``).

The story: 2026-01-01 to 2026-04-01, polling day 2026-03-15 (the critical period ``bau-cu``).
A leaf site in every district drops out now and then; on polling day the Đà Bắc hub loses mains
at 09:10, its battery runs out at 10:10 and it is down until 10:55, the sites behind it cut off
(unreachable) the while; the day before a Mai Châu site is down 40 min, the day after a Kim Bôi
site 25 min.

The PDFs and their pages as PNG are kept in var/test-artifacts/report/ for a person to look at.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from PIL import Image

from uptimewatch.cli import main
from uptimewatch.config.loader import load_config
from uptimewatch.demo.province import generate_province
from uptimewatch.i18n import N_, Text, translator
from uptimewatch.ledger import Ledger
from uptimewatch.model.checks import ON_BATTERY_CODE, CheckState
from uptimewatch.model.health import SiteState, StateChange
from uptimewatch.report import availability, critical_period, read_ledger
from uptimewatch.store import SqliteStore

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "var" / "test-artifacts" / "report"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
H = 3600.0
START = dt.datetime(2026, 1, 1, tzinfo=TZ).timestamp()
END = dt.datetime(2026, 4, 1, tzinfo=TZ).timestamp()
POLL_START = dt.datetime(2026, 3, 15, tzinfo=TZ).timestamp()
POLL_END = dt.datetime(2026, 3, 16, tzinfo=TZ).timestamp()
POPPLER = all(shutil.which(tool) for tool in ("pdftotext", "pdfinfo", "pdffonts", "pdftoppm"))

pytestmark = pytest.mark.skipif(not POPPLER, reason="poppler-utils (Makefile DEBIAN_PACKAGES) is missing")


def _device(role: str, name: str, reason: Text) -> Text:
    """A site's reason as the health model words it: ``router Router X: no reply to ping (3/3 lost)``."""
    label = Text(N_("{role} {device}"), {"role": Text(role), "device": name})
    return Text(N_("{device}: {reason}"), {"device": label, "reason": reason})


NO_PING = Text(N_("no reply to ping ({lost}/{sent} lost)"), {"lost": 3, "sent": 3})


def _site(sid: str, old: SiteState, new: SiteState, at: float, reason: Any) -> StateChange:
    return StateChange("site", sid, None, None, old, new, reason, at)


def _battery(sid: str, on: bool, at: float) -> StateChange:
    # worded and coded as the model's battery check does: the ledger goes by the code
    left = Text(N_("on battery, ~{minutes} min left"), {"minutes": 60}, ON_BATTERY_CODE)
    reason: Any = left if on else Text(N_("on mains"))
    old, new = (CheckState.OK, CheckState.WARNING) if on else (CheckState.WARNING, CheckState.OK)
    return StateChange("check", sid, "power", "power.on_battery", old, new, reason, at)


@dataclass(frozen=True)
class Province:
    workdir: Path
    config: Path
    db: Path
    hub: str  # the Đà Bắc hub
    hub_name: str
    behind_hub: tuple[str, ...]
    sites: dict[str, str]  # id -> name
    districts: dict[str, str]  # id -> name
    intervals: int


def _story(config: dict[str, Any]) -> tuple[list[StateChange], str, list[str]]:
    sites = config["sites"]
    by_id = {s["id"]: s for s in sites}
    hub = next(s["id"] for s in sites if s["district"] == "da-bac" and not s["upstream"])
    downstream: dict[str, list[str]] = {}
    for s in sites:
        for up in s["upstream"]:
            downstream.setdefault(up, []).append(s["id"])
    behind: list[str] = []
    todo = list(downstream.get(hub, []))
    while todo:
        sid = todo.pop()
        behind.append(sid)
        todo += downstream.get(sid, [])
    ok = Text(N_("all checks OK"))
    changes = [_site(s["id"], SiteState.UNKNOWN, SiteState.UP, START, ok) for s in sites]

    def outage(sid: str, start: float, minutes: float, reason: Text) -> None:
        changes.append(_site(sid, SiteState.UP, SiteState.DOWN, start, reason))
        changes.append(_site(sid, SiteState.DOWN, SiteState.UP, start + minutes * 60, ok))

    def router(sid: str) -> str:
        return f"Router {by_id[sid]['name']}"

    leaves = {
        d["id"]: [
            s["id"] for s in sites if s["district"] == d["id"] and s["upstream"] and s["id"] not in behind
        ]
        for d in config["districts"]
    }
    # background: one leaf site of a district down now and then, every three days in turn
    districts = [d for d in leaves if leaves[d]]
    day = 0
    while START + (day + 1) * 86400 < END:
        at = START + day * 86400
        if not POLL_START - 2 * 86400 <= at <= POLL_END + 86400:
            d = districts[day % len(districts)]
            sid = leaves[d][(day // len(districts)) % len(leaves[d])]
            outage(
                sid,
                at + (8 + day % 9) * H,
                15 + (day * 7) % 50,
                _device("base station", router(sid), NO_PING),
            )
        day += 3
    # the day before and the day after polling day
    mai_chau = leaves["mai-chau"][1]
    timeout = Text(N_("SNMP timeout on {device}"), {"device": router(mai_chau)})
    outage(mai_chau, POLL_START - 86400 + 14 * H, 40, _device("base station", router(mai_chau), timeout))
    kim_boi = leaves["kim-boi"][0]
    outage(kim_boi, POLL_END + 9 * H, 25, _device("base station", router(kim_boi), NO_PING))
    # polling day: the Đà Bắc hub on battery at 09:10, dark at 10:10, back on mains at 10:55
    on_battery, dark, back = POLL_START + 9 * H + 600, POLL_START + 10 * H + 600, POLL_START + 10 * H + 3300
    hub_name = by_id[hub]["name"]
    changes.append(_battery(hub, True, on_battery))
    left = _device(
        "power unit", f"Nguồn {hub_name}", Text(N_("on battery, ~{minutes} min left"), {"minutes": 60})
    )
    changes.append(_site(hub, SiteState.UP, SiteState.DEGRADED, on_battery, left))
    changes.append(
        _site(hub, SiteState.DEGRADED, SiteState.DOWN, dark, _device("router", router(hub), NO_PING))
    )
    cut = Text(N_("cut off behind {uplinks:and}"), {"uplinks": [hub_name]})
    changes += [_site(sid, SiteState.UP, SiteState.UNREACHABLE, dark + 20, cut) for sid in behind]
    changes.append(_site(hub, SiteState.DOWN, SiteState.UP, back, ok))
    changes.append(_battery(hub, False, back))
    changes += [_site(sid, SiteState.UNREACHABLE, SiteState.UP, back + 40, ok) for sid in behind]
    return sorted(changes, key=lambda c: c.at), hub, behind


async def _write_ledger(config_path: Path, db: Path, changes: list[StateChange]) -> None:
    now = [START]
    store = SqliteStore(db)
    await store.open()
    ledger = Ledger(store, clock=lambda: now[0], flush_delay=0.0)
    await ledger.start(load_config(config_path).config)
    for change in changes:
        now[0] = change.at
        ledger.record([change])
        await ledger.flush()
    now[0] = END
    await ledger.stop()
    await store.close()


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Province:
    workdir = tmp_path_factory.mktemp("report-print")
    demo = generate_province(48, districts=4)
    config = demo.config
    config["storage"] = {"path": str(workdir / "uptimewatch.sqlite")}
    config.setdefault("alerting", {})["critical_periods"] = [
        {"name": "bau-cu", "start": "2026-03-15T00:00:00", "end": "2026-03-16T00:00:00"}
    ]
    changes, hub, behind = _story(config)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    db = workdir / "uptimewatch.sqlite"
    asyncio.run(_write_ledger(path, db, changes))
    sites = {s["id"]: s["name"] for s in config["sites"]}
    return Province(
        workdir,
        path,
        db,
        hub,
        sites[hub],
        tuple(behind),
        sites,
        {d["id"]: d["name"] for d in config["districts"]},
        sum(1 for c in changes if c.kind == "site"),
    )


def _report(province: Province, *args: str) -> None:
    argv = ["report", "-c", str(province.config), "--critical-period", "bau-cu", *args]
    assert main(argv) == 0, argv


def _poppler(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


def _pdf_text(pdf: Path) -> str:
    # soft hyphens and no-break spaces as plain text, lines joined: a heading may wrap
    return _poppler("pdftotext", "-enc", "UTF-8", str(pdf), "-").replace("\u00a0", " ")


@pytest.fixture(scope="module")
def pdfs(province: Province) -> dict[str, Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for lang in ("vi", "en"):
        pdf = ARTIFACTS / f"report-bau-cu-{lang}.pdf"
        pdf.unlink(missing_ok=True)
        args = ["--format", "pdf", "-o", str(pdf)]
        _report(province, *(args if lang == "vi" else [*args, "--lang", "en"]))  # vi: the province's
        for old in ARTIFACTS.glob(f"report-bau-cu-{lang}-*.png"):
            old.unlink()
        _poppler("pdftoppm", "-r", "110", "-png", str(pdf), str(ARTIFACTS / f"report-bau-cu-{lang}"))
        out[lang] = pdf
    return out


def _during(province: Province) -> Any:
    ledger = read_ledger(province.db, province="hoa-binh")
    return critical_period(ledger, "bau-cu", POLL_START, POLL_END, by="district")


def test_vietnamese_pdf_reads_in_vietnamese(province: Province, pdfs: dict[str, Path]) -> None:
    text = _pdf_text(pdfs["vi"])
    flat = " ".join(text.split())
    for heading in (
        "Báo cáo khả dụng mạng lưới — Tỉnh Hòa Bình",
        "Giai đoạn trọng điểm: bau-cu",
        "Trong giai đoạn trọng điểm",
        "Khả dụng theo huyện",
        "Diễn biến sự cố theo thời gian",
        "Sự cố trong giai đoạn trọng điểm",
        "Trước kỳ",
        "Trong kỳ",
        "Sau kỳ",
    ):
        assert heading in flat, heading
    assert "15/03/2026" in flat  # dd/MM/yyyy
    for name in province.districts.values():
        assert flat.count(name) >= 2, f"{name}: in the chart and in the tables"
    assert province.hub_name in flat
    # the reasons in Vietnamese, from the Texts the ledger keeps
    assert "bộ định tuyến Router " + province.hub_name + ": không trả lời ping (mất 3/3)" in flat
    assert "no reply" not in flat
    assert "Availability" not in flat
    # the figures: the polling day's availability, as computed, written the Vietnamese way
    phases = dict(_during(province).phases)
    during = phases["during"].total.availability
    assert during is not None
    assert during < 100
    assert f"{during:.3f}".replace(".", ",") + " %" in flat
    assert "Trang 1/" in flat  # page numbers in the footer
    # diacritics survive as characters, not boxes or question marks
    assert not set(flat) & {"\ufffd", "\u25a1"}
    assert {"ả", "ệ", "Đ", "ụ", "ố", "ư", "ờ"} <= set(flat)


def test_english_pdf_and_the_lang_override(province: Province, pdfs: dict[str, Path]) -> None:
    flat = " ".join(_pdf_text(pdfs["en"]).split())
    for heading in (
        "Availability report — Tỉnh Hòa Bình",
        "Critical period: bau-cu",
        "Availability per district",
        "Incidents over time",
        "Incidents during the period",
    ):
        assert heading in flat, heading
    assert "15 Mar 2026" in flat
    during = dict(_during(province).phases)["during"].total.availability
    assert during is not None
    assert f"{during:.3f} %" in flat
    assert f"router Router {province.hub_name}: no reply to ping (3/3 lost)" in flat
    assert "Page 1 of" in flat
    assert "Khả dụng" not in flat
    for name in province.districts.values():
        assert name in flat  # place names stay Vietnamese


def test_pdf_is_a4_landscape_with_embedded_fonts(pdfs: dict[str, Path]) -> None:
    for lang, pdf in pdfs.items():
        lines = _poppler("pdfinfo", str(pdf)).splitlines()
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        assert 2 <= int(info["Pages"]) <= 6, info["Pages"]
        width, height = (float(x) for x in re.findall(r"[\d.]+", info["Page size"])[:2])
        assert (round(width), round(height)) == (842, 595), info["Page size"]  # A4 landscape
        assert ("Báo cáo" if lang == "vi" else "Availability report") in info["Title"]
        fonts = _poppler("pdffonts", str(pdf)).splitlines()[2:]
        assert fonts, "no font in the PDF"
        for line in fonts:
            cols = line.split()
            # name type... encoding emb sub uni id gen: every font embedded (as a subset)
            assert cols[-5] == "yes", f"{lang}: font not embedded: {line}"
        assert any("NotoSans" in line.replace("-", "") for line in fonts), fonts


def test_pdf_pages_as_png_show_the_charts(pdfs: dict[str, Path]) -> None:
    """The rasterized pages carry the charts' colours: the navy bars of polling day and the red
    bars of incidents on the timeline (as drawn, not only as text)."""
    for lang in pdfs:
        pages = sorted(ARTIFACTS.glob(f"report-bau-cu-{lang}-*.png"))
        assert len(pages) >= 2
        colours: set[tuple[int, int, int]] = set()
        for page in pages[:2]:
            with Image.open(page) as image:
                assert image.width > image.height > 800  # landscape, 110 dpi
                rgb = image.convert("RGB")
                colours |= {c for _n, c in rgb.getcolors(maxcolors=1 << 20) or []}
        assert (0x1F, 0x4E, 0x79) in colours, f"{lang}: no 'during' bar"
        assert (0xB0, 0x00, 0x20) in colours, f"{lang}: no incident bar"
        assert (0x9F, 0xB6, 0xCD) in colours, f"{lang}: no 'before' bar"


def test_html_has_two_inline_charts_and_loads_nothing(province: Province, tmp_path: Path) -> None:
    for lang in ("vi", "en"):
        page = tmp_path / f"r-{lang}.html"
        _report(province, "--format", "html", "--lang", lang, "-o", str(page))
        text = page.read_text(encoding="utf-8")
        assert f'<html lang="{lang}">' in text
        assert text.count("<svg ") == 2
        assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text)
        assert "@import" not in text
        assert "url(" not in text
        # one bar per district and phase, one red bar per incident drawn
        assert text.count('fill="#1f4e79"><title>') == len(province.districts)
        # the hub's outage and the sites' cut-off time are in the tables, not only in the chart
        assert province.hub_name in text
    vi = (tmp_path / "r-vi.html").read_text(encoding="utf-8")
    assert "Bị cô lập (giờ)" in vi
    assert "Trục bắt đầu từ" in vi


def test_csv_headers_in_both_languages_same_values(province: Province, tmp_path: Path) -> None:
    tables = {}
    for lang in ("vi", "en"):
        out = tmp_path / f"r-{lang}.csv"
        _report(province, "--format", "csv", "--lang", lang, "-o", str(out))
        tables[lang] = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    vi, en = tables["vi"], tables["en"]
    assert en[0] == [
        "Period", "Group", "Name", "Sites", "Availability (%)", "Up (s)", "Degraded (s)", "Down (s)",
        "Unreachable (s)", "Maintenance (s)", "No data (s)", "On battery (s)", "Incidents", "MTTR (s)",
    ]  # fmt: skip
    assert vi[0] == [
        "Giai đoạn", "Mã nhóm", "Tên", "Số trạm", "Khả dụng (%)", "Hoạt động (giây)", "Suy giảm (giây)",
        "Gián đoạn (giây)", "Bị cô lập (giây)", "Bảo trì (giây)", "Không có dữ liệu (giây)",
        "Chạy ắc quy (giây)", "Sự cố", "Khắc phục TB (giây)",
    ]  # fmt: skip
    assert [r[0] for r in vi[1:]].count("Trong kỳ") == len(province.districts) + 1
    assert [r[0] for r in en[1:]].count("During") == len(province.districts) + 1
    # labels translated, values the same machine-readable numbers
    assert [r[1] for r in vi[1:]] == [r[1] for r in en[1:]]
    assert [r[3:] for r in vi[1:]] == [r[3:] for r in en[1:]]
    during_total = next(r for r in en if r[0] == "During" and r[1] == "total")
    phases = dict(_during(province).phases)
    assert float(during_total[4]) == pytest.approx(phases["during"].total.availability, abs=1e-4)
    da_bac = next(r for r in en if r[0] == "During" and r[1] == "da-bac")
    assert float(da_bac[8]) > 0  # unreachable seconds behind the hub

    for lang, header in (("vi", "Mã trạm"), ("en", "Site ID")):
        out = tmp_path / f"i-{lang}.csv"
        _report(province, "--format", "csv", "--incidents", "--lang", lang, "-o", str(out))
        rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert rows[0][1] == header
        hub_rows = [r for r in rows[1:] if r[1] == province.hub]
        assert hub_rows, "the hub's outage is an incident"
        assert hub_rows[0][3] == "2026-03-15T10:10:00+07:00"  # ISO 8601 in the province's zone
        assert hub_rows[0][5] == str(45 * 60)
        if lang == "vi":
            assert "không trả lời ping" in hub_rows[0][6]


def test_markdown_in_both_languages(province: Province, tmp_path: Path) -> None:
    for lang, words in (
        (
            "vi",
            ["# Báo cáo khả dụng mạng lưới — Tỉnh Hòa Bình", "### Trong kỳ: 00:00 15/03/2026", "| Huyện |"],
        ),
        ("en", ["# Availability report — Tỉnh Hòa Bình", "### During: 15 Mar 2026 00:00", "| District |"]),
    ):
        out = tmp_path / f"r-{lang}.md"
        _report(province, "--lang", lang, "-o", str(out))
        text = out.read_text(encoding="utf-8")
        for w in words:
            assert w in text, (lang, w)


def _run_report(province: Province, stderr: int) -> subprocess.CompletedProcess[bytes]:
    argv = [
        sys.executable, "-m", "uptimewatch.cli", "report", "-c", str(province.config),
        "--from", "2026-01-01", "--to", "2026-03-31", "--format", "csv", "-o", os.devnull,
    ]  # fmt: skip
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=stderr, timeout=120, check=False)


def test_progress_line_on_a_tty_nothing_on_a_pipe(province: Province) -> None:
    piped = _run_report(province, subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""

    leader, follower = os.openpty()
    try:
        on_tty = _run_report(province, follower)
        os.close(follower)
        follower = -1
        written = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side is closed and drained
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert on_tty.returncode == 0
    text = written.decode()
    assert "\r" in text
    total = province.intervals
    n = translator("vi").number
    assert f"Đang đọc dữ liệu lịch sử: {n(total)}/{n(total)} khoảng trạng thái (100%)" in text
    sites = len(province.sites)
    assert f"Đang tính khả dụng: {n(sites)}/{n(sites)} trạm (100%)" in text
    assert text.endswith("\n")


def test_numbers_agree_with_the_ledger(province: Province) -> None:
    """The story as the report reads it: the hub's 45 min, the cut-off sites, the battery spell."""
    ledger = read_ledger(province.db, province="hoa-binh")
    a = availability(ledger, POLL_START, POLL_END, "site")
    rows = {r.key: r for r in a.rows}
    assert rows[province.hub].seconds["down"] == 45 * 60
    assert rows[province.hub].battery_s == pytest.approx(105 * 60)
    assert [i.site_id for i in a.incidents] == [province.hub]
    for sid in province.behind_hub:
        assert rows[sid].seconds["unreachable"] == pytest.approx(45 * 60 - 20 + 40)
        assert rows[sid].incidents == 0
    district = {r.key: r for r in availability(ledger, POLL_START, POLL_END, "district").rows}
    judged = district["da-bac"].judged_s
    assert district["da-bac"].availability == pytest.approx(100 * (judged - 45 * 60) / judged)


def test_usage_errors_speak_the_provinces_language(province: Province) -> None:
    def report(*args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "uptimewatch.cli", "report", "-c", str(province.config), *args]
        return subprocess.run(argv, capture_output=True, timeout=120, check=False)

    done = report("--from", "2026-01-01")
    assert (done.returncode, done.stderr.decode()) == (2, "uptimewatch report: hãy cho cả --from và --to\n")
    done = report("--from", "2026-01-01", "--lang", "en")
    assert (done.returncode, done.stderr.decode()) == (2, "uptimewatch report: give both --from and --to\n")
    done = report("--critical-period", "nope")
    assert done.returncode == 2
    assert done.stderr.decode().startswith("uptimewatch report: không có giai đoạn trọng điểm 'nope' (")
