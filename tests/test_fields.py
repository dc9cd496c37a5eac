"""The field registry (``uptimewatch.model.fields``): every shipped profile and telemetry profile
gives only registered fields, what the checks and the exporter read is registered, and
``docs/catalog.md`` lists the registry."""

from __future__ import annotations

from pathlib import Path

from uptimewatch.export.site_series import FIELD_GAUGES
from uptimewatch.model import fields
from uptimewatch.model.checks import FIELD_CHECKS
from uptimewatch.profiles import default_profiles_dir, load_profiles
from uptimewatch.profiles.telemetry import load_telemetry_profiles

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_profile_field_is_registered() -> None:
    catalog = load_profiles()
    assert len(catalog) >= 30
    unregistered = {
        (name, f)
        for name in catalog.names()
        for f in catalog.get(name).fields
        if not fields.is_private(f) and fields.lookup(f) is None
    }
    assert unregistered == set()


def test_every_shipped_telemetry_field_is_registered() -> None:
    profiles = load_telemetry_profiles(default_profiles_dir() / "telemetry")
    assert profiles
    names = {v.name for p in profiles.values() for v in p.values}
    assert names
    assert {n for n in names if n not in fields.FIELDS} == set()


def test_what_the_checks_and_the_exporter_read_is_registered() -> None:
    read = {field for _, field, _, _ in FIELD_CHECKS} | {field for _, field, _, _ in FIELD_GAUGES}
    assert {n for n in read if fields.lookup(n) is None} == set()


def test_per_row_fields_take_an_index_and_the_others_do_not() -> None:
    assert fields.lookup("if.oper_up[3]") is not None
    assert fields.lookup("if.oper_up[{index}]") is not None
    assert fields.lookup("power.battery_voltage_volts") is not None
    assert fields.lookup("power.battery_voltage_volts[1]") is None
    assert fields.lookup("power.battery_voltage_vols") is None
    info = fields.lookup("power.battery_voltage_volts")
    assert info is not None
    assert (info.type, info.unit) == ("number", "V")


def test_docs_catalog_lists_the_registry() -> None:
    committed = (REPO / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert fields.with_fields(committed) == committed, (
        "docs/catalog.md is stale: run `.venv/bin/python -m uptimewatch.model.fields docs/catalog.md`"
    )
    for info in fields.FIELDS.values():
        assert f"`{info.name}" in committed
