"""Every normalized field a probe, profile or telemetry message may give, with its type, unit and
meaning: the one list shipped profiles are checked against, the checks and exporters import
names from, and ``docs/catalog.md`` lists (``python -m uptimewatch.model.fields`` writes it).

A name is ``<area>.<quantity>_<unit suffix>``; the suffix is the unit (``_volts`` V, ``_dbm`` dBm).
A field that exists once per row of a table (an interface, a carrier, an input phase) is declared
``per_row`` and appears as ``name[index]``; a telemetry message may give such a field without an
index when the site has only one. Names starting with ``_`` are a profile's private intermediate
values: they never leave the profile and are not listed here.

A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

FieldType = Literal["number", "bool", "text"]

#: the unit a name's suffix stands for (the longest suffix wins)
UNIT_SUFFIXES: Final[Mapping[str, str]] = {
    "_volts": "V",
    "_amps": "A",
    "_percent": "%",
    "_celsius": "°C",
    "_dbm": "dBm",
    "_db": "dB",
    "_bps": "bit/s",
    "_mhz": "MHz",
    "_hz": "Hz",
    "_seconds": "s",
    "_minutes_remaining": "min",
    "_m": "m",
    "_ratio": "0..1",
    "_octets": "bytes",
    "_errors": "count",
}

_INDEX = re.compile(r"(\[[^\[\]]*\]|\{index\})$")


@dataclass(frozen=True, slots=True)
class FieldInfo:
    name: str
    type: FieldType
    unit: str  # "" for a count, a word or a flag
    meaning: str
    per_row: bool = False


def _unit(name: str) -> str:
    suffixes = sorted((s for s in UNIT_SUFFIXES if name.endswith(s)), key=len, reverse=True)
    return UNIT_SUFFIXES[suffixes[0]] if suffixes else ""


def _fields(rows: Iterable[tuple[str, FieldType, str]]) -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for spelled, kind, meaning in rows:
        per_row = spelled.endswith("[]")
        name = spelled.removesuffix("[]")
        if name in out:
            raise ValueError(f"field {name} is listed twice")
        out[name] = FieldInfo(name, kind, _unit(name) if kind == "number" else "", meaning, per_row)
    return out


N: Final = "number"
B: Final = "bool"
T: Final = "text"

# fmt: off
FIELDS: Final[Mapping[str, FieldInfo]] = _fields([
    # -- what every device says about itself (SNMPv2-MIB, HOST-RESOURCES-MIB, ENTITY-SENSOR-MIB)
    ("device.sys_descr", T, "sysDescr: the agent's own description (model, firmware)"),
    ("device.sys_name", T, "sysName: the name the device gives itself"),
    ("device.sys_object_id", T, "sysObjectID: the vendor's model identifier (an OID)"),
    ("device.model", T, "model name, where the MIB has one"),
    ("device.uptime_seconds", N, "time since the SNMP agent restarted (sysUpTime)"),
    ("device.host_uptime_seconds", N, "time since the host itself booted (hrSystemUptime)"),
    ("device.supply_voltage_volts", N, "the device's own DC supply voltage"),
    ("device.temperature_celsius", N, "the device's hottest internal temperature sensor"),
    # -- interfaces (IF-MIB)
    ("if.descr[]", T, "ifDescr of the interface"),
    ("if.name[]", T, "ifName of the interface"),
    ("if.alias[]", T, "ifAlias: the operator's label of the interface"),
    ("if.admin_up[]", B, "the interface is administratively up"),
    ("if.oper_up[]", B, "the interface is operationally up"),
    ("if.oper_status[]", T, "ifOperStatus as a word (up, down, testing, dormant, ...)"),
    ("if.speed_bps[]", N, "the interface's nominal speed (ifHighSpeed, else ifSpeed)"),
    ("if.in_octets[]", N, "bytes received, a counter (64-bit where the agent has it)"),
    ("if.out_octets[]", N, "bytes sent, a counter (64-bit where the agent has it)"),
    ("if.in_errors[]", N, "inbound packets with errors, a counter"),
    ("if.out_errors[]", N, "outbound packets with errors, a counter"),
    ("if.optical_rx_dbm[]", N, "received optical power of the interface's SFP"),
    # -- sensors (ENTITY-SENSOR-MIB)
    ("sensor.type[]", T, "what the sensor measures (celsius, voltsDC, amperes, ...)"),
    ("sensor.value[]", N, "the sensor's reading in its type's unit, scaled"),
    ("sensor.oper_ok[]", B, "the sensor reports itself operational"),
    # -- a radio or cellular link: one summary whatever the MIB, per-carrier and per-peer rows
    ("link.oper_up", B, "the link carries traffic (the radio's link state, else derived)"),
    ("link.state", T, "the radio's own link state word"),
    ("link.rx_level_dbm", N, "received signal level (the weakest configured carrier or peer)"),
    ("link.rx_level_b_dbm", N, "received level of the second receiver"),
    ("link.rx_level_chain1_dbm", N, "received level of receive chain 1"),
    ("link.remote_rx_level_dbm", N, "received level at the far end"),
    ("link.snr_db", N, "signal to noise ratio (SNR, CINR, or from the MSE)"),
    ("link.sinr_db", N, "cellular signal to interference plus noise ratio"),
    ("link.rsrp_dbm", N, "LTE reference signal received power"),
    ("link.rsrq_db", N, "LTE reference signal received quality"),
    ("link.rssi_dbm", N, "received signal strength indicator"),
    ("link.noise_floor_dbm", N, "the receiver's noise floor"),
    ("link.signal_percent", N, "signal quality as the radio's percentage"),
    ("link.signal_strength_ratio_db", N, "the radio's vertical/horizontal signal strength ratio"),
    ("link.ccq_percent", N, "client connection quality (airMAX)"),
    ("link.tx_power_dbm", N, "transmit power"),
    ("link.tx_eirp_dbm", N, "transmit power as EIRP, antenna gain included"),
    ("link.capacity_bps", N, "the link's current receive capacity"),
    ("link.tx_capacity_bps", N, "the link's current transmit capacity"),
    ("link.rx_rate_bps", N, "receive data rate"),
    ("link.tx_rate_bps", N, "transmit data rate"),
    ("link.modulation", T, "modulation as a word (qpsk, 256qam, ...)"),
    ("link.modulation_code", N, "modulation as the radio's numeric code"),
    ("link.modulation_mcs", N, "modulation and coding scheme index"),
    ("link.frequency_mhz", N, "operating frequency"),
    ("link.tx_frequency_mhz", N, "transmit frequency"),
    ("link.rx_frequency_mhz", N, "receive frequency"),
    ("link.distance_m", N, "distance to the far end as the radio measures it"),
    ("link.stations", N, "connected stations or peers"),
    ("link.carriers", N, "configured carriers"),
    ("link.carriers_all_up", B, "every configured carrier carries traffic (one down is a degraded link)"),
    ("link.crc_errors", N, "frames received with CRC errors, a counter"),
    ("link.gps_sync", T, "GPS synchronisation state of the access point"),
    ("link.peer", T, "the far end's name or address"),
    ("link.network_type", T, "cellular network type (LTE, WCDMA, ...)"),
    ("link.operator", T, "the cellular operator the modem is registered with"),
    ("link.sim_state", T, "the SIM card's state"),
    ("link.modem_state", T, "the cellular modem's state, as a word"),
    ("link.modem_status[]", T, "per-modem status word"),
    ("link.carrier_oper_up[]", B, "the carrier is up"),
    ("link.carrier_rx_level_dbm[]", N, "the carrier's received level"),
    ("link.carrier_tx_power_dbm[]", N, "the carrier's transmit power"),
    ("link.carrier_snr_db[]", N, "the carrier's signal to noise ratio"),
    ("link.carrier_xpi_db[]", N, "the carrier's cross-polarisation interference"),
    ("link.carrier_capacity_bps[]", N, "the carrier's capacity"),
    ("link.carrier_modulation_code[]", N, "the carrier's modulation code"),
    ("link.carrier_tx_frequency_mhz[]", N, "the carrier's transmit frequency"),
    ("link.radio_oper_up[]", B, "the radio is up"),
    ("link.radio_rx_level_dbm[]", N, "the radio's received level"),
    ("link.radio_tx_power_dbm[]", N, "the radio's transmit power"),
    ("link.radio_snr_db[]", N, "the radio's signal to noise ratio"),
    ("link.radio_signal_percent[]", N, "the radio's signal quality percentage"),
    ("link.radio_rx_low_alarm[]", B, "the radio's low receive level alarm is raised"),
    ("link.radio_modulation[]", T, "the radio's modulation as a word"),
    ("link.radio_mcs[]", N, "the radio's modulation and coding scheme index"),
    ("link.radio_capacity_bps[]", N, "the radio's capacity"),
    ("link.radio_tx_capacity_bps[]", N, "the radio's transmit capacity"),
    ("link.radio_frequency_mhz[]", N, "the radio's frequency"),
    ("link.peer_name[]", T, "the peer's name"),
    ("link.peer_active[]", T, "whether and how the peer is active, as the radio says"),
    ("link.peer_rx_level_dbm[]", N, "received level from the peer"),
    ("link.peer_rx_level_chain1_dbm[]", N, "received level from the peer on chain 1"),
    ("link.peer_remote_rx_level_dbm[]", N, "the peer's received level of us"),
    ("link.peer_ideal_rx_level_dbm[]", N, "the level the peer should be received at"),
    ("link.peer_snr_db[]", N, "the peer's signal to noise ratio"),
    ("link.peer_rx_capacity_bps[]", N, "receive capacity from the peer"),
    ("link.peer_tx_capacity_bps[]", N, "transmit capacity to the peer"),
    ("link.peer_tx_mcs[]", N, "modulation and coding scheme towards the peer"),
    ("link.peer_tx_rate_code[]", N, "the radio's rate code towards the peer"),
    # -- Wi-Fi clients (MikroTik)
    ("wlan.clients", N, "associated Wi-Fi clients"),
    ("wlan.client_signal_dbm[]", N, "a client's signal level"),
    ("wlan.weakest_client_dbm", N, "the weakest associated client's signal level"),
    # -- the power plant: mains, rectifiers, batteries, generator
    ("power.on_battery", B, "the load runs on the batteries (mains lost, no generator)"),
    ("power.mains_ok", B, "mains (grid) power is present"),
    ("power.source", T, "what feeds the load: mains, battery, generator, bypass"),
    ("power.system_status", T, "the controller's overall status word"),
    ("power.system_voltage_volts", N, "the DC bus voltage"),
    ("power.load_current_amps", N, "current drawn by the load"),
    ("power.input_voltage_volts[]", N, "AC input voltage, per phase"),
    ("power.output_voltage_volts[]", N, "AC output voltage, per phase"),
    ("power.output_load_percent[]", N, "output load as a share of rated power, per phase"),
    ("power.battery_status", T, "the battery's state word (normal, low, depleted, ...)"),
    ("power.battery_mode", T, "the battery's mode (float, boost, discharge, test)"),
    ("power.battery_minutes_remaining", N, "run time left on the batteries at the present load"),
    ("power.battery_charge_percent", N, "battery state of charge"),
    ("power.battery_string_charge_percent[]", N, "state of charge of one battery string"),
    ("power.battery_voltage_volts", N, "battery voltage"),
    ("power.battery_current_amps", N, "battery current (negative while discharging)"),
    ("power.battery_temperature_celsius", N, "battery temperature"),
    ("power.battery_fault", B, "the batteries are faulty"),
    ("power.battery_replace", B, "the batteries need replacing"),
    ("power.battery_breaker_open", B, "the battery breaker is open"),
    ("power.rectifier_current_amps", N, "current the rectifiers deliver"),
    ("power.rectifier_utilization_percent", N, "rectifier load as a share of their capacity"),
    ("power.rectifier_name[]", T, "a rectifier module's name"),
    ("power.rectifiers_installed", N, "rectifier modules installed"),
    ("power.rectifiers_active", N, "rectifier modules delivering current"),
    ("power.rectifiers_total", N, "rectifier modules known to the controller"),
    ("power.rectifiers_ok", N, "rectifier modules without a fault"),
    ("power.controller_communication_ok", B, "the controller talks to its modules"),
    ("power.alarms_active", N, "alarms the controller has raised"),
    ("power.alarm[]", T, "one raised alarm, by its well-known name"),
    ("power.measurement_name[]", T, "a controller measurement's name"),
    ("power.contact_name[]", T, "a dry contact input's name"),
    ("power.contact_closed[]", B, "the dry contact is closed"),
    ("power.ambient_temperature_celsius", N, "temperature of the shelter"),
    ("power.ambient_humidity_percent", N, "relative humidity of the shelter"),
    ("power.generator_running", B, "the generator runs"),
    ("power.generator_mode", T, "the generator controller's mode (auto, manual, test, blocked)"),
    ("power.generator_alarm", B, "the generator has an alarm"),
    ("power.transfer_alarm", B, "the transfer switch has an alarm"),
    ("power.generator_voltage_volts", N, "the generator's output voltage"),
    ("power.generator_frequency_hz", N, "the generator's output frequency"),
    ("power.mains_frequency_hz", N, "the mains frequency"),
    ("power.engine_battery_voltage_volts", N, "the generator's starter battery voltage"),
    ("power.fuel_percent", N, "fuel left in the generator's tank"),
    # -- ICMP echo, measured by the daemon itself
    ("icmp.sent", N, "echo requests sent in the poll"),
    ("icmp.received", N, "echo replies received in the poll"),
    ("icmp.loss_ratio", N, "share of echo requests that got no reply"),
    ("icmp.rtt_min_seconds", N, "shortest round trip of the poll"),
    ("icmp.rtt_avg_seconds", N, "mean round trip of the poll"),
    ("icmp.rtt_max_seconds", N, "longest round trip of the poll"),
    ("icmp.jitter_seconds", N, "mean difference between consecutive round trips"),
])
# fmt: on

# the names the checks, the power model and the exporters read (import these, never spell them)
POWER_ON_BATTERY: Final = "power.on_battery"
POWER_MAINS_OK: Final = "power.mains_ok"
POWER_SOURCE: Final = "power.source"
POWER_BATTERY_MINUTES: Final = "power.battery_minutes_remaining"
POWER_BATTERY_CHARGE: Final = "power.battery_charge_percent"
POWER_BATTERY_VOLTAGE: Final = "power.battery_voltage_volts"
POWER_GENERATOR_RUNNING: Final = "power.generator_running"
LINK_OPER_UP: Final = "link.oper_up"
LINK_RX_LEVEL: Final = "link.rx_level_dbm"
LINK_SNR: Final = "link.snr_db"
POWER_ALARMS_ACTIVE: Final = "power.alarms_active"
ICMP_SENT: Final = "icmp.sent"
ICMP_RECEIVED: Final = "icmp.received"
ICMP_LOSS_RATIO: Final = "icmp.loss_ratio"
ICMP_RTT_MIN: Final = "icmp.rtt_min_seconds"
ICMP_RTT_AVG: Final = "icmp.rtt_avg_seconds"
ICMP_RTT_MAX: Final = "icmp.rtt_max_seconds"
ICMP_JITTER: Final = "icmp.jitter_seconds"


def base_name(name: str) -> str:
    """``name`` without its row index (``if.oper_up[3]`` and ``if.oper_up[{index}]`` give ``if.oper_up``)."""
    return _INDEX.sub("", name)


def lookup(name: str) -> FieldInfo | None:
    """The field ``name`` is (a row index allowed where the field is per row), or None."""
    base = base_name(name)
    info = FIELDS.get(base)
    if info is None or (base != name and not info.per_row):
        return None
    return info


def is_private(name: str) -> bool:
    return name.startswith("_")


def unknown_message(name: str) -> str:
    """Why ``name`` is refused, with the nearest registered names as a hint."""
    import difflib

    near = difflib.get_close_matches(base_name(name), list(FIELDS), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return (
        f"{name!r} is not a registered field{hint}; fields are listed in docs/catalog.md and declared"
        " in src/uptimewatch/model/fields.py (or start the name with _ for a private value)"
    )


def markdown() -> str:
    """The field list of ``docs/catalog.md``, between its markers."""
    lines = [
        "| field | type | unit | meaning |",
        "|---|---|---|---|",
    ]
    for info in FIELDS.values():
        shown = f"{info.name}[N]" if info.per_row else info.name
        lines.append(f"| `{shown}` | {info.type} | {info.unit} | {info.meaning} |")
    return "\n".join(lines) + "\n"


BEGIN: Final = (
    "<!-- fields: generated from src/uptimewatch/model/fields.py; python -m uptimewatch.model.fields -->"
)
END: Final = "<!-- end of fields -->"


def with_fields(document: str) -> str:
    """``document`` (docs/catalog.md) with the text between the markers replaced by :func:`markdown`."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n\n" + markdown() + "\n" + document[end:]


if __name__ == "__main__":  # python -m uptimewatch.model.fields [docs/catalog.md]
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/catalog.md")
    path.write_text(with_fields(path.read_text(encoding="utf-8")), encoding="utf-8")
