"""Profile OIDs SNMP cannot carry are refused by ``uptimewatch profiles check`` and by the loader the
daemon uses, with file, line and field: a sub-identifier above 2^32-1 (SMIv2, RFC 2578 section
3.5), more than 128 sub-identifiers, a second arc of 40 or more under 0 and 1 (X.690 packs the
first two arcs into one number, so ``1.40`` would go on the wire as ``2.0``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from uptimewatch.cli import main
from uptimewatch.profiles import ProfileError, load_profiles

TOO_BIG = str(2**32)
LARGEST = str(2**32 - 1)

PROFILE = """\
name: tiny
description: a profile whose OIDs the cases below change
match:
  sys_object_id: ['1.3.6.1.4.1.99999']
  oid_exists: ['1.3.6.1.2.1.33.1.2.1.0']
scalars:
  power.battery_charge_percent: {oid: '1.3.6.1.2.1.33.1.2.4.0', type: int}
  device.model: {oid: '1.3.6.1.2.1.1.2.0', type: oid, map: {'1.3.6.1.4.1.99999.1': tiny}}
tables:
  t:
    root: '1.3.6.1.2.1.2.2.1'
    columns:
      if.name[{index}]: {oid: '1.3.6.1.2.1.2.2.1.2', type: string}
traps:
  - {oid: '1.3.6.1.4.1.99999.0.1', name: tinyAlarm, severity: warning}
"""

CASES = [
    pytest.param(
        "'1.3.6.1.2.1.33.1.2.4.0'",
        f"'1.3.6.1.2.1.33.1.2.4.{TOO_BIG}'",
        7,
        "scalars.power.battery_charge_percent.oid",
        f"sub-identifier {TOO_BIG} is above 4294967295 (2^32-1)",
        id="scalar",
    ),
    pytest.param(
        "sys_object_id: ['1.3.6.1.4.1.99999']",
        f"sys_object_id: ['1.3.6.1.4.1.{TOO_BIG}']",
        4,
        "match.sys_object_id.0",
        "is above 4294967295",
        id="sys-object-id",
    ),
    pytest.param(
        "oid_exists: ['1.3.6.1.2.1.33.1.2.1.0']",
        "oid_exists: ['1.3.6.1.2.1.33.1.2.1.99999999999999999999999999']",
        5,
        "match.oid_exists.0",
        "sub-identifier 99999999999999999999... is above 4294967295",
        id="oid-exists-huge",
    ),
    pytest.param(
        "root: '1.3.6.1.2.1.2.2.1'",
        f"root: '1.3.6.1.2.1.2.2.{TOO_BIG}'",
        11,
        "tables.t.root",
        "is above 4294967295",
        id="table-root",
    ),
    pytest.param(
        "{'1.3.6.1.4.1.99999.1': tiny}",
        f"{{'1.3.6.1.4.1.99999.{TOO_BIG}': tiny}}",
        8,
        f"scalars.device.model.map.1.3.6.1.4.1.99999.{TOO_BIG}",
        "cannot be a raw value of type oid: ",
        id="oid-map-key",
    ),
    pytest.param(
        "'1.3.6.1.4.1.99999.0.1'",
        f"'1.3.6.1.4.1.99999.0.{TOO_BIG}'",
        15,
        "traps.0.oid",
        "is above 4294967295",
        id="trap",
    ),
    pytest.param(
        "'1.3.6.1.2.1.33.1.2.4.0'",
        "'1.3.6.1.2.1.33.1.2.4." + "9" * 5000 + "'",
        7,
        "scalars.power.battery_charge_percent.oid",
        "sub-identifier 99999999999999999999... is above",
        id="5000-digits",
    ),
    pytest.param(
        "'1.3.6.1.2.1.33.1.2.4.0'",
        "'1.3" + ".1" * 127 + "'",
        7,
        "scalars.power.battery_charge_percent.oid",
        "has 129 sub-identifiers; SNMP allows at most 128",
        id="too-many-arcs",
    ),
    pytest.param(
        "sys_object_id: ['1.3.6.1.4.1.99999']",
        "sys_object_id: ['1.40.6.1']",
        4,
        "match.sys_object_id.0",
        "under 1 the second sub-identifier is 0 to 39",
        id="second-arc",
    ),
]


@pytest.fixture
def check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[str], list[str]]:
    """Write the profile text, run ``profiles check`` on it; its error lines, summary left out."""

    def run(text: str) -> list[str]:
        (tmp_path / "tiny.yaml").write_text(text, encoding="utf-8")
        assert main(["profiles", "check", str(tmp_path)]) == 1
        *err, summary = capsys.readouterr().err.splitlines()
        assert summary == "1 error(s) in 1 file(s)"
        return err

    return run


@pytest.mark.parametrize(("old", "new", "line", "field", "message"), CASES)
def test_an_oid_snmp_cannot_carry_is_refused_with_file_line_and_field(  # noqa: PLR0917 - the case's parts
    tmp_path: Path, check: Callable[[str], list[str]], old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in PROFILE
    path = tmp_path / "tiny.yaml"
    err = check(PROFILE.replace(old, new, 1))
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}:{line}: {field}: "), err[0]
    assert message in err[0], err[0]
    assert len(err[0]) < 400, "the error line must not repeat a 5,000-digit OID"

    # the daemon's loader says the same
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path)
    assert [str(i) for i in caught.value.issues] == err


def test_the_largest_sub_identifier_and_128_arcs_are_accepted(tmp_path: Path) -> None:
    text = PROFILE.replace("'1.3.6.1.4.1.99999.0.1'", f"'1.3.6.1.4.1.99999.0.{LARGEST}'").replace(
        "'1.3.6.1.2.1.33.1.2.4.0'", "'1.3" + ".1" * 126 + "'"
    )
    (tmp_path / "tiny.yaml").write_text(text, encoding="utf-8")
    assert main(["profiles", "check", str(tmp_path)]) == 0
    catalog = load_profiles(tmp_path)
    profile = catalog.get("tiny")
    assert "1.3" + ".1" * 126 in profile.scalar_oids
