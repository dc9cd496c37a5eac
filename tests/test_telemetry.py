"""MQTT telemetry in: profiles, the subscriber against a real mosquitto, and the daemon end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.mosquitto import Mosquitto
from uptimewatch.app import run_daemon
from uptimewatch.config.loader import ConfigError, load_config
from uptimewatch.config.models import MqttBroker, TelemetrySettings
from uptimewatch.model.checks import CheckState
from uptimewatch.model.observation import ErrorKind, Observation
from uptimewatch.probing.telemetry import PushDevice, TelemetrySubscriber, check_telemetry
from uptimewatch.profiles.telemetry import (
    TelemetryProfile,
    TelemetryProfileError,
    TelemetryProfileSpec,
    compile_profile,
    load_telemetry_profiles,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "probes" / "telemetry"
TOPIC = "sites/hb-001/gateway"

GOOD = {
    "ts": 1718000000,
    "mains": {"ok": False, "volts": 0},
    "battery": {"voltage": "51.8", "soc": 76, "minutes": 95},
    "gen": {"running": "off", "fuel_pct": 64.5},
    "source": "battery",
}


def _gateway() -> TelemetryProfile:
    return load_telemetry_profiles(SHIPPED)["site-gateway-json"]


# -- profiles ---------------------------------------------------------------------------------------


def test_shipped_profile_maps_a_gateway_payload() -> None:
    fields, problems = _gateway().decode(GOOD)
    assert problems == []
    assert fields == {
        "power.mains_ok": False,
        "power.input_voltage_volts": 0.0,
        "power.battery_voltage_volts": 51.8,  # a numeric string is a number
        "power.battery_charge_percent": 76.0,
        "power.battery_minutes_remaining": 95.0,
        "power.generator_running": False,  # "off"
        "power.fuel_percent": 64.5,
        "power.on_battery": True,
        "power.source": "battery",
    }


def test_value_semantics_follow_the_snmp_profiles() -> None:
    spec = TelemetryProfileSpec.model_validate(
        {
            "name": "meter",
            "description": "a power meter",
            "fields": {
                "power.load_current_amps": {"path": "phases.0.amps", "type": "float", "scale": 0.1},
                "power.battery_charge_percent": {"path": "soc", "type": "int", "sentinels": [255]},
                "power.battery_voltage_volts": {
                    "path": "v",
                    "type": "float",
                    "plausible": {"min": 20, "max": 60, "hint": "tenths of a volt?"},
                },
                "power.source": {"path": "src", "type": "enum", "map": {1: "mains", 2: "battery"}},
                "power.mains_ok": {"path": "mains", "type": "bool"},
            },
        }
    )
    profile = compile_profile(spec)
    fields, problems = profile.decode(
        {"phases": [{"amps": 123}], "soc": 255, "v": 531, "src": 3, "mains": "maybe"}
    )
    assert fields == {
        "power.load_current_amps": pytest.approx(12.3),  # list index in the path, scale applied
        "power.battery_charge_percent": None,  # sentinel
        "power.battery_voltage_volts": None,  # implausible: dropped...
        "power.source": None,  # ...and so is a value the map lacks
        "power.mains_ok": None,
    }
    assert any("outside the plausible range 20..60" in p and "tenths of a volt?" in p for p in problems)
    assert any("power.source: unexpected value 3" in p for p in problems)
    assert any("power.mains_ok: expected a boolean" in p for p in problems)
    # absent is unknown, not a problem
    fields, problems = profile.decode({})
    assert set(fields.values()) == {None}
    assert problems == []


def test_broken_profiles_are_reported_with_their_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ndescription: x\nfields:\n  Power: {path: a, type: float}\n"
    )
    (tmp_path / "enum.yaml").write_text(
        "name: e\ndescription: x\nfields:\n  power.source: {path: s, type: enum}\n"
    )
    with pytest.raises(TelemetryProfileError) as caught:
        load_telemetry_profiles(tmp_path)
    text = str(caught.value)
    assert "bad.yaml" in text
    assert "is not a normalized field name" in text
    assert "enum.yaml" in text
    assert "type enum needs a map" in text


# -- the subscriber against a real broker -----------------------------------------------------------


async def _publish(broker: Mosquitto, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
    async with aiomqtt.Client(broker.host, broker.port, identifier="uptimewatch-test-publisher") as client:
        await client.publish(topic, payload, qos=1, retain=retain)


@pytest.fixture
async def subscriber(mosquitto: Mosquitto) -> AsyncIterator[tuple[TelemetrySubscriber, list[Observation]]]:
    seen: list[Observation] = []
    sub = TelemetrySubscriber(
        MqttBroker(host=mosquitto.host, port=mosquitto.port, client_id="uptimewatch-test"),
        TelemetrySettings(enabled=True, silent_after=2, max_reconnect_delay=0.5),
        [PushDevice("hb-001", "gateway", TOPIC, "site-gateway-json", 0.5)],
        {"site-gateway-json": _gateway()},
        seen.append,
    )
    await sub.start()
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        yield sub, seen
    finally:
        await sub.stop()


async def test_messages_become_observations_and_malformed_ones_are_counted(
    mosquitto: Mosquitto, subscriber: tuple[TelemetrySubscriber, list[Observation]]
) -> None:
    sub, seen = subscriber
    await _publish(mosquitto, TOPIC, "{not json")
    await _publish(mosquitto, TOPIC, "[1, 2, 3]")
    await _publish(mosquitto, TOPIC, json.dumps({**GOOD, "battery": {"voltage": {"oops": 1}}}))
    await _publish(mosquitto, TOPIC, json.dumps(GOOD))
    await wait_until(lambda: len([o for o in seen if o.error is None]) >= 2, timeout=5)
    partial, good = [o for o in seen if o.error is None][:2]
    assert partial.fields["power.battery_voltage_volts"] is None
    assert partial.fields["power.on_battery"] is True  # one bad value never hides the others
    assert partial.problems == ("power.battery_voltage_volts: expected a float, got a JSON dict",)
    assert good.probe == "mqtt"
    assert (good.site_id, good.device_id, good.profile) == ("hb-001", "gateway", "site-gateway-json")
    assert good.fields["power.battery_voltage_volts"] == 51.8
    assert sub.counts() == {(TOPIC, "accepted"): 1, (TOPIC, "partial"): 1, (TOPIC, "malformed"): 2}


async def test_broker_restart_resubscribes(
    mosquitto: Mosquitto, subscriber: tuple[TelemetrySubscriber, list[Observation]]
) -> None:
    sub, seen = subscriber
    await _publish(mosquitto, TOPIC, json.dumps(GOOD))
    await wait_until(lambda: any(o.error is None for o in seen), timeout=5)
    await asyncio.to_thread(mosquitto.restart)
    await wait_until(lambda: sub.connections >= 2 and sub.connected.is_set(), timeout=15)
    seen.clear()
    await _publish(mosquitto, TOPIC, json.dumps({**GOOD, "source": "mains"}))
    found = await wait_until(lambda: [o for o in seen if o.error is None], timeout=5)
    assert found[0].fields["power.on_battery"] is False


async def test_silent_device_turns_unknown(subscriber: tuple[TelemetrySubscriber, list[Observation]]) -> None:
    _sub, seen = subscriber
    # 2 intervals of 0.5 s without a message
    timeout_obs = await wait_until(lambda: [o for o in seen if o.error is not None], timeout=5)
    assert timeout_obs[0].error is not None
    assert timeout_obs[0].error.kind is ErrorKind.TIMEOUT
    assert timeout_obs[0].error.message.startswith("no telemetry for 2 intervals")
    nulled = [o for o in seen if o.error is None]
    assert nulled
    assert set(nulled[-1].fields.values()) == {None}
    # silence is reported once, not at every tick
    await asyncio.sleep(1.2)
    assert len([o for o in seen if o.error is not None]) == 1


# -- configuration ----------------------------------------------------------------------------------


def _telemetry_config(
    tmp_path: Path, *, broker: Mosquitto | None, profile: str = "site-gateway-json"
) -> Path:
    sites = [
        {
            "id": "hb-001",
            "name": "Trạm Hòa Bình 001",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "gateway",
                    "role": "power",
                    "address": "127.0.0.1",
                    "snmp_enabled": False,
                    "icmp": {"enabled": False},
                    "telemetry": {"topic": TOPIC, "profile": profile, "interval": "0.5s"},
                }
            ],
        }
    ]
    config = province_config(sites, listen=f"127.0.0.1:{free_tcp_port()}", defaults={"hard_after": 1})
    config["telemetry"] = {"enabled": True, "silent_after": 3}
    if broker is not None:
        config["mqtt"] = {"host": broker.host, "port": broker.port, "client_id": "uptimewatch-e2e"}
    return write_yaml(tmp_path / "config.yaml", config)


def test_config_problems_are_config_errors(tmp_path: Path) -> None:
    path = _telemetry_config(tmp_path, broker=None, profile="no-such-profile")
    loaded = load_config(path)
    with pytest.raises(ConfigError) as caught:
        check_telemetry(loaded.config, loaded.source, REPO / "probes")
    messages = [str(i) for i in caught.value.issues]
    assert any("no mqtt broker section" in m for m in messages), messages
    assert any(
        "unknown telemetry profile 'no-such-profile'" in m and "site-gateway-json" in m for m in messages
    )


async def test_daemon_shows_pushed_fields_and_silence(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = _telemetry_config(tmp_path, broker=mosquitto)
    async with run_daemon(config) as daemon:
        subscriber = daemon.telemetry_in
        assert subscriber is not None
        await asyncio.wait_for(subscriber.connected.wait(), 10)
        await _publish(mosquitto, TOPIC, json.dumps(GOOD))

        async def gateway() -> dict[str, Any]:
            _status, body = await async_http("GET", daemon.url + "/api/v1/sites/hb-001")
            return dict(json.loads(body)["devices"][0])

        async def pushed() -> dict[str, Any] | None:
            device = await gateway()
            return device if device["fields"].get("power.battery_voltage_volts") == 51.8 else None

        device = await wait_until(pushed, timeout=5)
        assert device["fields"]["power.on_battery"] is True
        assert any(c["name"] == "power.on_battery" for c in device["checks"])

        _status, metrics = await async_http("GET", daemon.url + "/metrics")
        assert f'uptimewatch_telemetry_messages_total{{result="accepted",topic="{TOPIC}"}} 1.0' in metrics

        # then the gateway falls silent: 3 intervals of 0.5 s
        async def silent() -> dict[str, Any] | None:
            device = await gateway()
            probe = device["probes"].get("mqtt") or {}
            return device if "no telemetry for 3 intervals" in str(probe) else None

        device = await wait_until(silent, timeout=10)
        assert device["fields"]["power.battery_voltage_volts"] is None
        on_battery = next(c for c in device["checks"] if c["name"] == "power.on_battery")
        # the API renders check states as the CheckState value (or, if that changes, its name)
        assert on_battery["state"] in (CheckState.UNKNOWN.value, "unknown")
