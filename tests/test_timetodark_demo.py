"""Time-to-dark driven through the demo's simulated power plants, polled over real SNMP.

The simulator's batteries drain after a mains failure as a function of its clock; here the clock
is moved by hand, each plant is polled with the daemon's SNMP probe (pysnmp against the demo's
agent on loopback, decoded by the shipped ups-mib profile), and every observation is stamped
with the simulated time. The prediction is then checked against the simulator's own truth.
The last test runs the whole daemon on an accelerated clock and reads the API and the metric.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import async_http, free_tcp_port, wait_until, write_yaml
from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from uptimewatch.app import run_daemon
from uptimewatch.config.models import Config
from uptimewatch.config.resolve import ResolvedDevice, resolve_all
from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import DeviceModel, compile_model, data_dir, load_models
from uptimewatch.demo.devices import ManualClock, SimClock, Simulator
from uptimewatch.demo.province import DemoProvince, generate_province
from uptimewatch.power import PowerTracker, TimeToDark
from uptimewatch.probing import snmp
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.profiles import load_profiles

MINUTES_REMAINING_OID = "1.3.6.1.2.1.33.1.2.3.0"
SP2_TIME_LEFT_OID = "1.3.6.1.4.1.12148.10.10.8.5.0"
#: the simulated plant disconnects its load when the charge reaches 0, at 46.0 V
SIM_CUTOFF = 46.0


def free_udp_port() -> int:
    return free_port_below_ephemeral("127.16.1.1")


def placeholder_model(minutes: int) -> DeviceModel:
    """The demo's power plant, with firmware that reports a fixed runtime figure."""
    import yaml

    base = data_dir()
    common = yaml.safe_load((base / "common.yaml").read_text(encoding="utf-8"))
    spec = yaml.safe_load((base / "power.yaml").read_text(encoding="utf-8"))
    spec["model"] = f"power-{minutes}"
    for obj in spec["objects"]:
        if obj["oid"] in (MINUTES_REMAINING_OID, SP2_TIME_LEFT_OID):
            obj.pop("var", None)
            obj["value"] = minutes
    return compile_model(f"power-{minutes}", common, spec)


def demo_province(port: int, placeholders: dict[int, int]) -> tuple[DemoProvince, dict[str, DeviceModel]]:
    """Four sites (hub, agg, two leaves); site index -> placeholder minutes for its plant."""
    province = generate_province(4, districts=1, snmp_port=port)
    models = load_models()
    for index, minutes in placeholders.items():
        model = placeholder_model(minutes)
        models[model.name] = model
        site_id = province.sites[index].id
        province.devices = [
            dataclasses.replace(d, model=model.name) if (d.site_id, d.device_id) == (site_id, "power") else d
            for d in province.devices
        ]
    province.config["defaults"]["power"] = {"cutoff_voltage_volts": SIM_CUTOFF}
    return province, models


@dataclass
class Plants:
    province: DemoProvince
    sim: Simulator
    clock: ManualClock
    devices: dict[str, ResolvedDevice]  # site id -> its power plant
    tracker: PowerTracker

    def truth(self, site_id: str) -> float:
        """Seconds until the simulated site goes dark, from the simulator's own state."""
        charge, on_battery = self.sim.battery(site_id)
        assert on_battery
        spec = self.sim.site(site_id).spec
        return charge * spec.battery_runtime_s


@pytest.fixture
async def plants() -> AsyncIterator[Plants]:
    port = free_udp_port()
    # hub: 999 min forever; leaf 2: 0 min; agg and leaf 3 report a real figure
    province, models = demo_province(port, {0: 999, 2: 0})
    clock = ManualClock(1_000.0)
    sim = Simulator(province.sites, province.devices, models, clock)
    config = Config.model_validate(province.config)
    devices = {d.site_id: d for d in resolve_all(config) if d.device_id == "power"}
    async with SnmpAgent(sim, port):
        yield Plants(province, sim, clock, devices, PowerTracker(devices.values()))


async def poll_all(p: Plants, catalog: Any, transport: Any) -> dict[str, TimeToDark | None]:
    out = {}
    for site_id, device in p.devices.items():
        obs = await snmp.probe(device, catalog, transport)
        assert obs.error is None, obs.error
        # the simulation's time, not the wall clock's: the battery drains on the former
        out[site_id] = p.tracker.ingest(msgspec.structs.replace(obs, started_at=p.clock.now()))
    return out


async def test_battery_drain_is_predicted_within_ten_percent_and_placeholders_are_distrusted(
    plants: Plants,
) -> None:
    catalog = load_profiles()
    transport = create_transport()
    hub, agg, leaf2, leaf3 = (s.id for s in plants.province.sites)
    try:
        await poll_all(plants, catalog, transport)
        for site_id in (hub, agg, leaf2, leaf3):
            plants.sim.set_mains(site_id, False)
        # a mains failure, polled every simulated minute for 20 minutes
        for _ in range(20):
            plants.clock.advance(60.0)
            await poll_all(plants, catalog, transport)
        estimates = plants.tracker.sites()
        for site_id in (hub, agg, leaf2, leaf3):
            est = estimates[site_id]
            assert est.status == "on_battery"
            assert est.seconds == pytest.approx(plants.truth(site_id), rel=0.10), (site_id, est.reason)

        assert (estimates[hub].vendor_minutes, estimates[hub].vendor_trusted) == (999.0, False)
        assert estimates[hub].method in ("trends", "charge_trend", "voltage_trend")
        assert "999 min is a known placeholder" in str(estimates[hub].reason)
        assert estimates[leaf2].vendor_trusted is False
        assert "0 min while the plant still answers" in str(estimates[leaf2].reason)
        # a real figure that agrees with the measured drain is the one trusted
        assert (estimates[agg].method, estimates[agg].confidence) == ("vendor", "high")

        # the dispatch list: the hub (1 h bank at a heavier load) goes dark first
        ranked = sorted(plants.tracker.time_to_dark(plants.clock.now()).items(), key=lambda kv: kv[1])
        assert ranked[0][0] == hub
        assert {s for s, _ in ranked} == {hub, agg, leaf2, leaf3}

        # mains returns at the hub: recharge is tracked, towards the simulator's 5 h full recharge
        plants.sim.set_mains(hub, True)
        for _ in range(20):
            plants.clock.advance(60.0)
            await poll_all(plants, catalog, transport)
        est = plants.tracker.sites()[hub]
        charge, _ = plants.sim.battery(hub)
        assert est.status == "recharging"
        assert est.charge_rate_percent_per_hour == pytest.approx(100.0 / 5.0, rel=0.15)
        assert est.full_at is not None
        assert est.full_at - est.at == pytest.approx((1.0 - charge) * 5 * 3600.0, rel=0.15)
        assert hub not in plants.tracker.time_to_dark(plants.clock.now())
    finally:
        await transport.close()


def _metric(text: str, name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels["site"]] = sample.value
    return out


async def test_daemon_serves_the_ranked_dispatch_list_and_the_metric(tmp_path: Path) -> None:
    port = free_udp_port()
    # the simulator's own runtime figures count simulated minutes, which the accelerated clock makes
    # meaningless against the wall clock: both plants report placeholders, so the trends decide
    province, models = demo_province(port, {0: 65535, 1: 999})
    speed = 60.0  # a simulated minute per second: the agg's 3 h bank lasts 3 real minutes
    sim = Simulator(province.sites, province.devices, models, SimClock(speed))
    listen = f"127.0.0.1:{free_tcp_port()}"
    province.config["server"]["listen"] = listen
    province.config["defaults"] |= {"interval": "1s", "hard_after": 1}
    config = write_yaml(tmp_path / "config.yaml", province.config)
    hub, agg, *_ = (s.id for s in province.sites)

    async with SnmpAgent(sim, port), run_daemon(config) as daemon:
        await wait_until(lambda: len(daemon.power.sites()) == 4, timeout=20)
        sim.set_mains(hub, False)
        sim.set_mains(agg, False)

        async def ranked() -> list[dict[str, Any]] | None:
            status, body = await async_http("GET", daemon.url + "/api/v1/power/time-to-dark")
            assert status == 200
            rows: list[dict[str, Any]] = json.loads(body)["sites"]
            trends = ("trends", "charge_trend", "voltage_trend")
            # settled: a straight line through enough samples (a 1 % charge step is 2 s of drain here)
            on_battery = [
                r
                for r in rows
                if r["status"] == "on_battery" and r["method"] in trends and r["confidence"] == "high"
            ]
            return (
                rows if len(on_battery) == 2 and all(r["seconds"] is not None for r in on_battery) else None
            )

        rows = await wait_until(ranked, timeout=40)
        assert [r["site_id"] for r in rows[:2]] == [hub, agg]
        assert rows[0]["rank"] == 1
        assert rows[0]["name"].startswith("Trạm HUB")
        assert rows[0]["vendor_trusted"] is False  # 65535: "no figure", as the profile decodes it
        for row in rows[:2]:
            # wall-clock seconds; the simulator's truth divided by its speed
            charge, _ = sim.battery(row["site_id"])
            truth = charge * sim.site(row["site_id"]).spec.battery_runtime_s / speed
            assert row["seconds"] == pytest.approx(truth, rel=0.10, abs=3.0), row["reason"]

        # the status page asks in its reader's language; the API answers English by default
        status, body = await async_http("GET", daemon.url + "/api/v1/power/time-to-dark?lang=vi")
        assert status == 200
        in_vi = {r["site_id"]: r["reason"] for r in json.loads(body)["sites"]}
        assert in_vi[hub] != rows[0]["reason"]
        assert "trend" not in in_vi[hub]

        status, text = await async_http("GET", daemon.url + "/metrics")
        assert status == 200
        series = _metric(text, "uptimewatch_site_time_to_dark_seconds")
        assert set(series) == {hub, agg}
        assert series[hub] < series[agg]
