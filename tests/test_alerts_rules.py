"""Rules over a real health model: observations in, the conditions each built-in and user rule
finds out. Hysteresis is the health model's (hard states), so each poll is repeated ``hard_after``
times where a state must settle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from tests.test_health import LINK_OK, T0, UPS_OK, make_model, ping, snmp
from uptimewatch.alerts.engine import Evaluation
from uptimewatch.alerts.routing import Policy
from uptimewatch.alerts.rules import REBOOT_HOLD, Evaluator, render
from uptimewatch.config.alerting import AlertingConfig
from uptimewatch.model.health import HealthModel
from uptimewatch.model.observation import ErrorKind, FieldValue, ProbeError

ROUTER: dict[str, FieldValue] = {"device.uptime_seconds": 86_400.0}
DEVICES = {
    ("s1", "bts1"): {},
    ("s1", "pwr1"): UPS_OK,
    ("s1", "lnk1"): LINK_OK,
    ("s2", "bts2"): {},
    ("s2", "pwr2"): UPS_OK,
    ("s3", "rtr3"): ROUTER,
    ("s4", "pwr4"): UPS_OK,
    ("s4", "lnk4"): LINK_OK,
}


def poll(
    model: HealthModel,
    at: float,
    *,
    fields: Mapping[tuple[str, str], Mapping[str, FieldValue]] | None = None,
    loss: Mapping[tuple[str, str], float] | None = None,
    errors: Mapping[tuple[str, str], ProbeError] | None = None,
    times: int = 3,
) -> float:
    """Poll every device ``times`` times (hard_after is 3), one minute apart; returns the time."""
    for _ in range(times):
        for key, base in DEVICES.items():
            model.ingest(ping(*key, at, loss=(loss or {}).get(key, 0.0)))
            merged = {**base, **(fields or {}).get(key, {})}
            model.ingest(snmp(*key, at, merged, error=(errors or {}).get(key)))
        at += 60
    return at


def names(ev: Evaluation) -> set[tuple[str, str, str]]:
    return {(c.name, c.labels["site"], c.labels.get("device", "")) for c in ev.candidates.values()}


def evaluator(**alerting: Any) -> Evaluator:
    return Evaluator(AlertingConfig.model_validate(alerting), "hb")


def test_nothing_fires_on_a_healthy_province_and_unpolled_sites_are_unjudged() -> None:
    model, _ = make_model()
    ev = evaluator().evaluate(model.snapshot(), T0)
    assert ev.candidates == {}
    assert ev.unjudged == {"s1", "s2", "s3", "s4"}
    at = poll(model, T0)
    ev = evaluator().evaluate(model.snapshot(), at)
    assert ev.candidates == {}
    assert ev.unjudged == frozenset()


def test_site_down_device_down_power_and_snmp_rules() -> None:
    model, _ = make_model()
    at = poll(model, T0)
    on_battery = {"power.on_battery": True, "power.mains_ok": False, "power.battery_minutes_remaining": 25}
    at = poll(
        model,
        at,
        loss={("s1", "bts1"): 1.0, ("s2", "pwr2"): 1.0, ("s3", "rtr3"): 0.4},
        fields={("s4", "pwr4"): on_battery, ("s4", "lnk4"): {"link.rx_level_dbm": -80.0}},
        errors={("s1", "pwr1"): ProbeError(ErrorKind.AUTH, "wrong community")},
    )
    # no rx level thresholds are configured: the rule's own threshold judges the link
    ev = evaluator(builtins={"LinkRxLevelLow": {"threshold": -70}}).evaluate(model.snapshot(), at)
    assert names(ev) == {
        ("SiteDown", "s1", ""),  # its only base station is off the air
        ("DeviceDown", "s2", "pwr2"),  # the site is degraded, not down
        ("SnmpAuthFailure", "s1", "pwr1"),
        ("HighPacketLoss", "s3", "rtr3"),
        ("OnBattery", "s4", "pwr4"),
        ("BatteryLow", "s4", "pwr4"),
        ("LinkRxLevelLow", "s4", "lnk4"),
    }
    by_name = {c.name: c for c in ev.candidates.values()}
    assert by_name["SiteDown"].severity == "critical"
    assert by_name["SiteDown"].labels == {
        "province": "hb",
        "district": "d1",
        "commune": "c1",
        "carrier": "vnpt",
        "site": "s1",
        "priority": "normal",
        "alertname": "SiteDown",
        "severity": "critical",
    }
    assert str(by_name["SiteDown"].summary).startswith("Site s1 down: base station: no reply to ping")
    assert str(by_name["BatteryLow"].summary) == "Site s4: battery ~25 min left"
    assert str(by_name["HighPacketLoss"].summary) == "Site s3: router rtr3: packet loss 40%"
    # every fingerprint is stable across evaluations
    again = evaluator().evaluate(model.snapshot(), at)
    assert set(again.candidates) == set(ev.candidates) - {by_name["LinkRxLevelLow"].fingerprint}


def test_builtins_can_be_disabled_or_changed() -> None:
    model, _ = make_model()
    at = poll(model, T0, loss={("s1", "bts1"): 1.0, ("s2", "pwr2"): 1.0})
    ev = evaluator(
        builtins={"SiteDown": {"severity": "warning", "for": "10m"}, "DeviceDown": {"enabled": False}}
    ).evaluate(model.snapshot(), at)
    assert names(ev) == {("SiteDown", "s1", "")}
    (c,) = ev.candidates.values()
    assert (c.severity, c.for_s, c.labels["severity"]) == ("warning", 600.0, "warning")


def test_critical_period_thresholds_override_the_built_in_ones() -> None:
    model, _ = make_model()
    on_battery = {"power.on_battery": True, "power.battery_minutes_remaining": 45}
    at = poll(model, T0, fields={("s4", "pwr4"): on_battery}, loss={("s3", "rtr3"): 0.1})
    # 45 minutes left is above the critical threshold (30), 10% loss below the warning one (20%)
    plain = evaluator().evaluate(model.snapshot(), at)
    assert names(plain) == {("OnBattery", "s4", "pwr4")}
    day = dt.datetime.fromtimestamp(at, dt.UTC)
    policy = Policy.from_config(
        AlertingConfig.model_validate(
            {
                "critical_periods": [
                    {
                        "name": "polling-day",
                        "start": day - dt.timedelta(hours=1),
                        "end": day + dt.timedelta(hours=12),
                        "thresholds": {"battery_minutes": 60, "loss_ratio": 0.05},
                    }
                ]
            }
        )
    )
    period = policy.period(at)
    assert period is not None
    strict = evaluator().evaluate(model.snapshot(), at, period)
    assert names(strict) == {
        ("OnBattery", "s4", "pwr4"),
        ("BatteryLow", "s4", "pwr4"),
        ("HighPacketLoss", "s3", "rtr3"),
    }
    # and the builtins' own configured threshold applies outside the period
    tuned = evaluator(builtins={"BatteryLow": {"threshold": 50}}).evaluate(model.snapshot(), at)
    assert ("BatteryLow", "s4", "pwr4") in names(tuned)


def _period(at: float, **thresholds: float) -> Any:
    day = dt.datetime.fromtimestamp(at, dt.UTC)
    policy = Policy.from_config(
        AlertingConfig.model_validate(
            {
                "critical_periods": [
                    {
                        "name": "polling-day",
                        "start": day - dt.timedelta(hours=1),
                        "end": day + dt.timedelta(hours=12),
                        "thresholds": thresholds,
                    }
                ]
            }
        )
    )
    return policy.period(at)


def test_a_period_boundary_judges_again_only_the_sites_whose_thresholds_it_moves() -> None:
    model, _ = make_model()
    on_battery = {"power.on_battery": True, "power.battery_minutes_remaining": 45}
    at = poll(model, T0, fields={("s4", "pwr4"): on_battery})
    ev = evaluator()
    snap = model.snapshot()
    ev.evaluate(snap, at)
    judged: list[str] = []
    real = ev._site

    def counting(site: Any, now: float, period: Any) -> Any:
        judged.append(site.site_id)
        return real(site, now, period)

    ev._site = counting  # type: ignore[method-assign]
    # a period that moves only the battery threshold: only sites reporting battery minutes
    battery_sites = {
        sid
        for sid, site in snap.sites.items()
        if any(
            "power.battery_minutes_remaining" in d.fields or d.check("power.battery_minutes")
            for d in site.devices
        )
    }
    assert battery_sites
    assert battery_sites != set(snap.sites)
    strict = ev.evaluate(snap, at, _period(at, battery_minutes=60))
    assert ("BatteryLow", "s4", "pwr4") in names(strict)
    assert set(judged) == battery_sites
    # and back out of the period: the same sites again, the verdict as before
    judged.clear()
    assert ("BatteryLow", "s4", "pwr4") not in names(ev.evaluate(snap, at))
    assert set(judged) == battery_sites
    # no boundary, nothing changed: nothing is judged again
    judged.clear()
    ev.evaluate(snap, at)
    assert judged == []


def test_a_reload_with_the_same_rules_keeps_the_verdicts_of_unchanged_sites() -> None:
    model, _ = make_model()
    at = poll(model, T0)
    old = evaluator()
    first = old.evaluate(model.snapshot(), at)
    new = evaluator()
    new.adopt(old)
    judged: list[str] = []
    real = new._site

    def counting(site: Any, now: float, period: Any) -> Any:
        judged.append(site.site_id)
        return real(site, now, period)

    new._site = counting  # type: ignore[method-assign]
    assert new.evaluate(model.snapshot(), at).candidates == first.candidates
    assert judged == []
    # other rules: every site is judged under them
    other = evaluator(builtins={"BatteryLow": {"threshold": 50}})
    other.adopt(old)
    assert other._cache == {}


def test_device_rebooted_when_uptime_goes_back_and_for_a_while_only() -> None:
    model, _ = make_model()
    ev = evaluator()
    at = poll(model, T0)
    assert ev.evaluate(model.snapshot(), at).candidates == {}
    at = poll(model, at, fields={("s3", "rtr3"): {"device.uptime_seconds": 120.0}}, times=1)
    assert names(ev.evaluate(model.snapshot(), at)) == {("DeviceRebooted", "s3", "rtr3")}
    at = poll(model, at, fields={("s3", "rtr3"): {"device.uptime_seconds": 180.0}}, times=1)
    assert names(ev.evaluate(model.snapshot(), at)) == {("DeviceRebooted", "s3", "rtr3")}
    assert ev.evaluate(model.snapshot(), at + REBOOT_HOLD).candidates == {}


def test_user_rule_with_scope_labels_and_summary_template() -> None:
    model, _ = make_model()
    low = {"power.battery_voltage_volts": 46.5}
    at = poll(model, T0, fields={("s1", "pwr1"): low, ("s4", "pwr4"): low})
    ev = evaluator(
        rules=[
            {
                "name": "BatteryVoltageLow",
                "field": "power.battery_voltage_volts",
                "op": "<",
                "value": 47,
                "for": "5m",
                "severity": "critical",
                "labels": {"team": "power"},
                "annotations": {"summary": "{site_name}: battery {value} V (floor {threshold} V)"},
                "scope": {"districts": ["d1"], "roles": ["power"]},
            }
        ]
    ).evaluate(model.snapshot(), at)
    (c,) = ev.candidates.values()
    assert (c.name, c.labels["site"], c.labels["team"], c.for_s) == (
        "BatteryVoltageLow",
        "s1",
        "power",
        300.0,
    )
    assert str(c.summary) == "Site s1: battery 46.5 V (floor 47 V)"


def test_summary_templates_never_fail() -> None:
    assert render("{site_name} {nope} {value:>5}", {"site_name": "A", "value": "1"}) == "A {nope}     1"
    assert render("{broken", {}) == "{broken"
