"""The power half of the device catalog: UPS, DC plants and generators read through real SNMP.

Every UPS, DC-plant and generator recording of the corpus is served by snmpsim and polled with
``profile: auto`` through the real transport. The expected values below were written by hand from
the recordings and ``corpus/INDEX.md`` / ``OIDS.md`` (units applied by hand), never copied from
the decoder's output. Small recordings of our own cover each quirk class and devices the catalog
has never seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.snmpsim import SnmpsimEndpoint, SnmpsimFactory, corpus_dir, snmp_target
from tests.test_snmp_probe import device
from uptimewatch.model.observation import Observation
from uptimewatch.probing.snmp import probe
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.probing.snmp_types import SnmpTransport
from uptimewatch.profiles import ProfileCatalog, load_files, load_profiles

#: raw "not available" values that must never surface as a field value
SENTINELS = {65535, 4294967295, 2147483647, -2147483648, 655.35, 6553.5, 214748364.7}

UPS = "ups"
DC = "dc"
GEN = "generator"

# stem -> (category, profiles matched, expected fields). None means "known to be unknown".
EXPECTED: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "cetpower": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": 6000,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 51.3,  # 513 x 0.1 V: a 48 V plant
            "power.battery_current_amps": 69.8,
            "power.input_voltage_volts[1]": 238,
            "power.output_load_percent[1]": 25,
            # upsOutputSource battery(5) but 0 s on battery: an inverter fed from the DC bus
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
            "power.alarms_active": 0,
        },
    ),
    "cxc_ups": (
        UPS,
        ["generic-host", "ups-alpha-cxc"],
        {
            "power.battery_minutes_remaining": 1902,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 53.8,
            "power.battery_current_amps": -0.2,
            "power.input_voltage_volts[1]": 122.2,  # 1222 in 0.1 V, against RFC 1628
            "power.output_load_percent[1]": None,  # recorded as NULL
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
        },
    ),
    "eaton-mgeups_9pxle": (
        UPS,
        ["generic-host", "ups-mib", "ups-eaton-mge"],
        {
            "power.battery_minutes_remaining": pytest.approx(1132 / 60),  # vendor seconds win
            "power.battery_charge_percent": 91,
            "power.battery_voltage_volts": 55.0,
            "power.input_voltage_volts[1]": 228,
            "power.output_load_percent[1]": 40,
            "power.battery_fault": False,
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
            "power.alarms_active": 0,
        },
    ),
    "eatonupsm2_9px+empg2": (
        UPS,
        ["generic-host", "ups-mib", "ups-eaton-xups"],
        {
            "power.battery_minutes_remaining": pytest.approx(26311 / 60),  # UPS-MIB says 438
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 53.1,
            "power.input_voltage_volts[1]": 238,
            "power.ambient_temperature_celsius": 27,
            "power.ambient_humidity_percent": 24,
            "power.contact_closed[1]": None,  # contact type notUsed(4)
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
            "power.alarms_active": 0,
        },
    ),
    "generex-ups_cs141": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": 544,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 271.6,
            "power.input_voltage_volts[1]": 233,
            "power.output_voltage_volts[2]": 233,
            "power.output_voltage_volts[3]": 235,
            "power.output_load_percent[1]": 2,
            "power.on_battery": False,
            "power.source": "bypass",
        },
    ),
    "netmanplus_204": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": 135,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 122.5,
            "power.battery_current_amps": -0.1,
            "power.input_voltage_volts[1]": 242,
            "power.output_load_percent[1]": 8,
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
        },
    ),
    "huaweiups_ups2000": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": None,  # 4294967295 as Gauge32
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 270.7,
            "power.battery_current_amps": 0.4,
            "power.input_voltage_volts[1]": 233,
            "power.output_load_percent[1]": 27,
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
        },
    ),
    "poweralert_2": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": 24,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 42.0,
            "power.input_voltage_volts[1]": 122,
            "power.output_load_percent[1]": 27,
            "power.alarms_active": 2,
            "power.alarm[22]": "battery_bad",
            "power.alarm[23]": "battery_bad",
            "power.source": "mains",
        },
    ),
    "deltaups_mini-snmp": (
        UPS,
        ["generic-host", "ups-delta-minisnmp"],
        {
            "power.battery_minutes_remaining": 150,
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 221.1,
            "power.input_voltage_volts[1]": 231.3,  # 2313 in 0.1 V
            "power.output_voltage_volts[1]": 230.2,
            "power.output_load_percent[1]": 36,
            "device.uptime_seconds": None,  # no sysUpTime in the recording
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
            "power.alarms_active": 0,
        },
    ),
    "netvision-rfc": (
        UPS,
        ["generic-host", "ups-mib"],
        {
            "power.battery_minutes_remaining": None,  # 65535
            "power.battery_current_amps": None,  # 65535
            "power.battery_charge_percent": 100,
            "power.battery_voltage_volts": 217.0,
            "power.input_voltage_volts[1]": 234,
            "power.output_load_percent[1]": 7,
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
        },
    ),
    "apc_smx750i": (
        UPS,
        ["generic-host", "ups-apc"],
        {
            "power.battery_minutes_remaining": pytest.approx(95.15),  # 570900 cs
            "power.battery_charge_percent": 100.0,  # 1000 x 0.1 %
            "power.battery_voltage_volts": 54,
            "power.battery_temperature_celsius": 31,
            "power.battery_replace": False,
            "power.input_voltage_volts[1]": 232,
            "power.on_battery": False,
            "power.mains_ok": True,
            "power.source": "mains",
        },
    ),
    "enexus": (
        DC,
        ["generic-host", "power-eltek-sp2"],
        {
            "power.system_status": "normal",
            "power.mains_ok": True,
            "power.on_battery": False,
            "power.source": "mains",
            "power.input_voltage_volts[1]": 228,
            "power.battery_voltage_volts": 54.16,  # 5416 x 0.01 V
            # powerSystemCurrentDecimalSetting = deciAmpere(1): currents in 0.1 A
            "power.battery_current_amps": -0.2,
            "power.rectifier_current_amps": 6.3,
            "power.load_current_amps": 5.1,
            "power.battery_minutes_remaining": 356,
            "power.battery_charge_percent": None,  # capacity scale is Ah (210 Ah), not %
            "power.battery_temperature_celsius": None,  # probe status disabled, value 0
            "power.rectifiers_total": 3,
            "power.rectifiers_ok": 3,
        },
    ),
    "enexus_smartpacks-version-214": (
        DC,
        ["generic-host", "power-eltek-sp2"],
        {
            # mains failure alarm disabled(4): says nothing about mains
            "power.mains_ok": None,
            "power.on_battery": None,
            "power.source": "unknown",
            "power.battery_voltage_volts": 54.02,
            "power.battery_minutes_remaining": 363,
            "power.load_current_amps": 94,  # decimal setting ampere(0)
            "power.rectifier_current_amps": 92,
            "power.rectifiers_total": 7,
            "power.rectifiers_ok": 7,
            "device.uptime_seconds": None,
        },
    ),
    "eltek-webpower": (
        DC,
        ["generic-host", "power-eltek-webpower"],
        {
            "power.battery_voltage_volts": 53.23,
            "power.battery_current_amps": 0,
            "power.battery_minutes_remaining": 1406,
            "power.battery_breaker_open": False,
            "power.input_voltage_volts[1]": 233,
            "power.input_voltage_volts[3]": 236,
            "power.load_current_amps": 58,
            "power.rectifiers_total": 3,
            "power.rectifiers_ok": 3,
            "power.rectifiers_active": 3,
            "power.mains_ok": True,
            "power.on_battery": False,
            "power.source": "mains",
        },
    ),
    "netsure": (
        DC,
        ["generic-host", "power-vertiv-vec"],
        {
            "power.system_voltage_volts": 54.01,  # the string "54.01"
            "power.load_current_amps": 1580,
            "power.battery_current_amps": 0.0,  # the string "0.00"
            "power.system_status": "normal",
        },
    ),
    "ees_controller": (
        DC,
        ["generic-host", "power-vertiv-ees"],  # sysObjectID is net-snmp's: found by its subtree
        {
            "power.system_status": "normal",
            "power.system_voltage_volts": 54.696,
            "power.battery_voltage_volts": 54.711,
            "power.battery_current_amps": 0,
            "power.battery_charge_percent": 100,
            "power.load_current_amps": 42.864,
            "power.input_voltage_volts[1]": 203.717,
            "power.battery_mode": "float",
            "power.rectifiers_total": 9,
            "power.rectifiers_ok": 9,
            "power.mains_ok": True,
            "power.on_battery": False,
            "power.source": "mains",
            "device.uptime_seconds": None,
        },
    ),
    "ees": (
        DC,
        ["generic-host", "power-vertiv-ees"],
        {
            "power.system_status": "normal",
            "power.battery_voltage_volts": 54.58,
            "power.input_voltage_volts[1]": 234.803,
            "power.controller_communication_ok": True,
            "power.battery_mode": "float",
            "power.rectifiers_total": 3,
            "power.rectifiers_ok": 3,
            "power.mains_ok": True,
            "power.on_battery": False,
        },
    ),
    "huawei-smu_11b": (
        DC,
        ["generic-host", "power-huawei-smu"],
        {
            "power.system_voltage_volts": 53.5,
            "power.load_current_amps": 34,
            "power.battery_current_amps": 0,
            "power.rectifier_current_amps": 31,
            "power.battery_charge_percent": 100.0,  # string 5: 1000 x 0.1 %
            "power.input_voltage_volts[1]": 231.2,
            "power.alarms_active": 383,
            "power.battery_mode": "float",
            "power.mains_ok": True,
            "power.on_battery": False,
            "power.source": "mains",
        },
    ),
    "deltaorion_deltaorion": (
        DC,
        ["generic-host", "power-delta-orion"],
        {
            "power.system_voltage_volts": 54.45,  # row "Vsys": 5445, exponent -2
            "power.battery_voltage_volts": 53.42,  # row "Vbackup"
            "power.load_current_amps": None,  # 2147483647: invalid
            "power.battery_charge_percent": None,
        },
    ),
    "algcom-dc-ups": (
        DC,
        ["generic-host", "power-algcom"],
        {
            "power.system_voltage_volts": 53.9,
            "power.battery_voltage_volts": 53.9,
            "power.load_current_amps": 1.374,
            "power.battery_current_amps": 0,
            "power.input_voltage_volts[1]": None,  # optional AC measurement absent: 0
        },
    ),
    "ict-mps": (
        DC,
        ["generic-host", "power-ict-mps"],
        {
            "power.input_voltage_volts[1]": 121,
            "power.system_voltage_volts": 54.1,  # hex-encoded "54.1"
            "power.load_current_amps": 2.3,
            "power.battery_temperature_celsius": 36,
            "power.rectifiers_total": 4,
            "power.rectifiers_ok": 4,
            "power.mains_ok": True,
            "power.on_battery": False,
        },
    ),
    "himoinsa-gensets": (
        GEN,
        ["generic-host", "generator-himoinsa"],  # sysObjectID .0.0: found by its status word
        {
            "device.sys_object_id": None,
            "power.generator_running": False,  # status 6: motor stopped, auto
            "power.generator_mode": "auto",
            "power.generator_alarm": False,
            "power.source": "mains",  # CEC7 status 66: mains commutator closed, auto
            "power.mains_ok": True,
            "power.fuel_percent": 100.0,
            "power.engine_battery_voltage_volts": 13.7,
            "power.generator_voltage_volts": 0,
            "power.generator_frequency_hz": 0,
            "power.mains_frequency_hz": 50.0,
            "power.input_voltage_volts[1]": 241,
        },
    ),
}


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


@pytest.fixture
async def transport() -> AsyncIterator[SnmpTransport]:
    t = create_transport()
    try:
        yield t
    finally:
        await t.close()


async def poll(
    catalog: ProfileCatalog, transport: SnmpTransport, endpoint: SnmpsimEndpoint, community: str
) -> Observation:
    dev = replace(device(), snmp=snmp_target(endpoint, community))
    return await probe(dev, catalog, transport)


def assert_no_sentinel(fields: Mapping[str, object]) -> None:
    leaked = {
        k: v
        for k, v in fields.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v in SENTINELS
    }
    assert not leaked, f"sentinel values surfaced as data: {leaked}"


def test_corpus_has_every_power_recording() -> None:
    assert len(EXPECTED) == 22  # INDEX.md: 11 UPS, 10 DC plants, 1 generator
    stems = {p.stem for p in (corpus_dir() / "snmprec").glob("*.snmprec")}
    assert set(EXPECTED) <= stems
    assert [c for c, _, _ in EXPECTED.values()].count(UPS) == 11
    assert [c for c, _, _ in EXPECTED.values()].count(DC) == 10


@pytest.mark.parametrize("stem", sorted(EXPECTED))
async def test_corpus_power_device(
    stem: str, catalog: ProfileCatalog, transport: SnmpTransport, snmpsim: SnmpsimEndpoint
) -> None:
    _, profiles, expected = EXPECTED[stem]
    obs = await poll(catalog, transport, snmpsim, stem)
    assert obs.ok, obs.error
    assert obs.profile == ",".join(profiles)
    for name, value in expected.items():
        assert name in obs.fields, f"{stem}: {name} missing"
        got = obs.fields[name]
        if value is None or isinstance(value, bool):
            assert got is value, f"{stem}: {name} = {got!r}, expected {value!r}"
        else:
            assert got == value, f"{stem}: {name} = {got!r}, expected {value!r}"
    assert_no_sentinel(obs.fields)
    assert not [k for k in obs.fields if k.startswith("_")]
    # the only problems these devices give are the ones the recordings really carry
    assert obs.problems == (), obs.problems


@pytest.mark.parametrize("stem", ["himoinsa-gensets", "netsure"])
def test_probe_cli_reads_power_devices(stem: str, snmpsim: SnmpsimEndpoint) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "probe", snmpsim.address, "-c", stem, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    _, profiles, expected = EXPECTED[stem]
    assert doc["profile"] == ",".join(profiles)
    for name, value in expected.items():
        assert doc["fields"][name] == value
    assert stem not in done.stderr  # the community never shows in logs


# --- quirk classes, on small recordings of our own -------------------------------------------------

SYS = "1.3.6.1.2.1.1"
UPS_MIB = "1.3.6.1.2.1.33.1"
SP2 = "1.3.6.1.4.1.12148.10"


def rec(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def ups_recording(
    sys_oid: str,
    *,
    minutes: str = "2|30",
    current: str = "2|-12",
    input_volts: str = "2|231",
    source: int = 3,
    seconds_on_battery: int = 0,
    uptime: bool = True,
) -> str:
    lines = [f"{SYS}.1.0|4|test UPS", f"{SYS}.2.0|6|{sys_oid}"]
    if uptime:
        lines.append(f"{SYS}.3.0|67|12345600")
    lines += [
        f"{UPS_MIB}.2.1.0|2|2",
        f"{UPS_MIB}.2.2.0|2|{seconds_on_battery}",
        f"{UPS_MIB}.2.3.0|{minutes}",
        f"{UPS_MIB}.2.4.0|2|87",
        f"{UPS_MIB}.2.5.0|2|545",
        f"{UPS_MIB}.2.6.0|{current}",
        f"{UPS_MIB}.3.3.1.3.1|{input_volts}",
        f"{UPS_MIB}.4.1.0|2|{source}",
        f"{UPS_MIB}.4.4.1.5.1|2|33",
        f"{UPS_MIB}.6.1.0|66|0",
    ]
    return rec(*lines)


def sp2_recording(sys_oid: str, *, battery_current: str = "2|-5", battery_volts: int = 5390) -> str:
    return rec(
        f"{SYS}.1.0|4|some DC controller",
        f"{SYS}.2.0|6|{sys_oid}",
        f"{SYS}.3.0|67|500",
        f"{SP2}.2.1.0|2|2",
        f"{SP2}.2.15.0|2|0",
        f"{SP2}.2.16.0|2|0",
        f"{SP2}.2.17.0|2|1",
        f"{SP2}.3.2.1.0|2|3",
        f"{SP2}.3.4.1.6.1|2|0",
        f"{SP2}.5.2.5.0|2|0",
        f"{SP2}.5.6.1.2.1|2|1",
        f"{SP2}.5.6.1.2.2|2|3",
        f"{SP2}.5.6.1.2.3|2|6",
        f"{SP2}.9.2.5.0|2|40",
        f"{SP2}.10.1.0|2|1",
        f"{SP2}.10.5.5.0|2|{battery_volts}",
        f"{SP2}.10.6.5.0|{battery_current}",
        f"{SP2}.10.7.1.0|2|1",
        f"{SP2}.10.7.5.0|2|24",
        f"{SP2}.10.8.5.0|66|95",
        f"{SP2}.10.9.5.0|2|64",
    )


HIMOINSA = "1.3.6.1.4.1.41809.1"

OWN: dict[str, str] = {
    # sentinels: 65535 minutes, 2147483647 current
    "sentinel-65535": ups_recording("1.3.6.1.4.1.99999.1", minutes="2|65535", current="2|2147483647"),
    "sentinel-gauge": ups_recording("1.3.6.1.4.1.99999.1", minutes="66|4294967295"),
    # an unknown vendor's card sending input volts in 0.1 V: caught, not believed
    "decivolt-unknown": ups_recording("1.3.6.1.4.1.99999.1", input_volts="2|2313"),
    # the same bug from a card the catalog knows (Delta Mini-SNMP): corrected
    "decivolt-delta": ups_recording("1.3.6.1.4.1.2254.2.99", input_volts="2|2313"),
    "no-uptime": ups_recording("1.3.6.1.4.1.99999.1", uptime=False),
    "inverter": ups_recording("1.3.6.1.4.1.99999.1", source=5, seconds_on_battery=0),
    "on-battery": ups_recording("1.3.6.1.4.1.99999.1", source=5, seconds_on_battery=120),
    # never-seen devices: a private enterprise, the standard MIB underneath
    "unknown-ups": ups_recording("1.3.6.1.4.1.99999.7"),
    "unknown-sp2": sp2_recording("1.3.6.1.4.1.8072.3.2.10"),
    # negative battery current sent as Gauge32 two's complement (4294967291 = -5)
    "gauge-wrap": sp2_recording("1.3.6.1.4.1.12148.10", battery_current="66|4294967291"),
    # a unit bug: battery volts in mV where the MIB says 0.01 V (53900 -> 539 V on a 48 V plant)
    "implausible-48v": sp2_recording("1.3.6.1.4.1.12148.10", battery_volts=53900),
    # VEC-MIB: numbers as decimal strings, under a generic identity
    "vec-strings": rec(
        f"{SYS}.2.0|6|1.3.6.1.4.1.8072.3.2.10",
        f"{SYS}.3.0|67|100",
        "1.3.6.1.4.1.885.3.2.1.1.0|4|53.90",
        "1.3.6.1.4.1.885.3.2.1.2.0|4|  212 ",
        "1.3.6.1.4.1.885.3.2.1.7.0|4x|2d31322e35",
        "1.3.6.1.4.1.885.3.2.1.10.0|2|2",
    ),
    # a genset running on load in manual mode with an alarm: 1 running + 8 manual + 128 alarm
    # + 256 gen commutator; CEC7: 32 gen commutator closed + 4 manual
    "genset-running": rec(
        f"{SYS}.2.0|6|.0.0",
        f"{HIMOINSA}.27.0|2|455",
        f"{HIMOINSA}.28.0|2|2301",
        f"{HIMOINSA}.46.0|66|393",
        f"{HIMOINSA}.55.1.2.0|2|0",
        f"{HIMOINSA}.55.1.6.0|2|0",
        f"{HIMOINSA}.55.1.9.0|2|501",
        f"{HIMOINSA}.55.1.28.0|66|36",
    ),
}


@pytest.fixture(scope="module")
def own(snmpsim_factory: SnmpsimFactory) -> SnmpsimEndpoint:
    return snmpsim_factory(OWN, v3=False)


async def test_sentinels_are_null(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "sentinel-65535")
    assert obs.fields["power.battery_minutes_remaining"] is None
    assert obs.fields["power.battery_current_amps"] is None
    assert obs.fields["power.battery_charge_percent"] == 87
    obs = await poll(catalog, transport, own, "sentinel-gauge")
    assert obs.fields["power.battery_minutes_remaining"] is None
    assert obs.fields["power.battery_current_amps"] == -1.2
    assert_no_sentinel(obs.fields)


async def test_decivolt_input(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "decivolt-unknown")
    assert obs.fields["power.input_voltage_volts[1]"] is None
    [problem] = obs.problems
    assert problem.startswith("power.input_voltage_volts[1]: raw value 2313")
    assert "0.1 V" in problem
    obs = await poll(catalog, transport, own, "decivolt-delta")
    assert obs.profile == "generic-host,ups-delta-minisnmp"
    assert obs.fields["power.input_voltage_volts[1]"] == 231.3
    assert obs.problems == ()


async def test_missing_sysuptime(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "no-uptime")
    assert obs.ok, obs.error
    assert obs.fields["device.uptime_seconds"] is None
    assert obs.fields["power.battery_minutes_remaining"] == 30
    assert obs.problems == ()


async def test_inverter_is_not_on_battery(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    inverter = await poll(catalog, transport, own, "inverter")
    assert (inverter.fields["power.on_battery"], inverter.fields["power.mains_ok"]) == (False, True)
    assert inverter.fields["power.source"] == "mains"
    # the same source with seconds on battery counting: mains has really gone
    real = await poll(catalog, transport, own, "on-battery")
    assert (real.fields["power.on_battery"], real.fields["power.mains_ok"]) == (True, False)
    assert real.fields["power.source"] == "battery"


async def test_unknown_vendor_speaking_ups_mib(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "unknown-ups")
    assert obs.profile == "generic-host,ups-mib"
    assert obs.fields["device.sys_object_id"] == "1.3.6.1.4.1.99999.7"
    assert obs.fields["power.battery_minutes_remaining"] == 30
    assert obs.fields["power.battery_charge_percent"] == 87
    assert obs.fields["power.battery_voltage_volts"] == 54.5
    assert obs.fields["power.battery_current_amps"] == -1.2
    assert obs.fields["power.input_voltage_volts[1]"] == 231
    assert obs.fields["power.output_load_percent[1]"] == 33
    assert obs.fields["power.source"] == "mains"
    assert obs.problems == ()


async def test_unknown_vendor_speaking_sp2(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "unknown-sp2")
    assert obs.profile == "generic-host,power-eltek-sp2"
    f = obs.fields
    assert f["power.system_status"] == "minor"
    assert (f["power.mains_ok"], f["power.on_battery"], f["power.source"]) == (False, True, "battery")
    assert f["power.battery_voltage_volts"] == 53.9
    assert f["power.battery_current_amps"] == -5  # decimal setting ampere(0)
    assert f["power.load_current_amps"] == 40
    assert f["power.battery_minutes_remaining"] == 95
    assert f["power.battery_charge_percent"] == 64  # capacity scale percent(1)
    assert f["power.battery_temperature_celsius"] == 24
    assert f["power.input_voltage_volts[1]"] == 0
    # rectifier 1 normal, 2 major alarm, 3 notPresent
    assert (f["power.rectifiers_total"], f["power.rectifiers_ok"]) == (2, 1)
    assert obs.problems == ()


async def test_gauge32_negative_wrap(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "gauge-wrap")
    assert obs.fields["power.battery_current_amps"] == -5


async def test_plausibility_catches_unit_bug(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "implausible-48v")
    assert obs.fields["power.battery_voltage_volts"] is None
    [problem] = obs.problems
    assert "raw value 53900 gives 539 V" in problem
    assert "20..65 V" in problem
    assert "48 V plant" in problem


async def test_string_numbers(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "vec-strings")
    assert obs.profile == "generic-host,power-vertiv-vec"
    assert obs.fields["power.system_voltage_volts"] == 53.9
    assert obs.fields["power.load_current_amps"] == 212
    assert obs.fields["power.battery_current_amps"] == -12.5  # hex-encoded "-12.5"
    assert obs.fields["power.system_status"] == "major"


async def test_generator_bitfield(
    catalog: ProfileCatalog, transport: SnmpTransport, own: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, transport, own, "genset-running")
    f = obs.fields
    assert obs.profile == "generic-host,generator-himoinsa"
    assert f["power.generator_running"] is True
    assert f["power.generator_mode"] == "manual"
    assert f["power.generator_alarm"] is True
    assert f["power.source"] == "generator"
    assert f["power.mains_ok"] is False  # gen commutator closed and 0 V on the mains
    assert f["power.fuel_percent"] == 45.5
    assert f["power.generator_voltage_volts"] == 230.1
    assert f["power.generator_frequency_hz"] == 50.1


def test_mask_only_on_integers(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: masked\ndescription: d\nmatch: {generic: true}\n"
        "scalars:\n  device.model: {oid: 1.3.6.1.4.1.1.0, type: string, mask: 3}\n"
    )
    catalog, issues = load_files([tmp_path / "p.yaml"])
    assert catalog is None
    assert [str(i) for i in issues] == [
        f"{tmp_path / 'p.yaml'}:5: scalars.device.model.mask: mask does not apply to type string"
    ]
