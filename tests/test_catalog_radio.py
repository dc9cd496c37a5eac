"""The radio, router and sensor profiles read every corpus recording right, through snmpsim.

Expected values are written by hand from the recordings and tests/corpus/INDEX.md (raw value
and unit in the comment), never copied from the decoder's output. Each recording is polled with
profile ``auto`` through the real transport, so matching (sysObjectID prefixes, vendor subtrees
behind a generic net-snmp sysObjectID) is part of what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from tests.fixtures.snmpsim import SnmpsimEndpoint, snmp_target
from tests.test_snmp_probe import device
from uptimewatch.model.observation import FieldValue, Observation
from uptimewatch.probing.snmp import ProfileMatchCache, probe
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.profiles import ProfileCatalog, load_profiles

#: "not available" numbers devices send; none may come out as a value
SENTINELS = {65535, 2147483647, 4294967295, -2147483648, 2147483648}

EXPECTED: dict[str, dict[str, Any]] = {
    "airos-af": {
        "profile": "generic-host,radio-ubnt-airfiber",
        "device.uptime_seconds": 74749.0,  # sysUpTime 7474900 cs
        "device.sys_name": "<private>",
        "link.rx_level_dbm": -42,  # rxPower0.1
        "link.rx_level_chain1_dbm": -42,
        "link.tx_power_dbm": 58,
        "link.capacity_bps": 686400640,  # rxCapacity (bps)
        "link.distance_m": 11450,
        "link.modulation_code": 10,
        "link.oper_up": True,  # radioLinkState absent: derived from -42 dBm and capacity > 0
        "if.oper_up[4]": True,  # air0
        "if.oper_up[3]": False,  # eth0
    },
    "airos-af-ltu": {
        "profile": "generic-host,radio-ubnt-afltu",  # net-snmp sysObjectID: found by its subtree
        "device.uptime_seconds": 98200.47,  # sysUpTime 9820047
        "device.host_uptime_seconds": 99254.73,  # hrSystemUptime 9925473
        "link.rx_level_dbm": -47,  # afLTUStaRxPower0.<mac>
        "link.peer_rx_level_chain1_dbm[24.232.41.30.48.222]": -48,
        "link.peer_ideal_rx_level_dbm[24.232.41.30.48.222]": -51,
        "link.tx_capacity_bps": 63488000,  # afLTUStaTxCapacity 63488 kbps
        "link.tx_eirp_dbm": 28,
        "link.frequency_mhz": 5840,
        "link.stations": 1,
        "link.oper_up": True,  # a station row exists
    },
    "airos-af60_airos-af60": {
        "profile": "generic-host,radio-ubnt-af60",
        "device.uptime_seconds": None,  # sysUpTime not in the recording
        "link.rx_level_dbm": -55,  # af60StaRSSI
        "link.remote_rx_level_dbm": -56,
        "link.snr_db": 19,
        "link.modulation_mcs": 9,
        "link.stations": 1,
        "link.oper_up": True,
        "device.model": "AF60-LR",
    },
    "airos_airos8": {
        "profile": "generic-host,radio-ubnt-airmax",
        "device.uptime_seconds": 9644501.0,
        "link.rx_level_dbm": -70,  # ubntWlStatSignal
        "link.noise_floor_dbm": -91,
        "link.snr_db": 21,  # -70 - -91
        "link.ccq_percent": 33,
        "link.tx_power_dbm": 24,
        "link.tx_rate_bps": 39000000,
        "link.stations": 1,
        "link.oper_up": True,
    },
    "ptp670": {
        "profile": "generic-host,radio-cambium-ptp",
        "device.uptime_seconds": 17891443.0,  # 1789144300 cs
        "link.rx_level_dbm": -52.8,  # rawReceivePower -528 (0.1 dBm)
        "link.tx_power_dbm": 23.0,  # transmitPower 230 (0.1 dBm)
        "link.snr_db": None,  # vectorErrorLinked absent
        "link.signal_strength_ratio_db": -0.8,
        "link.capacity_bps": 322680000,  # aggregateDataRate 322680 kbps
        "link.state": None,  # wirelessLinkStatusLinked absent
        "link.oper_up": True,  # derived from the level
        "if.oper_up[1]": True,  # wireless interface
    },
    "pmp_450i": {
        "profile": "generic-host,radio-cambium-pmp",
        "device.uptime_seconds": 3808885.25,
        "link.stations": 34,  # regCount
        "link.gps_sync": "synchronized",
        "link.frequency_mhz": 3565.0,  # 3565000 kHz
        "link.crc_errors": 787540,
        "link.oper_up": True,
    },
    "ceraos": {
        "profile": "generic-host,radio-ceragon",
        "device.uptime_seconds": 16691.23,  # sysUpTime sent as INTEGER 1669123
        "device.supply_voltage_volts": 47,
        "link.carrier_rx_level_dbm[268452033]": -45,
        "link.carrier_rx_level_dbm[268451906]": -99,  # the dead carrier: a reading, kept
        "link.carrier_snr_db[268452033]": 38.28,  # MSE -3828 (0.01 dB)
        "link.carrier_snr_db[268451906]": None,  # MSE -99.00: no signal
        "link.carrier_xpi_db[268452033]": -98.99,  # Gauge32 4294957397 = -9899
        "link.carrier_tx_power_dbm[268452033]": 30,
        "link.carriers": 4,  # the four configured carriers
        "link.rx_level_dbm": -45,  # worst configured carrier; the unconfigured -99 one is left out
        "link.snr_db": 37.92,  # worst configured carrier: MSE -37.92 dB on 268452225
        "link.tx_power_dbm": 30,
        "link.oper_up": True,
        "if.oper_up[268452033]": True,
    },
    "sm-os_gc8607": {
        "profile": "generic-host,radio-siae",
        "device.uptime_seconds": 21671525.85,
        "device.model": "ALFOPlus2",  # SIAE-UNIT-MIB unitLabel.1
        "link.radio_rx_level_dbm[1]": -44,
        "link.radio_rx_level_dbm[2]": -45,
        "link.rx_level_dbm": -45,
        "link.snr_db": 42.6,  # radioNormalizedMse 426 (0.1 dB), the weaker radio
        "link.modulation": "4096qam",  # linkAcmRxModulation 12
        "link.capacity_bps": 710818000,  # linkTxETHCapacity 710818 kbps
        "link.tx_power_dbm": None,  # radioPtx not recorded
        "link.oper_up": True,
    },
    "sm-os_80hdx": {
        "profile": "generic-host,radio-siae",
        "device.sys_name": "SIAE target",  # hex-encoded in the recording
        "device.uptime_seconds": 1206677.61,
        "device.model": "ALFO80HDx",  # unitLabel.1
        "link.rx_level_dbm": -90,  # radioPrx
        "link.tx_power_dbm": None,  # radioPtx -99: transmitter muted
        "link.snr_db": 0.0,
        "link.radio_rx_low_alarm[1]": True,  # major(5)
        "link.oper_up": False,  # radioDemodulatorFailAlarm major(5): the link is down
    },
    "saf-integra-x": {
        "profile": "generic-host,radio-saf",
        "device.uptime_seconds": 4320804.07,
        "device.host_uptime_seconds": 4320821.04,
        "link.rx_level_dbm": -32,
        "link.rx_level_b_dbm": -32,
        "link.tx_power_dbm": 26,
        "link.snr_db": 45.7,  # normalized MSE -457 (0.1 dB)
        "link.capacity_bps": 769076000,
        "device.supply_voltage_volts": 55.8,  # 55800 mV
        "link.oper_up": True,
    },
    "siklu": {
        "profile": "generic-host,radio-siklu",
        "device.uptime_seconds": 674105.0,
        "link.rx_level_dbm": -38,  # rfAverageRssi
        "link.snr_db": 23,  # rfAverageCinr
        "link.tx_power_dbm": 5,
        "link.frequency_mhz": 72375,
        "device.supply_voltage_volts": 46,
        "link.oper_up": True,  # "Eth 0", ifType radioMAC(188), is up
    },
    "aviat-wtm": {
        "profile": "generic-host,sensor-entity,radio-aviat",
        "device.uptime_seconds": 4525104.68,
        "link.carrier_rx_level_dbm[59]": -36.7,  # -367 (0.1 dBm)
        "link.carrier_rx_level_dbm[60]": -37.0,
        "link.rx_level_dbm": -37.0,
        "link.snr_db": 45.0,  # CINR 450 (0.1 dB)
        "link.tx_power_dbm": 22.5,  # the stronger of 224 and 225 (0.1 dBm)
        "link.modulation_code": 14,
        "link.oper_up": True,  # Radio1, ifType radioMAC(188), is up
        "sensor.type[3]": "volts_dc",
        "sensor.value[3]": 47.058,  # 47058, units, precision 3
        "device.temperature_celsius": 52.0,  # 52000 on sensor 7
    },
    "ericsson-ml": {
        "profile": "generic-host,radio-ericsson-minilink",
        "device.uptime_seconds": 597110.78,
        "link.rx_level_dbm": -40.5,  # "-40.5" (STRING)
        "link.snr_db": 36.7,  # CINR "36.7"
        "link.tx_power_dbm": 16.0,
        "link.capacity_bps": 2000000000,  # 2000000 kbps
        "link.modulation_code": 16,
        "link.tx_frequency_mhz": 86000.0,
        "link.oper_up": True,
        "if.oper_up[10100]": None,  # ifOperStatus 0: outside the enum
    },
    "routeros_wifi": {
        "profile": "generic-host,radio-mikrotik-60g,router-mikrotik",
        "device.uptime_seconds": 1383431.0,
        "device.host_uptime_seconds": 1383431.0,
        "link.oper_up": True,  # mtxrWl60GConnected 1
        "link.rx_level_dbm": -54,
        "link.signal_percent": 80,
        "link.modulation_mcs": 8,
        "link.capacity_bps": 2310000000,  # 2310 Mbps
        "link.frequency_mhz": 58320,
        "link.peer": "MikroTik-802fc1",
    },
    "routeros": {
        "profile": "generic-host,radio-mikrotik-60g,router-mikrotik",
        "device.uptime_seconds": 20204.0,
        "device.supply_voltage_volts": 15.4,  # mtxrHlVoltage 154 (0.1 V)
        "if.optical_rx_dbm[25]": -5.673,  # mtxrOpticalRxPower -5673 (0.001 dBm)
        "wlan.client_signal_dbm[0.39.16.50.237.96.9]": -63,
        "wlan.clients": 11,
        "wlan.weakest_client_dbm": -91,
        "link.rx_level_dbm": -55,  # its 60 GHz interface
        "if.oper_up[1]": True,
    },
    "iosxe_asr920": {
        "profile": "generic-host,sensor-entity,router-cisco-iosxe",
        "device.uptime_seconds": None,  # sysUpTime absent
        "if.speed_bps[1]": 1000000000,  # ifHighSpeed 1000 Mbit/s
        "if.oper_up[1]": False,
        "link.oper_up": None,  # no LTE modem
        "device.temperature_celsius": None,  # no ENTITY-SENSOR rows
    },
    "rutos-rutx_rut955": {
        "profile": "generic-host,router-teltonika",  # net-snmp sysObjectID: found by its subtree
        "device.uptime_seconds": 1415.24,  # the agent's
        "device.host_uptime_seconds": 19623.08,  # the router's: snmpd restarted, no reboot
        "link.rssi_dbm": -84,
        "link.sinr_db": 12,
        "link.rsrp_dbm": -112,
        "link.rsrq_db": -9,
        "link.state": "Connected",
        "link.network_type": "LTE",
        "link.oper_up": True,
    },
    "iosxe_ir1101": {
        "profile": "generic-host,sensor-entity,router-cisco-iosxe",
        "device.uptime_seconds": 6674925.32,
        "sensor.type[4128]": "celsius",
        "sensor.value[4128]": 34.574,  # 34574, units, precision 3
        "sensor.type[4129]": "volts_dc",
        "sensor.value[4129]": 3.2744,  # 32744, milli, precision 1
        "sensor.value[4132]": -7.7,  # -77, units, precision 1 (SFP Rx, dBm)
        "sensor.oper_ok[4128]": True,
        "device.temperature_celsius": 41.0,  # sensor 4001: 41 C
        "link.modem_state": "online",  # c3gModemStatus 3
        "link.oper_up": True,
    },
}

#: the problems a recording rightly raises (everything else must poll clean)
EXPECTED_PROBLEMS: dict[str, list[str]] = {
    # an unconfigured carrier reporting an MSE no radio reaches: the plausibility check says so
    "ceraos": ["link.carrier_snr_db[268451905]: raw value -6734 gives 67.34 dB, outside the plausible range"],
    # the recording is unsorted, so the simulated agent answers GETNEXT out of order once
    "aviat-wtm": ["walk of 1.3.6.1.4.1.2509.9.3.2.1.1.14 stopped: OID did not increase"],
}


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


async def poll(catalog: ProfileCatalog, endpoint: SnmpsimEndpoint, stem: str) -> Observation:
    transport = create_transport()
    try:
        dev = replace(device(), snmp=snmp_target(endpoint, stem))
        return await probe(dev, catalog, transport, ProfileMatchCache())
    finally:
        await transport.close()


def check_no_sentinels(fields: Mapping[str, FieldValue]) -> None:
    for name, value in fields.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert value not in SENTINELS, f"{name} holds the sentinel {value}"
        # microwave receive levels (LTE RSRP has its own scale and name)
        if name.startswith("link.") and "rx_level" in name and value is not None:
            assert isinstance(value, int | float)
            assert -100 <= value <= 0, f"{name} = {value}: not a receive level in dBm"
        if name.startswith("link.") and name.endswith("snr_db") and value is not None:
            assert isinstance(value, int | float)
            assert 0 <= value <= 60, f"{name} = {value}: not an SNR in dB"


@pytest.mark.parametrize("stem", sorted(EXPECTED))
async def test_corpus_recording(catalog: ProfileCatalog, snmpsim: SnmpsimEndpoint, stem: str) -> None:
    obs = await poll(catalog, snmpsim, stem)
    assert obs.ok, obs.error
    expected = dict(EXPECTED[stem])
    assert obs.profile == expected.pop("profile")
    got = {name: obs.fields.get(name, "<missing>") for name in expected}
    assert got == expected
    check_no_sentinels(obs.fields)
    wanted = EXPECTED_PROBLEMS.get(stem, [])
    assert len(obs.problems) == len(wanted), obs.problems
    for problem, start in zip(sorted(obs.problems), sorted(wanted), strict=True):
        assert problem.startswith(start)


def probe_json(endpoint: SnmpsimEndpoint, stem: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "probe", endpoint.address, "-c", stem, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.mark.parametrize("stem", ["ceraos", "rutos-rutx_rut955", "sm-os_80hdx"])
def test_probe_cli_json(snmpsim: SnmpsimEndpoint, stem: str) -> None:
    doc = probe_json(snmpsim, stem)
    expected = dict(EXPECTED[stem])
    assert doc["profile"] == expected.pop("profile")
    assert {name: doc["fields"].get(name, "<missing>") for name in expected} == expected
    assert stem not in json.dumps(doc["fields"])  # the community (= recording) never shows


# --- quirk classes, on small recordings of our own ------------------------------------------------

_SYS = "1.3.6.1.2.1.1"


def snmprec(*records: tuple[str, int | str, Any]) -> str:
    """snmpsim text, sorted by OID as an agent walks it."""
    lines = sorted(records, key=lambda r: tuple(int(x) for x in r[0].split(".")))
    return "".join(f"{oid}|{tag}|{value}\n" for oid, tag, value in lines)


def system(sys_object_id: str, uptime_cs: int = 360000) -> list[tuple[str, int | str, Any]]:
    return [
        (f"{_SYS}.1.0", 4, "quirk test device"),
        (f"{_SYS}.2.0", 6, sys_object_id),
        (f"{_SYS}.3.0", 67, uptime_cs),
        (f"{_SYS}.5.0", 4, "quirk"),
    ]


AF = "1.3.6.1.4.1.41112.1.3"
AF_SYS = "1.3.6.1.4.1.10002.1"
RECORDINGS = {
    # a radio giving 0.1 dBm (Cambium: declared so) and one giving 0.1 dBm where dBm is due (Siklu)
    "tenths-cambium": snmprec(
        *system("1.3.6.1.4.1.17713.11"),
        ("1.3.6.1.4.1.17713.11.12.12.0", 2, -615),
        ("1.3.6.1.4.1.17713.11.12.3.0", 2, -312),
        ("1.3.6.1.4.1.17713.11.20.3.0", 2, 100000),
    ),
    "tenths-bug": snmprec(
        *system("1.3.6.1.4.1.31926"),
        ("1.3.6.1.4.1.31926.2.1.1.19.1", 2, -380),
        ("1.3.6.1.4.1.31926.2.1.1.18.1", 2, 230),
    ),
    # negative levels and MSE sent as Gauge32 two's complement
    "gauge-negative": snmprec(
        *system("1.3.6.1.4.1.2281.1.20.2.2"),
        ("1.3.6.1.4.1.2281.10.5.1.1.2.7", 66, 2**32 - 51),
        ("1.3.6.1.4.1.2281.10.7.1.1.2.7", 66, 2**32 - 3450),
        ("1.3.6.1.4.1.2281.10.7.2.1.9.7", 2, 1),
    ),
    # airFiber: no link state object (derived), a state object saying down, nothing at all
    "af-nostate": snmprec(
        *system(AF_SYS),
        (f"{AF}.1.1.9.1", 2, 20),
        (f"{AF}.2.1.11.1", 2, -58),
        (f"{AF}.2.1.5.1", 2, 300000000),
    ),
    "af-state-down": snmprec(
        *system(AF_SYS),
        (f"{AF}.1.1.9.1", 2, 20),
        (f"{AF}.2.1.11.1", 2, -58),
        (f"{AF}.2.1.5.1", 2, 300000000),
        (f"{AF}.2.1.26.1", 2, 0),
    ),
    "af-nolevel": snmprec(*system(AF_SYS), (f"{AF}.1.1.9.1", 2, 20)),
    # generic net-snmp identity: the vendor subtree decides
    "netsnmp-ltu": snmprec(
        *system("1.3.6.1.4.1.8072.3.2.10"),
        ("1.3.6.1.4.1.41112.1.10.1.2.2.0", 2, 5500),
        ("1.3.6.1.4.1.41112.1.10.1.2.6.0", 2, 30),
        ("1.3.6.1.4.1.41112.1.10.1.4.1.5.24.232.41.30.48.222", 2, -60),
    ),
    "netsnmp-ltu-nopeer": snmprec(
        *system("1.3.6.1.4.1.8072.3.2.10"),
        ("1.3.6.1.4.1.41112.1.10.1.2.2.0", 2, 5500),
    ),
    "netsnmp-plain": snmprec(*system("1.3.6.1.4.1.8072.3.2.10")),
    # a device no profile knows, speaking IF-MIB
    "unknown-ifmib": snmprec(
        *system("1.3.6.1.4.1.99999.42.7", uptime_cs=123456),
        ("1.3.6.1.2.1.2.2.1.2.1", 4, "ge-0/0/0"),
        ("1.3.6.1.2.1.2.2.1.2.2", 4, "radio0"),
        ("1.3.6.1.2.1.2.2.1.5.1", 66, 1000000000),
        ("1.3.6.1.2.1.2.2.1.5.2", 66, 4294967295),
        ("1.3.6.1.2.1.2.2.1.7.1", 2, 1),
        ("1.3.6.1.2.1.2.2.1.7.2", 2, 1),
        ("1.3.6.1.2.1.2.2.1.8.1", 2, 1),
        ("1.3.6.1.2.1.2.2.1.8.2", 2, 7),
        ("1.3.6.1.2.1.2.2.1.14.1", 65, 12),
        ("1.3.6.1.2.1.31.1.1.1.1.1", 4, "ge0"),
        ("1.3.6.1.2.1.31.1.1.1.1.2", 4, "rf0"),
        ("1.3.6.1.2.1.31.1.1.1.6.1", 70, 98765432109),
        ("1.3.6.1.2.1.31.1.1.1.15.2", 66, 10000),
    ),
}


@pytest.fixture(scope="module")
def quirks(snmpsim_factory: Any) -> SnmpsimEndpoint:
    endpoint: SnmpsimEndpoint = snmpsim_factory(RECORDINGS, v3=False)
    return endpoint


async def test_tenths_of_dbm(catalog: ProfileCatalog, quirks: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, quirks, "tenths-cambium")
    assert obs.profile == "generic-host,radio-cambium-ptp"
    assert obs.fields["link.rx_level_dbm"] == -61.5
    assert obs.fields["link.snr_db"] == 31.2  # vector error -31.2 dB
    assert obs.fields["link.oper_up"] is True
    assert obs.problems == ()


async def test_tenths_where_dbm_is_due_is_caught(catalog: ProfileCatalog, quirks: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, quirks, "tenths-bug")
    assert obs.fields["link.rx_level_dbm"] is None
    assert obs.fields["link.snr_db"] is None
    assert obs.fields["link.oper_up"] is None  # nothing believable to judge the link by
    text = "\n".join(obs.problems)
    assert "link.rx_level_dbm: raw value -380 gives -380 dBm, outside the plausible range -100..0" in text
    assert "0.1 dBm" in text
    assert "link.snr_db: raw value 230" in text


async def test_gauge32_wrapped_negative(catalog: ProfileCatalog, quirks: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, quirks, "gauge-negative")
    assert obs.profile == "generic-host,radio-ceragon"
    assert obs.fields["link.carrier_rx_level_dbm[7]"] == -51
    assert obs.fields["link.rx_level_dbm"] == -51
    assert obs.fields["link.snr_db"] == 34.5  # MSE -34.50 dB
    assert obs.problems == ()


@pytest.mark.parametrize(
    ("stem", "oper_up"),
    [("af-nostate", True), ("af-state-down", False), ("af-nolevel", None)],
)
async def test_link_state_derived_when_absent(
    catalog: ProfileCatalog, quirks: SnmpsimEndpoint, stem: str, oper_up: bool | None
) -> None:
    obs = await poll(catalog, quirks, stem)
    assert obs.profile == "generic-host,radio-ubnt-airfiber"  # sysObjectID is any airOS device
    assert obs.fields["link.oper_up"] is oper_up


@pytest.mark.parametrize(
    ("stem", "profile", "oper_up"),
    [
        ("netsnmp-ltu", "generic-host,radio-ubnt-afltu", True),
        ("netsnmp-ltu-nopeer", "generic-host,radio-ubnt-afltu", False),
        ("netsnmp-plain", "generic-host", "<missing>"),
    ],
)
async def test_generic_sys_object_id_and_vendor_subtree(
    catalog: ProfileCatalog, quirks: SnmpsimEndpoint, stem: str, profile: str, oper_up: object
) -> None:
    obs = await poll(catalog, quirks, stem)
    assert obs.ok, obs.error
    assert obs.profile == profile
    # a station row is an associated peer; none means the link is down
    assert obs.fields.get("link.oper_up", "<missing>") == oper_up


async def test_unknown_device_speaking_if_mib(catalog: ProfileCatalog, quirks: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, quirks, "unknown-ifmib")
    assert obs.ok, obs.error
    assert obs.profile == "generic-host"
    f = obs.fields
    assert f["device.sys_object_id"] == "1.3.6.1.4.1.99999.42.7"
    assert f["device.uptime_seconds"] == 1234.56
    assert (f["if.name[1]"], f["if.name[2]"]) == ("ge0", "rf0")
    assert (f["if.oper_up[1]"], f["if.oper_up[2]"]) == (True, False)
    assert f["if.oper_status[2]"] == "lower_layer_down"
    assert f["if.speed_bps[1]"] == 1000000000
    assert f["if.speed_bps[2]"] == 10000000000  # ifSpeed saturated: ifHighSpeed 10000 Mbit/s
    assert f["if.in_octets[1]"] == 98765432109
    assert f["if.in_errors[1]"] == 12
    assert obs.problems == ()
