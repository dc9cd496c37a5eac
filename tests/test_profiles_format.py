"""The profile format's rules: every broken example names its file, line and field."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tests.test_profiles import answer, copy_profiles, read_snmprec
from uptimewatch.cli import main
from uptimewatch.profiles import ProfileError, decode, default_profiles_dir, load_profiles

GOOD = """\
name: tiny
description: a valid profile the broken ones start from
match:
  oid_exists: [1.3.6.1.2.1.33.1.2.1.0]
scalars:
  power.battery_charge_percent: {oid: 1.3.6.1.2.1.33.1.2.4.0, type: int}
"""

TABLE = "tables:\n  t:\n    root: 1.3.6.1.2.1.2.2.1\n    columns:\n"

# (file text, line, text expected after "<file>:<line>: ")
BROKEN = [
    pytest.param(
        GOOD.replace("type: int}", "type: int, scael: 2}"),
        6,
        "scalars.power.battery_charge_percent.scael: unknown key",
        id="unknown-key",
    ),
    pytest.param(
        GOOD.replace("type: int", "type: integer"),
        6,
        "scalars.power.battery_charge_percent.type: Input should be",
        id="unknown-type",
    ),
    pytest.param(
        GOOD.replace("oid: 1.3.6.1.2.1.33.1.2.4.0", "oid: UPS-MIB::upsEstimatedChargeRemaining.0"),
        6,
        "numeric OIDs only",
        id="mib-name",
    ),
    pytest.param(
        GOOD.replace("oid: 1.3.6.1.2.1.33.1.2.4.0", "oid: 1.3.6..1"),
        6,
        "not a valid numeric OID",
        id="bad-oid",
    ),
    pytest.param(
        GOOD.replace("[1.3.6.1.2.1.33.1.2.1.0]", "[upsBatteryStatus]"),
        4,
        "match.oid_exists.0: 'upsBatteryStatus' is not a numeric OID",
        id="mib-name-in-match",
    ),
    pytest.param(
        GOOD + "  power.battery_charge_percent: {oid: 1.3.6.1.2.1.33.1.2.4.0, type: int}\n",
        7,
        "duplicate key 'power.battery_charge_percent' (first at line 6)",
        id="duplicate-field",
    ),
    pytest.param(
        GOOD.replace("type: int}", "type: enum}"),
        6,
        "scalars.power.battery_charge_percent.type: type enum needs a map",
        id="enum-without-map",
    ),
    pytest.param(
        GOOD.replace("type: int}", "type: string, scale: 0.1}"),
        6,
        "scalars.power.battery_charge_percent.scale: scale does not apply to type string",
        id="scale-on-string",
    ),
    pytest.param(
        GOOD.replace("type: int}", "type: int, plausible: {min: 5, max: 1}}"),
        6,
        "plausible min 5.0 is above max 1.0",
        id="plausible-order",
    ),
    pytest.param(
        GOOD.replace("power.battery_charge_percent:", "Power Charge:"),
        6,
        "scalars.Power Charge: 'Power Charge' is not a field name",
        id="bad-field-name",
    ),
    pytest.param(
        GOOD.replace("type: int}", "type: enum, map: {x: low}}"),
        6,
        "map key 'x' cannot be a raw value of type enum",
        id="map-key-type",
    ),
    pytest.param(
        GOOD.replace("match:\n  oid_exists: [1.3.6.1.2.1.33.1.2.1.0]\n", "match: {}\n"),
        3,
        "match: match needs sys_object_id, oid_exists or generic",
        id="empty-match",
    ),
    pytest.param(
        GOOD + TABLE + "      if.name[{index}]: {oid: 1.3.6.1.2.1.31.1.1.1.1, type: string}\n",
        11,
        "tables.t.columns.if.name[{index}].oid: column OID 1.3.6.1.2.1.31.1.1.1.1"
        " is not a column of the table",
        id="column-outside-root",
    ),
    pytest.param(
        GOOD + TABLE + "      if.name: {oid: 1.3.6.1.2.1.2.2.1.2, type: string}\n",
        11,
        "must be a field name ending in [{index}]",
        id="column-without-index",
    ),
    pytest.param(
        GOOD + "derived:\n  power.on_battery:\n    when: {field: power.nothing, eq: true}\n",
        8,
        "derived.power.on_battery: 'power.nothing' is not declared by any profile",
        id="derived-unknown-ref",
    ),
    pytest.param(
        GOOD + "derived:\n  power.on_battery:\n    when: {field: power.battery_charge_percent}\n",
        9,
        "needs exactly one of eq, ne, in, gt, ge, lt, le",
        id="condition-without-op",
    ),
    pytest.param(
        GOOD
        + "derived:\n  power.on_battery:\n    first_of: [power.mains_ok]\n"
        + "  power.mains_ok:\n    first_of: [power.on_battery]\n",
        8,
        "cycle",
        id="derived-cycle",
    ),
    pytest.param(
        GOOD.replace("power.battery_charge_percent:", "power.battery_charge_precent:"),
        6,
        "scalars.power.battery_charge_precent: 'power.battery_charge_precent' is not a registered field"
        " (did you mean power.battery_charge_percent",
        id="scalar-field-typo",
    ),
    pytest.param(
        GOOD + TABLE + "      if.oper_upp[{index}]: {oid: 1.3.6.1.2.1.2.2.1.8, type: int}\n",
        11,
        "tables.t.columns.if.oper_upp[{index}]: 'if.oper_upp[{index}]' is not a registered field"
        " (did you mean if.oper_up",
        id="column-field-typo",
    ),
    pytest.param(
        GOOD + "derived:\n  power.on_batery:\n    first_of: [power.battery_charge_percent]\n",
        8,
        "derived.power.on_batery: 'power.on_batery' is not a registered field (did you mean power.on_battery",
        id="derived-field-typo",
    ),
    pytest.param(
        GOOD + "extends: nothing-like-it\n",
        7,
        "extends: extends unknown profile 'nothing-like-it'",
        id="extends-unknown",
    ),
    pytest.param(
        GOOD + "precedence:\n  power.battery_charge_percent: {over: [nobody]}\n",
        8,
        "precedence.power.battery_charge_percent.over: unknown profile 'nobody'",
        id="precedence-unknown-profile",
    ),
    pytest.param(
        GOOD.replace("description: a", "description: a: b"),
        2,
        "YAML syntax: mapping values are not allowed here",
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("text", "line", "expected"), BROKEN)
def test_broken_profile_names_file_line_field(tmp_path: Path, text: str, line: int, expected: str) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith(f"{path}:{line}: ") and expected in m for m in messages), messages


def test_good_profile_loads(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(GOOD)
    catalog = load_profiles(tmp_path)
    assert catalog.names() == ["tiny"]
    assert catalog.get("tiny").scalar_oids == ("1.3.6.1.2.1.33.1.2.4.0",)


def test_duplicate_profile_name_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path / 'b.yaml'}:1: name: profile 'tiny' is also defined in {tmp_path / 'a.yaml'}"
    )


def test_cli_check_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "check", str(default_profiles_dir())]) == 0
    assert "generic-host" in capsys.readouterr().out
    assert main(["profiles", "check"]) == 0


def test_cli_check_broken_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(default_profiles_dir(), tmp_path / "probes")
    broken = tmp_path / "probes" / "ups-mib.yaml"
    text = broken.read_text()
    line = text.splitlines().index("    map: {1: null, 2: normal, 3: low, 4: depleted}") + 1
    broken.write_text(text.replace("map: {1: null, 2: normal, 3: low, 4: depleted}", "mapp: {1: low}"))
    assert main(["profiles", "check", str(tmp_path / "probes")]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:{line}: scalars.power.battery_status.mapp: unknown key" in err
    assert main(["profiles", "check", str(tmp_path / "missing")]) == 1


VENDOR = """\
name: eaton-mge
description: Eaton/MGE card, runtime in seconds alongside UPS-MIB minutes
match:
  sys_object_id: [1.3.6.1.4.1.705]
priority: 50
scalars:
  power.battery_minutes_remaining:
    oid: 1.3.6.1.4.1.705.1.5.1.0   # upsmgBatteryRemainingTime, seconds
    type: int
    scale: 0.0166666667
    unit: min
precedence:
  power.battery_minutes_remaining: {over: [ups-mib], tolerance: TOLERANCE}
"""


@pytest.mark.parametrize(("tolerance", "disagree"), [(0.5, True), (2, False)])
def test_precedence_wins_and_cross_checks(tmp_path: Path, tolerance: float, disagree: bool) -> None:
    copy_profiles(tmp_path)  # generic-host and ups-mib only: not the shipped ups-eaton-mge
    (tmp_path / "eaton-mge.yaml").write_text(VENDOR.replace("TOLERANCE", str(tolerance)))
    catalog = load_profiles(tmp_path)
    rec = read_snmprec("eaton-mgeups_9pxle")
    profiles = catalog.match("1.3.6.1.4.1.705.1", {"1.3.6.1.2.1.33.1.2.1.0"})
    assert [p.name for p in profiles] == ["generic-host", "ups-mib", "eaton-mge"]
    fields, problems = decode(profiles, answer(rec, profiles))
    # 1132 s from the vendor MIB beats the standard's 18 min
    assert fields["power.battery_minutes_remaining"] == pytest.approx(1132 / 60)
    assert fields["power.battery_charge_percent"] == 91  # still from UPS-MIB
    clash = [p for p in problems if p.startswith("power.battery_minutes_remaining")]
    assert bool(clash) is disagree
    if disagree:
        assert "eaton-mge says 18.8667, ups-mib says 18" in clash[0]


EXTENSION = """\
name: delta-mini-snmp
description: Delta Mini-SNMP card, UPS-MIB with input volts in 0.1 V
extends: ups-mib
match:
  sys_object_id: [1.3.6.1.4.1.2254.2]
priority: 50
tables:
  upsInputTable:
    root: 1.3.6.1.2.1.33.1.3.3.1
    columns:
      power.input_voltage_volts[{index}]:
        oid: 1.3.6.1.2.1.33.1.3.3.1.3
        type: int
        scale: 0.1
        unit: V
        plausible: {min: 0, max: 600}
"""


def test_extends_overrides_and_replaces_its_base(tmp_path: Path) -> None:
    copy_profiles(tmp_path)  # generic-host and ups-mib only: not the shipped ups-delta-minisnmp
    (tmp_path / "delta.yaml").write_text(textwrap.dedent(EXTENSION))
    catalog = load_profiles(tmp_path)
    rec = read_snmprec("deltaups_mini-snmp")
    profiles = catalog.match("1.3.6.1.4.1.2254.2.5", {"1.3.6.1.2.1.33.1.2.1.0"})
    # ups-mib matched too, but the extension already carries everything it has
    assert [p.name for p in profiles] == ["generic-host", "delta-mini-snmp"]
    fields, problems = decode(profiles, answer(rec, profiles))
    assert fields["power.input_voltage_volts[1]"] == 231.3
    assert fields["power.battery_minutes_remaining"] == 150  # inherited
    assert fields["power.on_battery"] is False  # inherited derived fields
    # the output table was not overridden: still caught as implausible
    assert [p.split(":")[0] for p in problems] == ["power.output_voltage_volts[1]"]
