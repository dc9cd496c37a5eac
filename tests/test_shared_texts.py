"""Check reasons with the same words and number are one shared object, not one per device."""

from __future__ import annotations

from tests.test_health import T0, UPS_OK, all_ok, make_config, make_model, snmp, standard_sites
from uptimewatch.i18n import Text
from uptimewatch.model.checks import shared_text


def test_equal_reasons_are_one_object_and_still_read_the_same() -> None:
    model, _ = make_model(make_config(standard_sites()))
    all_ok(model, T0)
    for site, device in (("s1", "pwr1"), ("s2", "pwr2")):
        model.ingest(snmp(site, device, T0 + 60, {**UPS_OK, "power.battery_minutes_remaining": 42}))
    snap = model.snapshot()
    one = snap.sites["s1"].device("pwr1")
    two = snap.sites["s2"].device("pwr2")
    assert one is not None
    assert two is not None
    a, b = one.check("power.battery_minutes"), two.check("power.battery_minutes")
    assert a is not None
    assert b is not None
    assert a.reason is b.reason
    assert a.reason == Text("battery autonomy ~{minutes} min", {"minutes": 42})  # on mains
    assert str(a.reason) == "battery autonomy ~42 min"


def test_different_numbers_are_different_texts() -> None:
    x = shared_text("battery ~{minutes} min left", "minutes", 41)
    y = shared_text("battery ~{minutes} min left", "minutes", 42)
    assert x is not y
    assert x is shared_text("battery ~{minutes} min left", "minutes", 41)
    assert x.params == {"minutes": 41}
