"""The profile format additions the radio catalog needs: `rows`, `product`, `quotient` and negative
scales (MSE to SNR). Small profiles, decoded from hand-made varbinds; the aggregates borrow
registered field names, since what is tested is the arithmetic, not the meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from uptimewatch.probing.snmp_types import SnmpType, Varbind
from uptimewatch.profiles import CompiledProfile, decode
from uptimewatch.profiles.catalog import load_files

ROOT = "1.3.6.1.4.1.99999.1.1"

PROFILE = f"""
name: rows-test
description: a radio with three carriers
match: {{sys_object_id: [1.3.6.1.4.1.99999]}}
scalars:
  link.snr_db: {{oid: 1.3.6.1.4.1.99999.2.0, type: int, scale: -0.01, unit: dB}}
tables:
  carriers:
    root: {ROOT}
    columns:
      link.carrier_rx_level_dbm[{{index}}]: {{oid: {ROOT}.2, type: int, signed: true}}
      link.carrier_oper_up[{{index}}]: {{oid: {ROOT}.3, type: bool, map: {{1: true, 2: false}}}}
      _c.raw[{{index}}]: {{oid: {ROOT}.4, type: int}}
      _c.div[{{index}}]: {{oid: {ROOT}.5, type: int, map: {{0: 1, 1: 10, 3: 1000}}}}
derived:
  link.carrier_snr_db[{{index}}]: {{quotient: ["_c.raw[{{index}}]", "_c.div[{{index}}]"]}}
  link.carrier_capacity_bps[{{index}}]: {{product: ["_c.raw[{{index}}]", "_c.div[{{index}}]"]}}
  link.rx_level_b_dbm: {{rows: {{of: "link.carrier_rx_level_dbm[{{index}}]"}}}}
  link.rx_level_chain1_dbm: {{rows: {{of: "link.carrier_rx_level_dbm[{{index}}]", pick: min}}}}
  link.rssi_dbm: {{rows: {{of: "link.carrier_rx_level_dbm[{{index}}]", pick: max}}}}
  link.carriers: {{rows: {{of: "link.carrier_rx_level_dbm[{{index}}]", pick: count}}}}
  link.oper_up: {{rows: {{of: "link.carrier_oper_up[{{index}}]", pick: any}}}}
  link.carriers_all_up: {{rows: {{of: "link.carrier_oper_up[{{index}}]", pick: all}}}}
  link.rx_level_dbm:
    rows:
      of: "link.carrier_rx_level_dbm[{{index}}]"
      pick: min
      where: {{field: "link.carrier_oper_up[{{index}}]", eq: true}}
  link.noise_floor_dbm:
    rows: {{of: "link.carrier_rx_level_dbm[{{index}}]", pick: min, where: {{field: link.carriers, gt: 99}}}}
"""


def vb(oid: str, value: int, kind: SnmpType = SnmpType.INTEGER) -> Varbind:
    return Varbind(oid, kind, value)


@pytest.fixture
def profile(tmp_path: Path) -> CompiledProfile:
    path = tmp_path / "rows-test.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    catalog, issues = load_files([path])
    assert not issues, [str(i) for i in issues]
    assert catalog is not None
    return catalog.get("rows-test")


def test_rows_product_quotient_and_negative_scale(profile: CompiledProfile) -> None:
    varbinds = [
        vb("1.3.6.1.4.1.99999.2.0", -3828),
        vb(f"{ROOT}.2.1", -45),
        vb(f"{ROOT}.2.2", 2**32 - 99, SnmpType.GAUGE32),  # -99 wrapped
        vb(f"{ROOT}.2.3", -40),
        vb(f"{ROOT}.3.1", 1),
        vb(f"{ROOT}.3.2", 2),
        vb(f"{ROOT}.3.3", 1),
        vb(f"{ROOT}.4.1", 34574),
        vb(f"{ROOT}.5.1", 3),
        vb(f"{ROOT}.4.2", 5),
        vb(f"{ROOT}.5.2", 0),
    ]
    fields, problems = decode([profile], varbinds)
    assert problems == []
    assert fields["link.snr_db"] == 38.28  # -3828 * -0.01, divided exactly
    assert fields["link.carrier_rx_level_dbm[2]"] == -99
    assert fields["link.carrier_snr_db[1]"] == 34.574
    assert fields["link.carrier_capacity_bps[1]"] == 34574000
    assert fields["link.carrier_snr_db[2]"] == 5
    assert fields["link.carrier_snr_db[3]"] is None  # no divisor: unknown
    assert fields["link.rx_level_b_dbm"] == -45  # the first row
    assert fields["link.rx_level_chain1_dbm"] == -99  # the least
    assert fields["link.rssi_dbm"] == -40  # the most
    assert fields["link.carriers"] == 3
    assert (fields["link.oper_up"], fields["link.carriers_all_up"]) == (True, False)
    assert fields["link.rx_level_dbm"] == -45  # carrier 2 is down: left out
    assert fields["link.noise_floor_dbm"] is None


def test_rows_over_no_rows(profile: CompiledProfile) -> None:
    fields, _ = decode([profile], [vb("1.3.6.1.4.1.99999.2.0", -3000)])
    assert fields["link.carriers"] == 0
    assert fields["link.rx_level_b_dbm"] is None
    assert fields["link.rx_level_chain1_dbm"] is None
    assert fields["link.oper_up"] is None


@pytest.mark.parametrize(
    ("derived", "message"),
    [
        ('_x.y[{index}]: {rows: {of: "_a.b[{index}]"}}', "rows gives one value"),
        ("_x.y: {rows: {of: _a.b}}", "name a per-row field"),
        ('_x.y: {rows: {of: "_a.c[{index}]"}}', "is not a column or per-row derived field"),
        ("_x.y: {product: [_a.b, _a.b], quotient: [_a.b, _a.b]}", "exactly one of"),
    ],
)
def test_rows_errors_name_file_and_line(tmp_path: Path, derived: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ndescription: d\nmatch: {generic: true}\n"
        "tables:\n  t:\n    root: 1.3.6.1.4.1.99999.1.1\n"
        '    columns: {"_a.b[{index}]": {oid: 1.3.6.1.4.1.99999.1.1.2, type: int}}\n'
        f"derived:\n  {derived}\n",
        encoding="utf-8",
    )
    catalog, issues = load_files([path])
    assert catalog is None
    text = "\n".join(str(i) for i in issues)
    assert message in text
    assert f"{path}:" in text
