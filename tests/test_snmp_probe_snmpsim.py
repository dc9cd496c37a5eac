"""The SNMP probe through the real transport against snmpsim serving the corpus recordings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.fixtures.snmpsim import SnmpsimEndpoint, snmp_target
from tests.test_snmp_probe import device
from uptimewatch.config.models import SnmpVersion
from uptimewatch.model.observation import ErrorKind
from uptimewatch.probing.snmp import ProfileMatchCache, probe
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.profiles import ProfileCatalog, load_profiles


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


async def test_cetpower_over_snmp(catalog: ProfileCatalog, snmpsim: SnmpsimEndpoint) -> None:
    transport = create_transport()
    try:
        dev = replace(device(), snmp=snmp_target(snmpsim, "cetpower"))
        obs = await probe(dev, catalog, transport, ProfileMatchCache())
    finally:
        await transport.close()
    assert obs.ok, obs.error
    assert obs.profile == "generic-host,ups-mib"
    assert obs.fields["power.battery_minutes_remaining"] == 6000
    assert obs.fields["power.battery_voltage_volts"] == 51.3
    assert obs.fields["power.on_battery"] is False
    assert obs.fields["power.mains_ok"] is True
    assert obs.fields["device.sys_object_id"] == "1.3.6.1.4.1.12551.4.0"
    assert not [k for k in obs.fields if k.startswith("power.alarm[")]


async def test_poweralert_alarms_over_snmpv3(catalog: ProfileCatalog, snmpsim: SnmpsimEndpoint) -> None:
    transport = create_transport()
    try:
        dev = replace(device(), snmp=snmp_target(snmpsim, "poweralert_2", SnmpVersion.V3))
        obs = await probe(dev, catalog, transport)
    finally:
        await transport.close()
    assert obs.ok, obs.error
    assert obs.fields["power.alarms_active"] == 2
    assert obs.fields["power.alarm[22]"] == "battery_bad"
    assert obs.fields["power.alarm[23]"] == "battery_bad"
    assert obs.fields["if.oper_up[1]"] is True


async def test_asr920_interfaces_over_snmp(catalog: ProfileCatalog, snmpsim: SnmpsimEndpoint) -> None:
    transport = create_transport()
    try:
        dev = replace(device(), snmp=snmp_target(snmpsim, "iosxe_asr920"))
        obs = await probe(dev, catalog, transport)
    finally:
        await transport.close()
    assert obs.ok, obs.error
    # sysObjectID 1.3.6.1.4.1.9.1.2102: Cisco (sensor-entity) and ciscoProducts (router-cisco-iosxe)
    assert obs.profile == "generic-host,sensor-entity,router-cisco-iosxe"
    assert not [k for k in obs.fields if k.startswith("sensor.")]  # no ENTITY-SENSOR rows recorded
    assert obs.fields["link.oper_up"] is None  # no c3gWanTable row: no LTE modem
    oper = [v for k, v in obs.fields.items() if k.startswith("if.oper_up[")]
    assert (len(oper), oper.count(True)) == (37, 11)
    assert obs.fields["device.uptime_seconds"] is None  # sysUpTime absent: noSuchInstance


async def test_wrong_community_times_out(catalog: ProfileCatalog, snmpsim: SnmpsimEndpoint) -> None:
    transport = create_transport()
    try:
        target = snmp_target(snmpsim, "no-such-recording", timeout=0.3, retries=0)
        obs = await probe(replace(device(), snmp=target), catalog, transport)
    finally:
        await transport.close()
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.TIMEOUT
    assert obs.fields == {}
