"""``uptimewatch report`` against a hand-computed ledger (the timeline of tests/test_ledger.py).

Hand computation, 2026-11-01 00:00-24:00 (+07), hours:

* bts-a: up 0-2, degraded 2-3 (on battery from 2), down 3-4, up 4-10, unreachable 10-11, up 11-20,
  down 20-20.5, up 20.5-24; battery 2-4.5. up 20.5, degraded 1, down 1.5, unreachable 1:
  availability 21.5 / 23 = 93.478 %; incidents 1 h (2 h on battery) and 30 min: MTTR 45 min.
* bts-b: maintenance 01:00-03:00; down 1.5-2.5 (inside it: no incident), down 5-6. up 21, down 1,
  maintenance 2: availability 21 / 22 = 95.455 %, one incident, MTTR 1 h.
* bts-c: first seen at 12: up 12, no data 12: 100 %.
* total: (53.5 + 1) / (53.5 + 1 + 2.5) = 95.614 %; 3 incidents; MTTR (60 + 30 + 60) / 3 = 50 min.
"""

from __future__ import annotations

import csv
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.test_ledger import END, T0, H, ledger_config, write_timeline
from uptimewatch.cli import main
from uptimewatch.report import availability, critical_period, read_ledger


@pytest.fixture
async def ledger_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    db = tmp_path / "var" / "uptimewatch.sqlite"  # where the daemon puts it by default
    await write_timeline(tmp_path, db)
    return db


async def test_numbers_match_the_hand_computed_ledger(ledger_db: Path, tmp_path: Path) -> None:
    ledger = read_ledger(ledger_db, province="test")
    assert ledger.data_end == END
    a = availability(ledger, T0, END, "site")
    rows = {r.key: r for r in a.rows}
    site_a = rows["bts-a"]
    assert site_a.availability == pytest.approx(100 * 21.5 / 23)
    assert {k: v / H for k, v in site_a.seconds.items()} == {
        "up": 20.5,
        "degraded": 1,
        "down": 1.5,
        "unreachable": 1,
        "maintenance": 0,
        "no_data": 0,
    }
    assert site_a.incidents == 2
    assert site_a.mttr_s == 45 * 60
    assert site_a.battery_s == 2.5 * H

    site_b = rows["bts-b"]
    assert site_b.availability == pytest.approx(100 * 21 / 22)
    assert site_b.seconds["maintenance"] == 2 * H
    assert site_b.seconds["down"] == 1 * H
    assert site_b.incidents == 1
    assert site_b.mttr_s == H

    site_c = rows["bts-c"]
    assert site_c.availability == 100
    assert site_c.seconds["no_data"] == 12 * H

    assert a.total.availability == pytest.approx(100 * 54.5 / 57)
    assert a.total.mttr_s == 50 * 60
    assert [(i.site_id, (i.start - T0) / H, (i.end - T0) / H if i.end else None) for i in a.incidents] == [
        ("bts-a", 3, 4),
        ("bts-b", 5, 6),
        ("bts-a", 20, 20.5),
    ]
    first = a.incidents[0]
    assert first.cause == "base station: no reply to ping (3/3 lost)"
    assert first.on_battery_s == 2 * H
    assert a.incidents[2].on_battery_s == 0

    by_district = {r.key: r for r in availability(ledger, T0, END, "district").rows}
    assert by_district["d1"].availability == pytest.approx(100 * 33.5 / 35)
    assert by_district["d1"].sites == 2
    assert by_district["d2"].availability == pytest.approx(100 * 21 / 22)


async def test_critical_period_before_during_after(ledger_db: Path) -> None:
    ledger = read_ledger(ledger_db, province="test")
    report = critical_period(ledger, "polling", T0 + 3 * H, T0 + 5 * H, by="district")
    phases = dict(report.phases)
    assert (phases["before"].start, phases["after"].end) == (T0 + 1 * H, T0 + 7 * H)
    # before: bts-b entirely in maintenance, bts-a up then degraded
    assert phases["before"].total.availability == 100
    assert phases["before"].total.seconds["maintenance"] == 2 * H
    assert phases["during"].total.availability == pytest.approx(75)
    assert [i.site_id for i in phases["during"].incidents] == ["bts-a"]
    assert phases["after"].total.availability == pytest.approx(75)


async def test_cli_markdown_csv_html(
    ledger_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    ledger_config(tmp_path)  # (re)writes config.yaml beside var/
    base = ["report", "-c", str(config), "--from", "2026-11-01", "--to", "2026-11-01"]

    assert main(base) == 0
    md = capsys.readouterr().out
    # (the province of tests/fixtures/daemon.py speaks English, the default)
    assert (
        "| Trạm Pà Cò | 1 | 93.478\u00a0% | 20.50 | 1.00 | 1.50 | 1.00 | 0.00 | 0.00 | 2.50 | 2 | 45 min |"
        in md
    )
    assert "| **Total** | 3 | 95.614\u00a0% |" in md
    assert "base station: no reply to ping (3/3 lost)" in md
    assert "| 1 Nov 2026 03:00 | 1 Nov 2026 04:00 | 1 hr |" in md

    out = tmp_path / "report.csv"
    assert main([*base, "--by", "district", "--format", "csv", "-o", str(out)]) == 0
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    by_group = {r["Group"]: r for r in table}
    assert by_group["d1"]["Name"] == "Huyện Mai Châu"
    assert by_group["d2"]["Name"] == "Huyện Đà Bắc"
    assert by_group["d1"]["Period"] == "Report"
    assert float(by_group["d1"]["Availability (%)"]) == pytest.approx(100 * 33.5 / 35, abs=1e-4)
    assert by_group["d1"]["Unreachable (s)"] == "3600"
    assert by_group["d2"]["Maintenance (s)"] == "7200"
    assert by_group["total"]["Incidents"] == "3"
    assert by_group["total"]["MTTR (s)"] == "3000"

    assert main([*base, "--format", "csv", "--incidents", "-o", str(out)]) == 0
    incidents = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    got = [(r["Site ID"], r["Start"], r["End"], r["Duration (s)"], r["On battery (s)"]) for r in incidents]
    assert got == [
        ("bts-a", "2026-11-01T03:00:00+07:00", "2026-11-01T04:00:00+07:00", "3600", "7200"),
        ("bts-b", "2026-11-01T05:00:00+07:00", "2026-11-01T06:00:00+07:00", "3600", "0"),
        ("bts-a", "2026-11-01T20:00:00+07:00", "2026-11-01T20:30:00+07:00", "1800", "0"),
    ]

    page = tmp_path / "report.html"
    argv = [*base, "--by", "district", "--format", "html", "--window", "2026-11-01 03:00", "2026-11-01 05:00"]
    assert main([*argv, "-o", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    parsed = _Tables()
    parsed.feed(text)
    assert parsed.charset == "utf-8"
    assert parsed.external == [], "the report must not load anything"
    main_table = parsed.tables[0]
    assert main_table[0][:3] == ["District", "Sites", "Availability"]
    assert main_table[1][:3] == ["Huyện Mai Châu", "2", "95.714\u00a0%"]
    assert main_table[-1][:3] == ["Total", "3", "95.614\u00a0%"]
    phases = next(t for t in parsed.tables if t[0][1:] == ["Before", "During", "After"])
    assert phases[1] == ["Availability", "100.000\u00a0%", "75.000\u00a0%", "75.000\u00a0%"]
    assert "Trạm Pà Cò" in text
    assert "@media print" in text


async def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger_config(tmp_path)
    config = str(tmp_path / "config.yaml")
    assert (
        main(["report", "-c", config, "--from", "2026-11-01", "--to", "2026-11-01", "--db", "nope.db"]) == 1
    )
    assert "no ledger database" in capsys.readouterr().err


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.charset: str | None = None
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and a.get("charset"):
            self.charset = a["charset"]
        if tag in ("link", "script", "img") and (a.get("href") or a.get("src")):
            self.external.append(str(a.get("href") or a.get("src")))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
