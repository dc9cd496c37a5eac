"""Profiles decode real recordings to the values written in the corpus INDEX.md, by hand.

The recordings are read directly (a tiny snmprec parser below) and served the way an agent would
answer: GET of the profile's scalars, a walk of each of its columns. Tests through a real agent
(snmpsim) live in test_snmp_probe.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.fixtures.snmpsim import corpus_recording
from uptimewatch.model.observation import FieldValue
from uptimewatch.probing.snmp_types import SnmpType, Varbind
from uptimewatch.profiles import (
    SYS_OBJECT_ID,
    CompiledProfile,
    ProfileCatalog,
    decode,
    default_profiles_dir,
    load_profiles,
)

REPO = Path(__file__).resolve().parents[1]

_TYPES = {
    "2": SnmpType.INTEGER,
    "4": SnmpType.OCTET_STRING,
    "4x": SnmpType.OCTET_STRING,
    "4e": SnmpType.OCTET_STRING,
    "5": SnmpType.NULL,
    "6": SnmpType.OID,
    "64": SnmpType.IPADDRESS,
    "64x": SnmpType.IPADDRESS,
    "65": SnmpType.COUNTER32,
    "66": SnmpType.GAUGE32,
    "67": SnmpType.TIMETICKS,
    "70": SnmpType.COUNTER64,
}


def read_snmprec(stem: str) -> dict[str, Varbind]:
    """``OID|tag|value`` lines; for a duplicated OID the last line wins, as in snmpsim."""
    path = corpus_recording(stem)
    if not path.exists():
        pytest.fail(f"corpus recording {path} not found (see tests/corpus/README.md)", pytrace=False)
    out: dict[str, Varbind] = {}
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        oid_b, tag_b, value_b = line.split(b"|", 2)
        oid, tag = oid_b.decode().lstrip("."), tag_b.decode()
        kind = _TYPES[tag]
        value: int | bytes | str | None
        if tag in ("4", "4e"):
            value = value_b
        elif tag == "4x":
            value = bytes.fromhex(value_b.decode())
        elif tag == "5":
            value = None
        elif tag in ("6", "64"):
            value = value_b.decode()
        elif tag == "64x":
            value = ".".join(str(b) for b in bytes.fromhex(value_b.decode()))
        else:
            value = int(value_b)
        out[oid] = Varbind(oid, kind, value)
    return out


def _arcs(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


def answer(recording: dict[str, Varbind], profiles: Sequence[CompiledProfile]) -> list[Varbind]:
    """What an agent serving ``recording`` answers to the GET and the walks the profiles ask for."""
    varbinds = [
        recording.get(oid, Varbind(oid, SnmpType.NO_SUCH_OBJECT, None))
        for oid in dict.fromkeys(o for p in profiles for o in p.scalar_oids)
    ]
    ordered = sorted(recording, key=_arcs)
    for root in dict.fromkeys(r for p in profiles for r in p.walk_roots):
        varbinds.extend(recording[o] for o in ordered if o.startswith(root + "."))
    return varbinds


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


BASE_PROFILES = ("generic-host", "ups-mib")


def copy_profiles(dest: Path, *names: str) -> Path:
    """Copy shipped profiles (``generic-host`` and ``ups-mib`` by default) into ``dest``, so a test
    of the engine does not change as the vendor catalog grows."""
    for name in names or BASE_PROFILES:
        shutil.copy(default_profiles_dir() / f"{name}.yaml", dest / f"{name}.yaml")
    return dest


@pytest.fixture
def base_catalog(tmp_path: Path) -> ProfileCatalog:
    """Only generic-host and ups-mib: what a device no vendor profile knows gets."""
    return load_profiles(copy_profiles(tmp_path))


def poll(catalog: ProfileCatalog, stem: str) -> tuple[dict[str, FieldValue], list[str], list[str]]:
    """Auto-detect like the SNMP probe does, then decode; returns fields, problems, profile names."""
    rec = read_snmprec(stem)
    present = {o for o in catalog.probe_oids if o in rec and not rec[o].empty}
    sys_oid = rec.get(SYS_OBJECT_ID)
    profiles = catalog.match(str(sys_oid.value) if sys_oid else None, present)
    fields, problems = decode(profiles, answer(rec, profiles))
    return fields, problems, [p.name for p in profiles]


def test_shipped_profiles_load(catalog: ProfileCatalog) -> None:
    assert default_profiles_dir() == REPO / "probes"
    assert {"generic-host", "ups-mib"} <= set(catalog.names())
    assert catalog.probe_oids[0] == SYS_OBJECT_ID
    assert "1.3.6.1.2.1.33.1.2.1.0" in catalog.probe_oids


def test_cetpower_inverter_is_not_on_battery(catalog: ProfileCatalog) -> None:
    fields, problems, names = poll(catalog, "cetpower")
    assert names == ["generic-host", "ups-mib"]
    assert fields["power.battery_minutes_remaining"] == 6000
    assert fields["power.battery_charge_percent"] == 100
    assert fields["power.battery_voltage_volts"] == 51.3
    assert fields["power.battery_current_amps"] == 69.8
    assert fields["power.battery_status"] == "normal"
    # upsOutputSource says battery(5), but upsSecondsOnBattery is 0: an inverter fed from the DC bus
    assert fields["power.on_battery"] is False
    assert fields["power.mains_ok"] is True
    assert fields["power.source"] == "mains"
    assert fields["power.alarms_active"] == 0
    assert fields["power.input_voltage_volts[1]"] == 238
    assert fields["power.output_load_percent[1]"] == 25
    # its 24 alarm rows all hold zeroDotZero: no alarm field at all
    assert not [k for k in fields if k.startswith("power.alarm[")]
    assert fields["device.sys_object_id"] == "1.3.6.1.4.1.12551.4.0"
    assert fields["device.uptime_seconds"] == 18279186.3
    assert not [k for k in fields if k.startswith("_")]
    assert problems == []


def test_huawei_ups2000_minutes_sentinel(catalog: ProfileCatalog) -> None:
    fields, problems, _ = poll(catalog, "huaweiups_ups2000")
    assert "power.battery_minutes_remaining" in fields
    assert fields["power.battery_minutes_remaining"] is None  # 4294967295 as Gauge32
    assert fields["power.battery_voltage_volts"] == 270.7
    assert fields["power.battery_current_amps"] == 0.4
    assert fields["power.output_load_percent[1]"] == 27
    assert problems == []


def test_netvision_sentinels_and_interfaces(catalog: ProfileCatalog) -> None:
    fields, problems, _ = poll(catalog, "netvision-rfc")
    assert fields["power.battery_minutes_remaining"] is None  # 65535
    assert fields["power.battery_current_amps"] is None  # 65535
    assert fields["power.battery_voltage_volts"] == 217.0
    assert fields["power.on_battery"] is False
    assert fields["power.source"] == "mains"
    # IF-MIB: 4 interfaces, 2 up; eth0 has 64-bit counters and ifHighSpeed 100 (Mbit/s)
    assert sorted(k for k in fields if k.startswith("if.oper_up[")) == [
        f"if.oper_up[{i}]" for i in (1, 2, 3, 4)
    ]
    assert [fields[f"if.oper_up[{i}]"] for i in (1, 2, 3, 4)] == [True, True, False, False]
    assert fields["if.oper_status[3]"] == "down"
    assert fields["if.admin_up[3]"] is False
    assert fields["if.name[2]"] == "eth0"
    assert fields["if.descr[4]"] == "ip6tnl0"
    assert fields["if.in_octets[2]"] == 187084053
    assert fields["if.out_octets[2]"] == 284002689
    assert fields["if.speed_bps[2]"] == 100_000_000
    assert fields["if.out_errors[2]"] == 3
    assert fields["if.alias[2]"] == ""
    assert problems == []


def test_poweralert_active_alarms(catalog: ProfileCatalog) -> None:
    fields, _, _ = poll(catalog, "poweralert_2")
    assert fields["power.alarms_active"] == 2
    alarms = {k: v for k, v in fields.items() if k.startswith("power.alarm[")}
    assert alarms == {"power.alarm[22]": "battery_bad", "power.alarm[23]": "battery_bad"}
    assert fields["power.battery_minutes_remaining"] == 24
    assert fields["power.input_voltage_volts[1]"] == 122


def test_deltaups_decivolt_input_is_implausible(base_catalog: ProfileCatalog) -> None:
    # plain UPS-MIB reads the card's 0.1 V as volts: the value is dropped and named in problems
    fields, problems, names = poll(base_catalog, "deltaups_mini-snmp")
    assert names == ["generic-host", "ups-mib"]
    assert fields["power.input_voltage_volts[1]"] is None
    assert fields["power.battery_voltage_volts"] == 221.1
    assert fields["device.uptime_seconds"] is None  # sysUpTime missing from the recording
    [problem] = [p for p in problems if p.startswith("power.input_voltage_volts[1]")]
    assert "2313" in problem
    assert "0..600" in problem
    assert "0.1 V" in problem  # the hint


def test_deltaups_decivolt_input_is_rescaled(catalog: ProfileCatalog) -> None:
    fields, problems, names = poll(catalog, "deltaups_mini-snmp")
    assert names == ["generic-host", "ups-delta-minisnmp"]  # sysObjectID 1.3.6.1.4.1.2254.2.5
    assert fields["power.input_voltage_volts[1]"] == 231.3  # upsInputVoltage.1 = 2313
    assert fields["power.output_voltage_volts[1]"] == 230.2  # upsOutputVoltage.1 = 2302
    assert fields["power.output_load_percent[1]"] == 36
    assert fields["power.battery_voltage_volts"] == 221.1  # per RFC: 2211 in 0.1 V
    assert fields["power.battery_minutes_remaining"] == 150  # inherited from ups-mib
    assert fields["power.on_battery"] is False
    assert fields["power.source"] == "mains"  # upsOutputSource = 3
    assert fields["device.uptime_seconds"] is None  # sysUpTime missing from the recording
    assert problems == []


def test_cxc_null_load_and_decivolt_input(catalog: ProfileCatalog) -> None:
    fields, problems, names = poll(catalog, "cxc_ups")
    assert names == ["generic-host", "ups-alpha-cxc"]  # sysObjectID 1.3.6.1.4.1.7309.5
    assert fields["power.output_load_percent[1]"] is None  # recorded as NULL
    assert fields["power.input_voltage_volts[1]"] == 122.2  # upsInputVoltage.1 = 1222, in 0.1 V
    assert fields["power.output_voltage_volts[1]"] == 122  # per RFC, volts
    assert fields["power.battery_voltage_volts"] == 53.8  # 538: a 48 V plant
    assert fields["power.battery_current_amps"] == -0.2
    assert fields["power.battery_minutes_remaining"] == 1902
    assert problems == []


def test_generex_on_bypass(catalog: ProfileCatalog) -> None:
    fields, _, names = poll(catalog, "generex-ups_cs141")
    assert "ups-mib" in names
    assert fields["power.source"] == "bypass"
    assert fields["power.on_battery"] is False
    assert fields["power.battery_minutes_remaining"] == 544
    assert fields["power.output_voltage_volts[3]"] == 235


def test_netmanplus_negative_current(catalog: ProfileCatalog) -> None:
    fields, _, _ = poll(catalog, "netmanplus_204")
    assert fields["power.battery_current_amps"] == -0.1
    assert fields["power.battery_voltage_volts"] == 122.5


def test_asr920_interfaces_by_index(catalog: ProfileCatalog) -> None:
    fields, problems, names = poll(catalog, "iosxe_asr920")
    # sysObjectID 1.3.6.1.4.1.9.1.2102: Cisco (sensor-entity) and ciscoProducts (router-cisco-iosxe)
    assert names == ["generic-host", "sensor-entity", "router-cisco-iosxe"]
    # but the recording holds no ENTITY-SENSOR and no c3gWanTable row: nothing known from either
    assert not [k for k in fields if k.startswith(("sensor.", "link.modem_status["))]
    assert fields["device.temperature_celsius"] is None
    assert fields["link.modem_state"] is None
    assert fields["link.oper_up"] is None
    oper = {k: v for k, v in fields.items() if k.startswith("if.oper_up[")}
    assert len(oper) == 37  # INDEX.md: ifOperStatus up/total = 11/37
    assert sum(v is True for v in oper.values()) == 11
    assert fields["if.oper_up[1]"] is False
    assert fields["if.admin_up[1]"] is False
    assert fields["if.name[1]"] == "Gi0/0/0"
    assert fields["if.descr[5]"] == "GigabitEthernet0/0/4"
    assert fields["if.speed_bps[1]"] == 1_000_000_000  # no ifSpeed recorded: from ifHighSpeed
    assert fields["if.in_octets[1]"] == 0
    assert fields["device.uptime_seconds"] is None
    descr = fields["device.sys_descr"]
    assert isinstance(descr, str)
    assert descr.startswith('"Cisco IOS Software')
    assert "\n" in descr
    assert problems == []


def test_label_field(catalog: ProfileCatalog) -> None:
    generic = catalog.get("generic-host")
    assert generic.label_field("if.oper_up[3]") == "if.name[3]"
    assert generic.label_field("device.sys_name") is None


def test_match_rules(base_catalog: ProfileCatalog) -> None:
    catalog = base_catalog

    def names(sys_oid: str | None, present: set[str]) -> list[str]:
        return [p.name for p in catalog.match(sys_oid, present)]

    assert names(None, set()) == ["generic-host"]
    assert names("1.3.6.1.4.1.9.1.2102", set()) == ["generic-host"]
    assert names("1.3.6.1.4.1.9.1.2102", {"1.3.6.1.2.1.33.1.2.1.0"}) == ["generic-host", "ups-mib"]
    assert names(".1.3.6.1.2.1.33", set()) == ["generic-host", "ups-mib"]  # Generex names the MIB
    assert names("1.3.6.1.2.1.33.5", set()) == ["generic-host", "ups-mib"]
    assert names("1.3.6.1.2.1.330", set()) == ["generic-host"]  # prefixes end on an arc
    with pytest.raises(KeyError):
        catalog.get("no-such-profile")
    assert [p.name for p in catalog.explicit("ups-mib")] == ["generic-host", "ups-mib"]


def test_thresholds_for(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: with-thresholds\ndescription: d\nmatch: {generic: true}\n"
        "thresholds: {battery_minutes_warning: 45, on_battery: critical}\n"
    )
    catalog = load_profiles(tmp_path)
    thresholds = catalog.thresholds_for("with-thresholds")
    assert thresholds is not None
    assert thresholds.battery_minutes_warning == 45
    assert thresholds.on_battery == "critical"
    assert thresholds.battery_minutes_critical is None
    assert catalog.thresholds_for("nope") is None
    assert catalog.thresholds_for(None) is None
