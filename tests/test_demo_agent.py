"""The demo's simulated SNMP agents, queried by real clients: net-snmp's tools and our transport."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.fixtures.ports import free_udp_port
from uptimewatch.config.models import Config
from uptimewatch.config.resolve import SnmpTarget, resolve_all
from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import BOOT_DELAY_S, ManualClock, Simulator
from uptimewatch.demo.province import DemoProvince, generate_province

pytestmark = pytest.mark.skipif(
    shutil.which("snmpget") is None, reason="net-snmp tools (Debian snmp) missing"
)

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
UPS = "1.3.6.1.2.1.33.1"
BATTERY_STATUS = f"{UPS}.2.1.0"
SECONDS_ON_BATTERY = f"{UPS}.2.2.0"
MINUTES_REMAINING = f"{UPS}.2.3.0"
CHARGE = f"{UPS}.2.4.0"
BATTERY_VOLTAGE = f"{UPS}.2.5.0"
OUTPUT_SOURCE = f"{UPS}.4.1.0"
ALARMS_PRESENT = f"{UPS}.6.1.0"
ALARM_ON_BATTERY = f"{UPS}.6.2.1.2.1"
SP2_MAINS = "1.3.6.1.4.1.12148.10.3.1.0"
SP2_BATTERY_VOLTAGE = "1.3.6.1.4.1.12148.10.10.5.5.0"
RSSI = "1.3.6.1.4.1.31926.2.1.1.19.1"
CINR = "1.3.6.1.4.1.31926.2.1.1.18.1"
ENGINE_BOOTS = "1.3.6.1.6.3.10.2.1.2.0"


def free_port() -> int:
    return free_udp_port("127.16.1.1")


@dataclass
class Demo:
    province: DemoProvince
    sim: Simulator
    clock: ManualClock
    agent: SnmpAgent
    port: int

    def device(self, site: str, device: str) -> tuple[str, str]:
        """(address:port, community) of a device; ``site`` may be hub#0, leaf#1..."""
        site_id = self.province.select(site)
        spec = next(d for d in self.province.devices if d.site_id == site_id and d.device_id == device)
        return f"{spec.address}:{self.port}", spec.community


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    province = generate_province(14, districts=1, snmp_port=0)
    clock = ManualClock(1000.0)
    sim = Simulator(province.sites, province.devices, load_models(), clock)
    port = free_port()
    async with SnmpAgent(sim, port) as agent:
        yield Demo(province, sim, clock, agent, port)


async def snmp(tool: str, *args: str, timeout: float = 0.4) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        tool,
        "-On",
        "-Oqt",
        "-t",
        str(timeout),
        "-r",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def get(demo: Demo, site: str, device: str, *oids: str) -> dict[str, str]:
    """``snmpget -v2c`` values by OID; fails the test on a timeout."""
    address, community = demo.device(site, device)
    rc, out = await snmp("snmpget", "-v2c", "-c", community, address, *oids)
    assert rc == 0, out
    values = {}
    for line in out.splitlines():
        oid, _, value = line.partition(" ")
        values[oid.removeprefix(".")] = value.strip().strip('"')
    return values


async def silent(demo: Demo, site: str, device: str, community: str | None = None) -> bool:
    address, right = demo.device(site, device)
    rc, out = await snmp("snmpget", "-v2c", "-c", community or right, address, SYS_UPTIME)
    return rc != 0 and "Timeout" in out


async def test_snmpget_reads_identity_and_uptime(demo: Demo) -> None:
    values = await get(demo, "hub#0", "bts", SYS_OBJECT_ID, SYS_UPTIME, "1.3.6.1.2.1.1.5.0")
    assert values[SYS_OBJECT_ID] == ".1.3.6.1.4.1.9.1.2102"
    assert int(values[SYS_UPTIME]) > 2 * 86400 * 100  # up for days before the demo started
    assert values["1.3.6.1.2.1.1.5.0"] == f"{demo.province.select('hub#0')}-bts"


async def test_snmpwalk_serves_whole_power_plant_in_order(demo: Demo) -> None:
    address, community = demo.device("hub#0", "power")
    rc, out = await snmp("snmpwalk", "-v2c", "-c", community, address, "1.3.6.1")
    assert rc == 0, out
    assert "OID not increasing" not in out
    assert "No more variables left in this MIB View" in out.splitlines()[-1]  # endOfMibView
    oids = [line.split(" ", 1)[0].removeprefix(".") for line in out.splitlines()[:-1]]
    for oid in (BATTERY_STATUS, CHARGE, OUTPUT_SOURCE, ALARMS_PRESENT, SP2_MAINS, SP2_BATTERY_VOLTAGE):
        assert oid in oids
    keys = [tuple(map(int, o.split("."))) for o in oids]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    # mains on: no alarm rows
    assert not any(o.startswith(f"{UPS}.6.2.") for o in oids)


async def test_bulkwalk_of_if_table_and_v1_rules(demo: Demo) -> None:
    address, community = demo.device("leaf#0", "bts")
    rc, out = await snmp("snmpbulkwalk", "-v2c", "-Cr7", "-c", community, address, "1.3.6.1.2.1.31.1.1.1.6")
    assert rc == 0, out
    lines = out.splitlines()
    assert len(lines) == 5  # ifHCInOctets of five interfaces
    assert all(line.startswith(".1.3.6.1.2.1.31.1.1.1.6.") for line in lines)
    # SNMPv1 has no Counter64: GET says noSuchName, a walk skips those columns
    rc, out = await snmp("snmpget", "-v1", "-c", community, address, "1.3.6.1.2.1.31.1.1.1.6.1")
    assert rc != 0
    assert "noSuchName" in out
    rc, out = await snmp("snmpwalk", "-v1", "-c", community, address, "1.3.6.1.2.1.31.1.1.1")
    assert rc == 0, out
    assert ".1.3.6.1.2.1.31.1.1.1.1.1 " in out
    assert ".1.3.6.1.2.1.31.1.1.1.6." not in out


async def test_wrong_community_gets_no_reply(demo: Demo) -> None:
    before = demo.agent.stats.dropped
    assert await silent(demo, "hub#0", "bts", community="public")
    assert demo.agent.stats.dropped == before + 1
    assert not await silent(demo, "hub#0", "bts")


async def test_dead_device_is_silent_until_revived(demo: Demo) -> None:
    site = demo.province.select("leaf#1")
    demo.sim.set_dead(f"{site}/power", True)
    assert await silent(demo, "leaf#1", "power")
    assert not await silent(demo, "leaf#1", "bts")  # only that device died
    demo.sim.set_dead(f"{site}/power", False)
    assert not await silent(demo, "leaf#1", "power")


async def test_counters_and_uptime_advance_with_the_clock(demo: Demo) -> None:
    octets = "1.3.6.1.2.1.31.1.1.1.6.1"
    first = await get(demo, "leaf#0", "bts", SYS_UPTIME, octets)
    demo.clock.advance(60)
    second = await get(demo, "leaf#0", "bts", SYS_UPTIME, octets)
    assert int(second[SYS_UPTIME]) - int(first[SYS_UPTIME]) == 6000
    assert int(second[octets]) > int(first[octets])


async def test_battery_drains_on_mains_failure_and_recharges(demo: Demo) -> None:
    hub = demo.province.select("hub#0")
    normal = await get(demo, "hub#0", "power", CHARGE, OUTPUT_SOURCE, ALARMS_PRESENT, SECONDS_ON_BATTERY)
    assert normal == {CHARGE: "100", OUTPUT_SOURCE: "3", ALARMS_PRESENT: "0", SECONDS_ON_BATTERY: "0"}

    demo.sim.set_mains(hub, False)
    demo.clock.advance(30 * 60)  # half of the hub's one-hour battery
    drained = await get(
        demo, "hub#0", "power", CHARGE, MINUTES_REMAINING, SECONDS_ON_BATTERY, OUTPUT_SOURCE,
        ALARMS_PRESENT, BATTERY_VOLTAGE, SP2_MAINS, ALARM_ON_BATTERY,
    )  # fmt: skip
    assert drained[CHARGE] == "50"
    assert drained[MINUTES_REMAINING] == "30"
    assert drained[SECONDS_ON_BATTERY] == "1800"
    assert drained[OUTPUT_SOURCE] == "5"  # battery
    assert drained[ALARMS_PRESENT] == "2"  # on battery, input bad
    assert drained[ALARM_ON_BATTERY] == ".1.3.6.1.2.1.33.1.6.3.2"  # upsAlarmOnBattery
    assert 480 <= int(drained[BATTERY_VOLTAGE]) <= 500  # 0.1 V: about 49 V at half charge
    assert drained[SP2_MAINS] == "3"  # majorAlarm

    demo.clock.advance(20 * 60)
    low = await get(demo, "hub#0", "power", CHARGE, BATTERY_STATUS, ALARMS_PRESENT)
    assert low == {CHARGE: "17", BATTERY_STATUS: "3", ALARMS_PRESENT: "3"}  # batteryLow

    demo.sim.set_generator(hub, True)
    demo.clock.advance(60 * 60)
    charging = await get(demo, "hub#0", "power", CHARGE, OUTPUT_SOURCE, SECONDS_ON_BATTERY, ALARMS_PRESENT)
    assert int(charging[CHARGE]) > 17
    assert charging[OUTPUT_SOURCE] == "3"
    assert charging[SECONDS_ON_BATTERY] == "0"
    assert charging[ALARMS_PRESENT] == "0"


async def test_exhausted_battery_takes_the_site_and_its_group_down(demo: Demo) -> None:
    hub = demo.province.select("hub#0")
    demo.sim.set_mains(hub, False)
    demo.clock.advance(61 * 60)
    assert await silent(demo, "hub#0", "power")
    assert await silent(demo, "leaf#0", "bts")  # reached through the hub
    demo.sim.set_mains(hub, True)
    assert await silent(demo, "hub#0", "bts")  # still booting
    demo.clock.advance(BOOT_DELAY_S + 5)
    values = await get(demo, "hub#0", "bts", SYS_UPTIME)
    assert int(values[SYS_UPTIME]) == 500


async def test_reboot_resets_uptime_and_counts_a_boot(demo: Demo) -> None:
    site = demo.province.select("leaf#2")
    before = await get(demo, "leaf#2", "bts", SYS_UPTIME, ENGINE_BOOTS)
    demo.sim.reboot(f"{site}/bts")
    assert await silent(demo, "leaf#2", "bts")
    demo.clock.advance(BOOT_DELAY_S + 12)
    after = await get(demo, "leaf#2", "bts", SYS_UPTIME, ENGINE_BOOTS)
    assert int(after[SYS_UPTIME]) == 1200 < int(before[SYS_UPTIME])
    assert int(after[ENGINE_BOOTS]) == int(before[ENGINE_BOOTS]) + 1


async def test_rain_fade_lowers_rx_level_and_a_deep_fade_cuts_the_site(demo: Demo) -> None:
    site = demo.province.select("leaf#0")
    clear = await get(demo, "leaf#0", "link", RSSI, CINR)
    assert -43 <= int(clear[RSSI]) <= -37
    assert int(clear[CINR]) >= 20
    demo.sim.set_rx_fade(f"{site}/link", 15)
    faded = await get(demo, "leaf#0", "link", RSSI, CINR)
    assert int(faded[RSSI]) <= int(clear[RSSI]) - 13
    assert int(faded[CINR]) <= int(clear[CINR]) - 8
    demo.sim.set_rx_fade(f"{site}/link", 40)
    assert await silent(demo, "leaf#0", "bts")
    assert not await silent(demo, "hub#0", "bts")


async def test_fibre_cut_isolates_the_group_behind_a_site(demo: Demo) -> None:
    agg = demo.province.select("agg#0")
    behind = demo.province.downstream(agg)
    assert behind
    demo.sim.set_cut(agg, True)
    assert await silent(demo, "agg#0", "power")
    assert await silent(demo, behind[0], "bts")
    assert not await silent(demo, "hub#0", "bts")
    demo.sim.set_cut(agg, False)
    assert not await silent(demo, behind[0], "bts")


async def test_project_transport_reads_the_simulator(demo: Demo) -> None:
    transport_mod = pytest.importorskip(
        "uptimewatch.probing.snmp_transport", reason="the project's SNMP transport is not in this tree yet"
    )
    config = Config.model_validate(
        {**demo.province.config, "defaults": {"snmp": {"port": demo.port, "timeout": 0.5, "retries": 0}}}
    )
    hub = demo.province.select("hub#0")
    device = next(d for d in resolve_all(config) if d.site_id == hub and d.device_id == "power")
    target: SnmpTarget | None = device.snmp
    assert target is not None
    transport = transport_mod.create_transport()
    try:
        got = await transport.get(target, [CHARGE, SYS_OBJECT_ID])
        assert got.error is None, got.error
        values = {vb.oid: vb.value for vb in got.varbinds}
        assert values == {CHARGE: 100, SYS_OBJECT_ID: "1.3.6.1.4.1.12148.10"}
        walked = await transport.walk(target, "1.3.6.1.2.1.2.2.1")
        assert walked.error is None
        assert not walked.truncated
        assert len(walked.varbinds) == 13  # one interface, thirteen ifTable columns
    finally:
        await transport.close()
