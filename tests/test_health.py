"""Health model: hysteresis, reasons, thresholds, site rules, rollups, reload, caching.

Hours of polling are replayed as observation sequences with explicit timestamps, so nothing here
waits. The builders at the top are shared with tests/test_metrics_export.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from uptimewatch.config.models import Config, Thresholds
from uptimewatch.config.resolve import ResolvedDevice, resolve_all
from uptimewatch.model.health import (
    CheckState,
    HealthModel,
    SiteState,
    StateChange,
)
from uptimewatch.model.observation import ErrorKind, FieldValue, Observation, ProbeError

T0 = 1_750_000_000.0
MINUTE = 60.0


def site(
    sid: str, district: str, commune: str | None, carrier: str, devices: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "id": sid,
        "name": f"Site {sid}",
        "district": district,
        "commune": commune,
        "carrier": carrier,
        "devices": devices,
        **extra,
    }


def dev(did: str, role: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"id": did, "role": role, "address": f"127.0.0.{n}", **extra}


def standard_sites() -> list[dict[str, Any]]:
    return [
        site(
            "s1",
            "d1",
            "c1",
            "vnpt",
            [dev("bts1", "bts", 1), dev("pwr1", "power", 2), dev("lnk1", "link", 3)],
        ),
        site("s2", "d1", "c2", "viettel", [dev("bts2", "bts", 4), dev("pwr2", "power", 5)]),
        site("s3", "d2", "c3", "vnpt", [dev("rtr3", "router", 6)], priority="critical"),
        site("s4", "d2", None, "viettel", [dev("pwr4", "power", 7), dev("lnk4", "link", 8)]),
    ]


def make_config(sites: list[dict[str, Any]] | None = None, defaults: dict[str, Any] | None = None) -> Config:
    return Config.model_validate(
        {
            "province": {"id": "hb", "name": "Hòa Bình"},
            "defaults": defaults or {},
            "carriers": [{"id": "vnpt", "name": "VNPT"}, {"id": "viettel", "name": "Viettel"}],
            "districts": [
                {
                    "id": "d1",
                    "name": "Mai Châu",
                    "communes": [{"id": "c1", "name": "Vạn Mai"}, {"id": "c2", "name": "Pà Cò"}],
                },
                {"id": "d2", "name": "Đà Bắc", "communes": [{"id": "c3", "name": "Tú Lý"}]},
            ],
            "sites": standard_sites() if sites is None else sites,
        }
    )


def make_model(config: Config | None = None, **kwargs: Any) -> tuple[HealthModel, list[ResolvedDevice]]:
    config = config or make_config()
    devices = resolve_all(config)
    return HealthModel(config, devices, clock=lambda: T0 + 999_999, **kwargs), devices


def ping(
    sid: str, did: str, at: float, *, loss: float = 0.0, sent: int = 3, rtt: float = 0.002
) -> Observation:
    received = round(sent * (1 - loss))
    answered = received > 0
    return Observation(
        site_id=sid,
        device_id=did,
        probe="icmp",
        started_at=at,
        duration_s=0.1,
        fields={
            "icmp.sent": sent,
            "icmp.received": received,
            "icmp.loss_ratio": loss,
            "icmp.rtt_min_seconds": rtt * 0.5 if answered else None,
            "icmp.rtt_avg_seconds": rtt if answered else None,
            "icmp.rtt_max_seconds": rtt * 2 if answered else None,
            "icmp.jitter_seconds": rtt * 0.1 if received > 1 else None,
        },
    )


UPS_OK: dict[str, FieldValue] = {
    "power.on_battery": False,
    "power.mains_ok": True,
    "power.battery_minutes_remaining": 120,
    "power.battery_charge_percent": 100,
    "power.battery_voltage_volts": 54.2,
    "power.alarms_active": 0,
}

LINK_OK: dict[str, FieldValue] = {"link.oper_up": True, "link.rx_level_dbm": -48.0, "link.snr_db": 32.0}


def snmp(
    sid: str,
    did: str,
    at: float,
    fields: Mapping[str, FieldValue] | None = None,
    *,
    error: ProbeError | None = None,
    profile: str | None = "test-profile",
) -> Observation:
    return Observation(
        site_id=sid,
        device_id=did,
        probe="snmp",
        started_at=at,
        duration_s=0.25,
        fields=dict(fields or {}) if error is None else {},
        error=error,
        profile=profile if error is None else None,
    )


def all_ok(model: HealthModel, at: float) -> list[StateChange]:
    """One healthy cycle of every standard device."""
    changes: list[StateChange] = []
    for sid, did, fields in (
        ("s1", "bts1", {}),
        ("s1", "pwr1", UPS_OK),
        ("s1", "lnk1", LINK_OK),
        ("s2", "bts2", {}),
        ("s2", "pwr2", UPS_OK),
        ("s3", "rtr3", {}),
        ("s4", "pwr4", UPS_OK),
        ("s4", "lnk4", LINK_OK),
    ):
        changes += model.ingest(ping(sid, did, at))
        changes += model.ingest(snmp(sid, did, at + 0.5, fields))
    return changes


def kinds(changes: Iterable[StateChange], kind: str) -> list[StateChange]:
    return [c for c in changes if c.kind == kind]


# -- hysteresis ------------------------------------------------------------------------------------


def test_unpolled_network_is_unknown() -> None:
    model, _ = make_model()
    snap = model.snapshot()
    assert {s.state for s in snap.sites.values()} == {SiteState.UNKNOWN}
    s1 = snap.site("s1")
    assert s1 is not None
    assert str(s1.reason) == "not polled yet"
    assert s1.since is None
    assert all(d.state is CheckState.UNKNOWN and d.reachable is None for d in s1.devices)
    assert snap.site("nope") is None


def test_first_result_is_hard_immediately() -> None:
    model, _ = make_model()
    changes = model.ingest(ping("s1", "bts1", T0, loss=1.0))
    status = model.snapshot().sites["s1"].device("bts1")
    assert status is not None
    reach = status.check("icmp.reachable")
    assert reach is not None
    assert (reach.state, reach.hard, reach.attempts) == (CheckState.CRITICAL, True, 1)
    assert str(reach.reason) == "no reply to ping (3/3 lost)"
    assert status.reachable is False
    assert status.state is CheckState.CRITICAL
    # only the base station is polled, and it is dark: that is "off the air"
    assert model.snapshot().sites["s1"].state is SiteState.DOWN
    assert [(c.check, c.old, c.new) for c in kinds(changes, "check")] == [
        ("icmp.reachable", CheckState.UNKNOWN, CheckState.CRITICAL),
        ("icmp.loss", CheckState.UNKNOWN, CheckState.CRITICAL),
    ]
    assert [(c.old, c.new) for c in kinds(changes, "device")] == [(CheckState.UNKNOWN, CheckState.CRITICAL)]
    assert [(c.old, c.new, c.at) for c in kinds(changes, "site")] == [(SiteState.UNKNOWN, SiteState.DOWN, T0)]


def test_two_bad_results_stay_soft_third_turns_hard_and_recovery_needs_three() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    assert model.snapshot().sites["s1"].state is SiteState.UP

    t = T0 + MINUTE
    for attempt in (1, 2):
        changes = model.ingest(ping("s1", "bts1", t, loss=1.0))
        assert changes == []
        snap = model.snapshot()
        bts = snap.sites["s1"].device("bts1")
        assert bts is not None
        reach = bts.check("icmp.reachable")
        assert reach is not None
        assert (reach.state, reach.hard, reach.attempts) == (CheckState.CRITICAL, False, attempt)
        assert reach.hard_state is CheckState.OK
        assert reach.since == T0 + MINUTE
        assert bts.state is CheckState.OK
        assert bts.reachable is True
        assert snap.sites["s1"].state is SiteState.UP
        t += MINUTE

    changes = model.ingest(ping("s1", "bts1", t, loss=1.0))
    went_down_at = t
    assert [(c.check, c.new) for c in kinds(changes, "check")] == [
        ("icmp.reachable", CheckState.CRITICAL),
        ("icmp.loss", CheckState.CRITICAL),
    ]
    assert [(c.old, c.new) for c in kinds(changes, "device")] == [(CheckState.OK, CheckState.CRITICAL)]
    [site_change] = kinds(changes, "site")
    assert (site_change.old, site_change.new, site_change.at) == (SiteState.UP, SiteState.DOWN, t)
    assert str(site_change.reason) == "base station: no reply to ping (3/3 lost)"
    s1 = model.snapshot().sites["s1"]
    assert (s1.state, s1.since) == (SiteState.DOWN, went_down_at)
    reach = s1.devices[0].check("icmp.reachable")
    assert reach is not None
    assert reach.hard
    assert reach.attempts == 3
    assert reach.since == T0 + MINUTE  # the outage began with the first lost burst

    # recovery is just as deliberate
    for _ in range(2):
        t += MINUTE
        assert model.ingest(ping("s1", "bts1", t)) == []
        assert model.snapshot().sites["s1"].state is SiteState.DOWN
    t += MINUTE
    changes = model.ingest(ping("s1", "bts1", t))
    assert [(c.old, c.new) for c in kinds(changes, "site")] == [(SiteState.DOWN, SiteState.UP)]
    assert model.snapshot().sites["s1"].since == t


def test_an_interrupted_streak_starts_over() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    t = T0
    for loss in (1.0, 1.0, 0.0, 1.0, 1.0):
        t += MINUTE
        assert model.ingest(ping("s1", "bts1", t, loss=loss)) == []
    assert model.snapshot().sites["s1"].state is SiteState.UP
    assert model.ingest(ping("s1", "bts1", t + MINUTE, loss=1.0)) != []
    assert model.snapshot().sites["s1"].state is SiteState.DOWN


def test_hard_after_comes_from_the_config_cascade() -> None:
    sites = standard_sites()
    sites[0]["defaults"] = {"hard_after": 1}
    model, _ = make_model(make_config(sites))
    all_ok(model, T0)
    model.ingest(ping("s1", "bts1", T0 + MINUTE, loss=1.0))
    model.ingest(ping("s2", "bts2", T0 + MINUTE, loss=1.0))
    snap = model.snapshot()
    assert snap.sites["s1"].state is SiteState.DOWN
    assert snap.sites["s2"].state is SiteState.UP


def test_six_hours_of_flapping_emit_each_transition_once() -> None:
    """A link that drops for 5 minutes every hour, plus single lost bursts that must not count."""
    model, _ = make_model()
    events: list[StateChange] = all_ok(model, T0)
    events.clear()
    for minute in range(1, 6 * 60 + 1):
        at = T0 + minute * MINUTE
        in_outage = 20 <= minute % 60 < 25
        blip = minute % 60 == 40  # one lost burst: stays soft
        events += model.ingest(ping("s2", "bts2", at, loss=1.0 if in_outage or blip else 0.0))
        events += model.ingest(snmp("s2", "pwr2", at + 1, UPS_OK))
    site_events = kinds(events, "site")
    assert [(e.old, e.new) for e in site_events] == [
        (SiteState.UP, SiteState.DOWN),
        (SiteState.DOWN, SiteState.UP),
    ] * 6
    # hard after the 3rd lost burst (minute 22), back up after the 3rd good one (minute 27)
    assert [round((e.at - T0) / MINUTE) % 60 for e in site_events] == [22, 27] * 6
    assert len([e for e in events if e.check == "icmp.reachable"]) == 12
    assert len(kinds(events, "device")) == 12


# -- each check's words ------------------------------------------------------------------------------


def _check(model: HealthModel, sid: str, did: str, name: str) -> tuple[CheckState, str, bool]:
    device = model.snapshot().sites[sid].device(did)
    assert device is not None
    chk = device.check(name)
    assert chk is not None, f"{name} missing from {[c.name for c in device.checks]}"
    return chk.state, str(chk.reason), chk.hard


@pytest.mark.parametrize(
    ("fields", "check", "state", "reason"),
    [
        (
            {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 38},
            "power.on_battery",
            CheckState.WARNING,
            "on battery, ~38 min left",
        ),
        (
            {
                **UPS_OK,
                "power.on_battery": True,
                "power.battery_minutes_remaining": None,
                "power.on_battery_seconds": 720,
            },
            "power.on_battery",
            CheckState.WARNING,
            "on battery since 12 min",
        ),
        (
            {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": None},
            "power.on_battery",
            CheckState.WARNING,
            "on battery",
        ),
        (UPS_OK, "power.on_battery", CheckState.OK, "on mains"),
        (
            {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 25},
            "power.battery_minutes",
            CheckState.CRITICAL,
            "battery ~25 min left",
        ),
        (
            {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 45},
            "power.battery_minutes",
            CheckState.WARNING,
            "battery ~45 min left",
        ),
        (
            # on mains a short autonomy is worth a warning, never more: nothing is dark yet
            {**UPS_OK, "power.battery_minutes_remaining": 18},
            "power.battery_minutes",
            CheckState.WARNING,
            "battery autonomy ~18 min",
        ),
        (
            {**UPS_OK, "power.battery_charge_percent": 15},
            "power.battery_charge",
            CheckState.CRITICAL,
            "battery charge 15%",
        ),
        (
            {**UPS_OK, "power.battery_charge_percent": 42},
            "power.battery_charge",
            CheckState.WARNING,
            "battery charge 42%",
        ),
        (
            {
                **UPS_OK,
                "power.alarms_active": 2,
                "power.alarm[22]": "battery_bad",
                "power.alarm[23]": "battery_bad",
            },
            "power.alarms",
            CheckState.WARNING,
            "2 alarms: battery bad",
        ),
        (
            {**UPS_OK, "power.alarms_active": 1, "power.alarm[1]": "on_bypass"},
            "power.alarms",
            CheckState.WARNING,
            "1 alarm: on bypass",
        ),
        ({**UPS_OK, "power.alarms_active": 3}, "power.alarms", CheckState.WARNING, "3 alarms"),
        (UPS_OK, "power.alarms", CheckState.OK, "no alarms"),
        ({**LINK_OK, "link.oper_up": False}, "link.oper", CheckState.CRITICAL, "radio link down"),
        (LINK_OK, "link.oper", CheckState.OK, "radio link up"),
    ],
)
def test_field_check_reasons(
    fields: dict[str, FieldValue], check: str, state: CheckState, reason: str
) -> None:
    model, _ = make_model()
    model.ingest(snmp("s1", "pwr1", T0, fields))
    assert _check(model, "s1", "pwr1", check) == (state, reason, True)


@pytest.mark.parametrize(
    ("error", "state", "reason"),
    [
        (
            ProbeError(ErrorKind.TIMEOUT, "no response within 2.0 s"),
            CheckState.CRITICAL,
            "SNMP timeout on power unit",
        ),
        (
            ProbeError(ErrorKind.AUTH, "unknown user name"),
            CheckState.CRITICAL,
            "SNMP authentication failed: unknown user name",
        ),
        (
            ProbeError(ErrorKind.NO_SUCH_OBJECT, "no UPS-MIB"),
            CheckState.WARNING,
            "SNMP agent has none of the polled objects: no UPS-MIB",
        ),
        (ProbeError(ErrorKind.INTERNAL, "bug"), CheckState.UNKNOWN, "cannot poll SNMP: bug"),
    ],
)
def test_snmp_reachability_reasons(error: ProbeError, state: CheckState, reason: str) -> None:
    model, _ = make_model()
    model.ingest(snmp("s1", "pwr1", T0, error=error))
    assert _check(model, "s1", "pwr1", "snmp.reachable") == (state, reason, True)
    device = model.snapshot().sites["s1"].device("pwr1")
    assert device is not None
    probe = device.probes["snmp"]
    assert (probe.error_kind, probe.error_message, probe.ok) == (error.kind, error.message, False)
    # an authentication failure is an answer: the device is there, our credentials are wrong
    expected_reachable = {ErrorKind.TIMEOUT: False, ErrorKind.INTERNAL: None}.get(error.kind, True)
    assert device.reachable is expected_reachable


def test_icmp_loss_and_rtt_reasons() -> None:
    sites = standard_sites()
    sites[0]["defaults"] = {"thresholds": {"rtt_ms_warning": 100, "rtt_ms_critical": 300}}
    model, _ = make_model(make_config(sites))
    model.ingest(ping("s1", "lnk1", T0, loss=0.4, sent=5, rtt=0.150))
    assert _check(model, "s1", "lnk1", "icmp.loss") == (CheckState.WARNING, "packet loss 40%", True)
    assert _check(model, "s1", "lnk1", "icmp.rtt") == (CheckState.WARNING, "round trip 150 ms", True)
    assert _check(model, "s1", "lnk1", "icmp.reachable") == (CheckState.OK, "answers ping", True)
    s1 = model.snapshot().sites["s1"]
    assert s1.state is SiteState.DEGRADED
    assert str(s1.reason) == "link radio: packet loss 40%; round trip 150 ms"
    # no rtt thresholds anywhere else: no rtt check
    model.ingest(ping("s2", "bts2", T0, rtt=0.5))
    bts2 = model.snapshot().sites["s2"].device("bts2")
    assert bts2 is not None
    assert bts2.check("icmp.rtt") is None


def test_link_levels_are_judged_only_with_thresholds() -> None:
    sites = standard_sites()
    sites[0]["devices"][2]["thresholds"] = {
        "rx_level_dbm_warning": -65,
        "rx_level_dbm_critical": -75,
        "snr_db_warning": 20,
    }
    model, _ = make_model(make_config(sites))
    weak = {**LINK_OK, "link.rx_level_dbm": -78.4, "link.snr_db": 17.0}
    model.ingest(snmp("s1", "lnk1", T0, weak))
    model.ingest(snmp("s4", "lnk4", T0, weak))
    assert _check(model, "s1", "lnk1", "link.rx_level") == (CheckState.CRITICAL, "rx level -78 dBm", True)
    assert _check(model, "s1", "lnk1", "link.snr") == (CheckState.WARNING, "SNR 17 dB", True)
    lnk4 = model.snapshot().sites["s4"].device("lnk4")
    assert lnk4 is not None
    assert {c.name for c in lnk4.checks} == {"snmp.reachable", "link.oper"}


def test_missing_field_creates_no_check_and_a_vanished_one_turns_unknown() -> None:
    model, _ = make_model()
    partial = {"power.on_battery": False, "power.battery_minutes_remaining": None}
    model.ingest(snmp("s1", "pwr1", T0, partial))
    pwr = model.snapshot().sites["s1"].device("pwr1")
    assert pwr is not None
    assert {c.name for c in pwr.checks} == {"snmp.reachable", "power.on_battery"}

    model.ingest(snmp("s1", "pwr1", T0 + MINUTE, UPS_OK))
    for i in range(1, 4):  # the device stops reporting the battery estimate (sentinel -> None)
        model.ingest(
            snmp("s1", "pwr1", T0 + (1 + i) * MINUTE, {**UPS_OK, "power.battery_minutes_remaining": None})
        )
        state, reason, hard = _check(model, "s1", "pwr1", "power.battery_minutes")
        assert (state, reason, hard) == (CheckState.UNKNOWN, "no data", i == 3)
    # unknown is not a problem of the site
    assert model.snapshot().sites["s1"].state is SiteState.UP


def test_fields_merge_across_probes_and_keep_last_known_values_on_errors() -> None:
    model, _ = make_model()
    model.ingest(ping("s1", "pwr1", T0))
    model.ingest(snmp("s1", "pwr1", T0 + 1, UPS_OK))
    model.ingest(snmp("s1", "pwr1", T0 + MINUTE, error=ProbeError(ErrorKind.TIMEOUT, "no response")))
    pwr = model.snapshot().sites["s1"].device("pwr1")
    assert pwr is not None
    assert pwr.fields["icmp.loss_ratio"] == 0.0
    assert pwr.fields["power.battery_minutes_remaining"] == 120
    assert pwr.probes["icmp"].ok
    assert pwr.probes["snmp"].error_kind is ErrorKind.TIMEOUT
    assert pwr.probes["snmp"].at == T0 + MINUTE
    # still answering ping: reachable, the SNMP failure is soft for now
    assert pwr.reachable is True
    assert pwr.state is CheckState.OK


def test_a_status_taken_keeps_its_probe_records_when_the_device_is_polled_again() -> None:
    model, _ = make_model()
    model.ingest(ping("s1", "pwr1", T0))
    model.ingest(snmp("s1", "pwr1", T0 + 1, UPS_OK))
    before = model.snapshot().sites["s1"].device("pwr1")
    assert before is not None
    model.ingest(ping("s1", "pwr1", T0 + MINUTE))
    model.ingest(snmp("s1", "pwr1", T0 + MINUTE + 1, error=ProbeError(ErrorKind.TIMEOUT, "no response")))
    after = model.snapshot().sites["s1"].device("pwr1")
    assert after is not None
    assert (before.probes["icmp"].at, before.probes["snmp"].at) == (T0, T0 + 1)
    assert before.probes["snmp"].ok
    assert (after.probes["icmp"].at, after.probes["snmp"].at) == (T0 + MINUTE, T0 + MINUTE + 1)
    assert after.probes["snmp"].error_kind is ErrorKind.TIMEOUT


def test_icmp_we_cannot_send_falls_back_to_snmp_for_reachability() -> None:
    model, _ = make_model()
    denied = Observation(
        "s3", "rtr3", "icmp", T0, 0.0, {}, ProbeError(ErrorKind.PERMISSION, "no CAP_NET_RAW")
    )
    model.ingest(denied)
    model.ingest(snmp("s3", "rtr3", T0 + 1, error=ProbeError(ErrorKind.TIMEOUT, "no response")))
    rtr = model.snapshot().sites["s3"].device("rtr3")
    assert rtr is not None
    assert rtr.check("icmp.reachable") is not None
    assert _check(model, "s3", "rtr3", "icmp.reachable") == (
        CheckState.UNKNOWN,
        "cannot ping: no CAP_NET_RAW",
        True,
    )
    assert rtr.reachable is False
    assert model.snapshot().sites["s3"].state is SiteState.DOWN
    assert str(model.snapshot().sites["s3"].reason) == "router: SNMP timeout on router"


def test_observations_of_unconfigured_devices_are_ignored() -> None:
    model, _ = make_model()
    snap = model.snapshot()
    assert model.ingest(ping("s1", "ghost", T0)) == []
    assert model.ingest(ping("s9", "bts1", T0)) == []
    assert model.snapshot() is snap


# -- thresholds ----------------------------------------------------------------------------------------


def test_site_override_changes_the_loss_threshold_for_that_site_only() -> None:
    sites = standard_sites()
    sites[0]["defaults"] = {"thresholds": {"loss_ratio_warning": 0.5}}
    model, _ = make_model(make_config(sites))
    model.ingest(ping("s1", "bts1", T0, loss=0.4, sent=5))
    model.ingest(ping("s2", "bts2", T0, loss=0.4, sent=5))
    assert _check(model, "s1", "bts1", "icmp.loss")[0] is CheckState.OK
    assert _check(model, "s2", "bts2", "icmp.loss")[0] is CheckState.WARNING


def test_profile_thresholds_sit_between_builtin_and_config() -> None:
    asked: list[str | None] = []

    def profile_thresholds(name: str | None) -> Thresholds | None:
        asked.append(name)
        if name == "ups-small":
            return Thresholds(battery_minutes_warning=90, battery_minutes_critical=40, on_battery="critical")
        return None

    sites = standard_sites()
    # s2 sets one battery threshold explicitly: that one beats the profile, the others do not
    sites[1]["defaults"] = {"thresholds": {"battery_minutes_critical": 20}}
    model, _ = make_model(make_config(sites), profile_thresholds=profile_thresholds)
    on_battery = {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 35}
    model.ingest(snmp("s1", "pwr1", T0, on_battery, profile="generic-host,ups-small"))
    model.ingest(snmp("s2", "pwr2", T0, on_battery, profile="generic-host,ups-small"))
    model.ingest(snmp("s4", "pwr4", T0, on_battery, profile="generic-host"))
    # built-in 60/30 -> profile 90/40: 35 min is critical
    assert _check(model, "s1", "pwr1", "power.battery_minutes")[0] is CheckState.CRITICAL
    assert _check(model, "s1", "pwr1", "power.on_battery")[0] is CheckState.CRITICAL
    # critical 20 from the site config, warning 90 from the profile
    assert _check(model, "s2", "pwr2", "power.battery_minutes")[0] is CheckState.WARNING
    # no profile thresholds: built-in 60/30
    assert _check(model, "s4", "pwr4", "power.battery_minutes")[0] is CheckState.WARNING
    assert _check(model, "s4", "pwr4", "power.on_battery")[0] is CheckState.WARNING
    assert "ups-small" in asked
    # the effective thresholds are cached per device: a second cycle asks nothing new
    before = len(asked)
    model.ingest(snmp("s1", "pwr1", T0 + MINUTE, on_battery, profile="generic-host,ups-small"))
    assert len(asked) == before


def test_a_configured_profile_name_beats_what_the_observation_says() -> None:
    sites = standard_sites()
    sites[0]["devices"][1]["profile"] = "ups-small"

    def profile_thresholds(name: str | None) -> Thresholds | None:
        return Thresholds(battery_charge_percent_warning=95) if name == "ups-small" else None

    model, _ = make_model(make_config(sites), profile_thresholds=profile_thresholds)
    model.ingest(snmp("s1", "pwr1", T0, {**UPS_OK, "power.battery_charge_percent": 90}, profile="other"))
    assert _check(model, "s1", "pwr1", "power.battery_charge") == (
        CheckState.WARNING,
        "battery charge 90%",
        True,
    )


# -- site rules -----------------------------------------------------------------------------------------


def _hard_cycle(model: HealthModel, obs: list[Observation], times: int = 3) -> list[StateChange]:
    out: list[StateChange] = []
    for i in range(times):
        for o in obs:
            out += model.ingest(
                Observation(
                    o.site_id,
                    o.device_id,
                    o.probe,
                    o.started_at + i * MINUTE,
                    o.duration_s,
                    o.fields,
                    o.error,
                )
            )
    return out


def test_base_station_dark_means_site_down_even_with_power_answering() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE, loss=1.0)])
    s2 = model.snapshot().sites["s2"]
    assert s2.state is SiteState.DOWN
    assert str(s2.reason) == "base station: no reply to ping (3/3 lost)"


def test_power_unit_dark_with_base_station_answering_is_degraded() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    timeout = ProbeError(ErrorKind.TIMEOUT, "no response")
    _hard_cycle(
        model, [ping("s2", "pwr2", T0 + MINUTE, loss=1.0), snmp("s2", "pwr2", T0 + MINUTE, error=timeout)]
    )
    s2 = model.snapshot().sites["s2"]
    assert s2.state is SiteState.DEGRADED
    assert str(s2.reason) == "power unit: no reply to ping (3/3 lost)"


def test_base_station_answering_ping_but_not_snmp_is_degraded_not_down() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    timeout = ProbeError(ErrorKind.TIMEOUT, "no response")
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE), snmp("s2", "bts2", T0 + MINUTE, error=timeout)])
    s2 = model.snapshot().sites["s2"]
    assert s2.state is SiteState.DEGRADED
    assert str(s2.reason) == "base station: SNMP timeout on base station"


def test_site_without_base_station_or_router_is_down_only_when_everything_is_dark() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s4", "lnk4", T0 + MINUTE, loss=1.0)])
    assert model.snapshot().sites["s4"].state is SiteState.DEGRADED
    _hard_cycle(model, [ping("s4", "pwr4", T0 + 5 * MINUTE, loss=1.0)])
    s4 = model.snapshot().sites["s4"]
    assert s4.state is SiteState.DOWN
    assert str(s4.reason) == (
        "power unit: no reply to ping (3/3 lost); link radio: no reply to ping (3/3 lost)"
    )


def test_router_is_the_core_of_a_site_without_base_station() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s3", "rtr3", T0 + MINUTE, loss=1.0)])
    assert model.snapshot().sites["s3"].state is SiteState.DOWN


def test_degraded_reason_combines_device_reasons_with_role_words() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    on_battery = {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 38}
    changes = _hard_cycle(
        model,
        [snmp("s1", "pwr1", T0 + MINUTE, on_battery), ping("s1", "lnk1", T0 + MINUTE, loss=0.4, sent=5)],
    )
    s1 = model.snapshot().sites["s1"]
    assert s1.state is SiteState.DEGRADED
    # the minutes check is a warning too, but the on-battery words already quote the minutes
    assert str(s1.reason) == "power unit: on battery, ~38 min left; link radio: packet loss 40%"
    assert [(c.old, c.new) for c in kinds(changes, "site")] == [(SiteState.UP, SiteState.DEGRADED)]


def test_reasons_follow_new_numbers_without_new_events() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    minutes = 50
    _hard_cycle(
        model,
        [
            snmp(
                "s1",
                "pwr1",
                T0 + MINUTE,
                {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": minutes},
            )
        ],
    )
    events = model.ingest(
        snmp(
            "s1",
            "pwr1",
            T0 + 10 * MINUTE,
            {**UPS_OK, "power.on_battery": True, "power.battery_minutes_remaining": 41},
        )
    )
    assert events == []
    assert str(model.snapshot().sites["s1"].reason).startswith("power unit: on battery, ~41 min left")


def test_duplicate_roles_are_told_apart_by_name() -> None:
    sites = [
        site("s1", "d1", "c1", "vnpt", [dev("bts-a", "bts", 1, name="Sector A"), dev("bts-b", "bts", 2)])
    ]
    model, _ = make_model(make_config(sites))
    model.ingest(ping("s1", "bts-a", T0))
    model.ingest(ping("s1", "bts-b", T0, loss=1.0))
    s1 = model.snapshot().sites["s1"]
    assert s1.state is SiteState.DEGRADED  # one sector of two still on the air
    assert str(s1.reason) == "base station bts-b: no reply to ping (3/3 lost)"


# -- rollups ----------------------------------------------------------------------------------------------


def test_rollup_counts_per_level() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE, loss=1.0)])
    _hard_cycle(model, [snmp("s4", "pwr4", T0 + MINUTE, {**UPS_OK, "power.on_battery": True})])
    snap = model.snapshot()
    [province] = snap.rollups_at("province")
    assert (province.id, province.name, province.state) == ("hb", "Hòa Bình", SiteState.DOWN)
    assert dict(province.counts) == {
        SiteState.UP: 2,
        SiteState.DEGRADED: 1,
        SiteState.DOWN: 1,
        SiteState.UNREACHABLE: 0,
        SiteState.UNKNOWN: 0,
    }
    assert province.total == 4
    districts = {r.id: r for r in snap.rollups_at("district")}
    assert districts["d1"].name == "Mai Châu"
    assert (districts["d1"].counts[SiteState.UP], districts["d1"].counts[SiteState.DOWN]) == (1, 1)
    assert districts["d2"].state is SiteState.DEGRADED
    carriers = {
        r.id: (r.counts[SiteState.UP], r.counts[SiteState.DOWN], r.counts[SiteState.DEGRADED])
        for r in snap.rollups_at("carrier")
    }
    assert carriers == {"vnpt": (2, 0, 0), "viettel": (0, 1, 1)}
    communes = {(r.parent, r.id): r.state for r in snap.rollups_at("commune")}
    assert communes == {("d1", "c1"): SiteState.UP, ("d1", "c2"): SiteState.DOWN, ("d2", "c3"): SiteState.UP}


def test_rollups_match_a_recount_after_a_long_random_replay() -> None:
    import random

    rng = random.Random(7)
    model, devices = make_model()
    for minute in range(240):
        for d in devices:
            model.ingest(
                ping(d.site_id, d.device_id, T0 + minute * MINUTE, loss=1.0 if rng.random() < 0.3 else 0.0)
            )
    snap = model.snapshot()
    recount = dict.fromkeys(SiteState, 0)
    for s in snap.sites.values():
        recount[s.state] += 1
    [province] = snap.rollups_at("province")
    assert dict(province.counts) == recount
    for r in snap.rollups_at("district"):
        assert r.total == sum(1 for s in snap.sites.values() if s.district == r.id)


# -- reload and caching -------------------------------------------------------------------------------------


def test_reconfigure_keeps_state_of_remaining_devices_drops_removed_adds_new() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE, loss=1.0)])
    before = model.snapshot()
    down_since = before.sites["s2"].since

    sites = standard_sites()
    del sites[2]  # s3 goes away
    sites[0]["devices"].pop(2)  # s1 loses its link radio
    sites.append(site("s5", "d2", "c3", "vnpt", [dev("bts5", "bts", 9)]))
    config = make_config(sites)
    changes = model.reconfigure(config, resolve_all(config))
    assert changes == []  # nobody's state moved
    snap = model.snapshot()
    assert snap is not before
    assert set(snap.sites) == {"s1", "s2", "s4", "s5"}
    assert (snap.sites["s2"].state, snap.sites["s2"].since) == (SiteState.DOWN, down_since)
    assert [d.device_id for d in snap.sites["s1"].devices] == ["bts1", "pwr1"]
    assert snap.sites["s5"].state is SiteState.UNKNOWN
    # untouched sites keep their very status objects: a reload of 300k devices stays cheap
    assert snap.sites["s4"] is before.sites["s4"]
    [province] = snap.rollups_at("province")
    assert dict(province.counts)[SiteState.UNKNOWN] == 1
    assert province.total == 4
    assert model.ingest(ping("s3", "rtr3", T0 + 10 * MINUTE)) == []
    assert model.ingest(ping("s1", "lnk1", T0 + 10 * MINUTE)) == []
    # the new device behaves like any never-polled one: first result hard
    changes = model.ingest(ping("s5", "bts5", T0 + 10 * MINUTE))
    assert [(c.old, c.new) for c in kinds(changes, "site")] == [(SiteState.UNKNOWN, SiteState.UP)]


def test_reconfigure_that_removes_the_dark_base_station_brings_the_site_up() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE, loss=1.0)])
    sites = standard_sites()
    sites[1]["devices"].pop(0)
    config = make_config(sites)
    changes = model.reconfigure(config, resolve_all(config))
    assert [(c.site_id, c.old, c.new) for c in changes] == [("s2", SiteState.DOWN, SiteState.UP)]
    snap = model.snapshot()
    assert snap.sites["s2"].state is SiteState.UP
    [province] = snap.rollups_at("province")
    assert province.counts[SiteState.DOWN] == 0


def test_snapshot_is_cached_until_something_changes() -> None:
    model, _ = make_model()
    all_ok(model, T0)
    first = model.snapshot()
    assert model.snapshot() is first
    model.ingest(ping("s1", "bts1", T0 + MINUTE))
    second = model.snapshot()
    assert second is not first
    assert model.snapshot() is second
    # only the touched site was rebuilt
    assert second.sites["s2"] is first.sites["s2"]
    assert second.sites["s1"] is not first.sites["s1"]
    # a snapshot is a picture: later results do not leak into it
    model.ingest(ping("s1", "bts1", T0 + 2 * MINUTE, loss=1.0))
    bts1 = second.sites["s1"].device("bts1")
    assert bts1 is not None
    assert bts1.probes["icmp"].at == T0 + MINUTE
    with pytest.raises(TypeError):
        second.sites["s9"] = second.sites["s1"]  # type: ignore[index]


def test_reconfigure_with_the_same_objects_skips_them_and_applies_a_changed_site() -> None:
    # what a reload through the loader's SiteCache hands over: unchanged sites and devices are the
    # very objects of the running configuration, a changed site is a new one
    model, _ = make_model()
    all_ok(model, T0)
    _hard_cycle(model, [ping("s2", "bts2", T0 + MINUTE, loss=1.0)])
    config = model._config
    devices = [dev.cfg for dev in model._devices.values()]
    before = model.snapshot()
    renamed = config.sites[0].model_copy(update={"name": "Trạm mới"})
    new_config = config.model_copy(update={"sites": [renamed, *config.sites[1:]]})
    assert model.reconfigure(new_config, devices) == []
    snap = model.snapshot()
    assert snap.sites["s1"].name == "Trạm mới"
    assert snap.sites["s1"] is not before.sites["s1"]
    for sid in ("s2", "s3", "s4"):
        assert snap.sites[sid] is before.sites[sid]
    assert snap.sites["s2"].state is SiteState.DOWN
    # and a device whose settings changed under an unchanged site is applied too
    moved = dataclasses.replace(devices[0], address="127.9.9.9")
    model.reconfigure(new_config, [moved, *devices[1:]])
    site_of = moved.site_id
    snap = model.snapshot()
    assert snap.sites[site_of] is not before.sites[site_of]


def test_one_site_is_brought_up_to_date_alone_as_the_snapshot_shows_it() -> None:
    model, _devices = make_model()
    assert model.site("s1") == model.snapshot().site("s1")
    all_ok(model, T0)
    assert model.site("s1") == model.snapshot().site("s1")
    # after a change, the site alone first; the snapshot that follows shows the same status
    model.ingest(ping("s2", "bts2", T0 + 60, loss=1.0))
    one = model.site("s2")
    snap = model.snapshot()
    assert one is snap.site("s2")
    assert one is not None
    assert one.devices == snap.sites["s2"].devices
    assert model.site("s1") is snap.site("s1")
    assert model.site("no-such-site") is None
