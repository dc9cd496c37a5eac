"""The SIAE profile holds for the whole SM-OS family, not just the corpus's two radios.

The facts it rests on are the MIBs' (SIAE-TREE-MIB: the enterprise root 3373 is the module
identity and siaeMib is 3373.1103; SIAE-RADIO-SYSTEM-MIB: radioStatusTable indexed by radioIndex,
radioPrx and radioPtx in dBm, radioNormalizedMse in 0.1 dB; SIAE-ALARM-MIB: AlarmStatus cleared(1),
otherwise active at a severity). The device here is ``tests/corpus/derived/sm-os_bare-root.snmprec``:
the ALFOplus2 recording turned into another model that reports the bare enterprise root as its
sysObjectID and numbers its radios 3 and 4 (tests/corpus/README.md lists every edit). Expected
values are written by hand from that file, served by snmpsim and polled with profile ``auto``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.snmpsim import CORPUS, SnmpsimEndpoint
from tests.test_catalog_radio import check_no_sentinels, poll, snmprec, system
from uptimewatch.model.fields import lookup
from uptimewatch.profiles import ProfileCatalog, load_profiles

BARE_ROOT = CORPUS / "derived" / "sm-os_bare-root.snmprec"

SIAE = "1.3.6.1.4.1.3373"
RADIO_STATUS = f"{SIAE}.1103.80.12.1"  # radioStatusEntry

#: small agents of our own: the alarm severities, and a SIAE box without the SM-OS radio tables
RECORDINGS: dict[str, Any] = {
    "sm-os_bare-root": BARE_ROOT,
    # radio 7's demodulator alarm active at the lowest severity, activeReportableStatus(2)
    "siae-alarm-status": snmprec(
        *system(SIAE),
        (f"{RADIO_STATUS}.3.7", 2, -48),
        (f"{RADIO_STATUS}.4.7", 2, 20),
        (f"{RADIO_STATUS}.13.7", 2, 2),
        (f"{RADIO_STATUS}.14.7", 2, 2),
    ),
    # an older SIAE product on the same enterprise root that has no radioSystem subtree
    "siae-no-radio-system": snmprec(*system(f"{SIAE}.1103")),
}


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


@pytest.fixture(scope="module")
def siae(snmpsim_factory: Any) -> SnmpsimEndpoint:
    endpoint: SnmpsimEndpoint = snmpsim_factory(RECORDINGS, v3=False)
    return endpoint


@pytest.mark.parametrize(
    ("sys_object_id", "matched"),
    [
        (SIAE, True),  # the bare root: the module identity of SIAE-TREE-MIB
        (f".{SIAE}", True),  # as snmpwalk -On prints it
        (f"{SIAE}.1103", True),  # siaeMib: ALFOplus2, ALFOplus80HDX
        (f"{SIAE}.1103.6.3.280", True),  # anything further down the tree
        ("1.3.6.1.4.1.33730", False),  # another enterprise: prefixes end on an arc boundary
        ("1.3.6.1.4.1.337", False),
    ],
)
def test_match_covers_the_enterprise_root(catalog: ProfileCatalog, sys_object_id: str, matched: bool) -> None:
    names = [p.name for p in catalog.match(sys_object_id, ())]
    assert ("radio-siae" in names) is matched, names


def test_receive_level_is_declared_in_dbm(catalog: ProfileCatalog) -> None:
    profile = catalog.get("radio-siae")
    columns = {c.oid: c for t in profile.tables for c in t.columns}
    prx, ptx = columns[f"{RADIO_STATUS}.3"], columns[f"{RADIO_STATUS}.4"]  # radioPrx, radioPtx
    assert (prx.name, prx.unit, prx.mul, prx.div) == ("link.radio_rx_level_dbm[{index}]", "dBm", None, None)
    assert (ptx.name, ptx.unit, ptx.mul, ptx.div) == ("link.radio_tx_power_dbm[{index}]", "dBm", None, None)
    for name in ("link.rx_level_dbm", "link.radio_rx_level_dbm[3]", "link.tx_power_dbm"):
        info = lookup(name)
        assert info is not None, name
        assert info.unit == "dBm", name
    # walked as table columns, whatever row numbers the model gives its radios
    assert {f"{RADIO_STATUS}.3", f"{RADIO_STATUS}.4"} <= set(profile.walk_roots)
    assert not [oid for oid in profile.scalar_oids if oid.startswith(f"{SIAE}.")]


async def test_bare_root_model_with_other_radio_indexes(
    catalog: ProfileCatalog, siae: SnmpsimEndpoint
) -> None:
    obs = await poll(catalog, siae, "sm-os_bare-root")
    assert obs.ok, obs.error
    assert obs.profile == "generic-host,radio-siae"
    expected = {
        "device.sys_object_id": SIAE,
        "device.sys_descr": "AGS-20 - SIAE Microelettronica",
        "device.model": "AGS-20",  # unitLabel.1
        "link.radio_rx_level_dbm[3]": -51,  # radioPrx.3, dBm
        "link.radio_rx_level_dbm[4]": -53,
        "link.radio_rx_level_dbm[1]": "<missing>",  # no radio 1 on this model
        "link.rx_level_dbm": -53,  # the weaker radio
        "link.radio_tx_power_dbm[3]": 18,  # radioPtx.3, dBm
        "link.radio_tx_power_dbm[4]": 17,
        "link.tx_power_dbm": 18,
        "link.radio_snr_db[3]": 38.5,  # radioNormalizedMse 385 (0.1 dB)
        "link.snr_db": 38.5,
        "link.radio_rx_low_alarm[4]": False,  # cleared(1)
        "link.radio_modulation[2.1]": "2048qam",  # linkAcmRxModulation.2.1 = 11
        "link.modulation": "2048qam",
        "link.radio_tx_capacity_bps[2.2]": 598000000,  # linkTxETHCapacity 598000 kbit/s
        "link.capacity_bps": 612345000,
        "link.oper_up": True,  # both demodulator alarms cleared
    }
    assert {name: obs.fields.get(name, "<missing>") for name in expected} == expected
    check_no_sentinels(obs.fields)
    assert obs.problems == ()


async def test_any_active_alarm_severity_counts(catalog: ProfileCatalog, siae: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, siae, "siae-alarm-status")
    assert obs.profile == "generic-host,radio-siae"
    assert obs.fields["link.rx_level_dbm"] == -48  # a level the fallback would call up
    assert obs.fields["link.radio_rx_low_alarm[7]"] is True  # activeReportableStatus(2) is active
    assert obs.fields["link.oper_up"] is False  # the demodulator failed, whatever the severity
    assert obs.problems == ()


async def test_siae_box_without_radio_tables(catalog: ProfileCatalog, siae: SnmpsimEndpoint) -> None:
    obs = await poll(catalog, siae, "siae-no-radio-system")
    assert obs.ok, obs.error
    assert obs.profile == "generic-host,radio-siae"
    assert obs.fields["device.sys_name"] == "quirk"  # generic-host still reads it
    for name in ("link.rx_level_dbm", "link.tx_power_dbm", "link.oper_up", "device.model"):
        assert obs.fields.get(name) is None, name  # unknown, not made up
    assert obs.problems == ()
