"""PysnmpTransport against snmpsim serving the real device recordings of tests/corpus."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from tests.fixtures.snmpsim import (
    SnmpsimEndpoint,
    SnmpsimFactory,
    corpus_dir,
    corpus_recording,
    read_snmprec,
    snmp_target,
)
from uptimewatch.config.models import SnmpVersion
from uptimewatch.model.observation import ErrorKind
from uptimewatch.probing.snmp_fast import FastSnmpTransport
from uptimewatch.probing.snmp_transport import (
    MAX_VARBINDS_PER_PDU,
    RECEIVE_BUFFER_BYTES,
    PysnmpTransport,
    create_transport,
)
from uptimewatch.probing.snmp_types import SnmpResponse, SnmpTransport, SnmpType

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
UPS_MINUTES_REMAINING = "1.3.6.1.2.1.33.1.2.3.0"
IF_TABLE = "1.3.6.1.2.1.2.2"

TAG_TYPES = {
    "2": SnmpType.INTEGER,
    "4": SnmpType.OCTET_STRING,
    "4x": SnmpType.OCTET_STRING,
    "5": SnmpType.NULL,
    "6": SnmpType.OID,
    "64": SnmpType.IPADDRESS,
    "64x": SnmpType.IPADDRESS,
    "65": SnmpType.COUNTER32,
    "66": SnmpType.GAUGE32,
    "67": SnmpType.TIMETICKS,
    "70": SnmpType.COUNTER64,
}


def expected_value(tag: str, raw: str) -> int | bytes | str | None:
    """What the transport must return for a recorded ``tag|value``."""
    if tag == "4":
        return raw.encode()
    if tag == "4x":
        return bytes.fromhex(raw)
    if tag == "5":
        return None
    if tag == "6":
        return raw.lstrip(".")
    if tag == "64":
        return raw
    if tag == "64x":
        return socket.inet_ntoa(bytes.fromhex(raw))
    return int(raw)


def oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split("."))


def subtree(stem: str, root: str) -> list[tuple[str, tuple[str, str]]]:
    """The recording's rows under ``root`` in SNMP (numeric) order."""
    rows = [(oid, rec) for oid, rec in read_snmprec(stem).items() if oid.startswith(root + ".")]
    return sorted(rows, key=lambda row: oid_tuple(row[0]))


def kernel_rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


@pytest.fixture
async def transport() -> AsyncIterator[PysnmpTransport]:
    t = PysnmpTransport()
    yield t
    await t.close()


def by_oid(response: SnmpResponse) -> dict[str, tuple[SnmpType, object]]:
    return {vb.oid: (vb.type, vb.value) for vb in response.varbinds}


# -- GET ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [SnmpVersion.V2C, SnmpVersion.V1])
async def test_get_ups_scalars(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport, version: str) -> None:
    resp = await transport.get(
        snmp_target(snmpsim, "cetpower", version), [SYS_OBJECT_ID, UPS_MINUTES_REMAINING]
    )
    assert resp.error is None
    assert resp.requests == 1
    assert [(vb.oid, vb.type, vb.value) for vb in resp.varbinds] == [
        (SYS_OBJECT_ID, SnmpType.OID, "1.3.6.1.4.1.12551.4.0"),
        (UPS_MINUTES_REMAINING, SnmpType.INTEGER, 6000),
    ]


async def test_create_transport_is_a_working_snmp_transport(snmpsim: SnmpsimEndpoint) -> None:
    transport: SnmpTransport = create_transport()
    try:
        resp = await transport.get(snmp_target(snmpsim, "cxc_ups"), [UPS_MINUTES_REMAINING])
        assert [(vb.type, vb.value) for vb in resp.varbinds] == [(SnmpType.INTEGER, 1902)]
    finally:
        await transport.close()


@pytest.mark.parametrize(
    ("stem", "tag"),
    [
        ("iosxe_asr920", "2"),
        ("iosxe_asr920", "4"),
        ("iosxe_asr920", "4x"),
        ("iosxe_asr920", "65"),
        ("iosxe_asr920", "66"),
        ("iosxe_asr920", "67"),
        ("iosxe_asr920", "70"),
        ("cetpower", "6"),
        ("cxc_ups", "5"),
        ("routeros", "64"),
        ("eltek-webpower", "64x"),
        ("huaweiups_ups2000", "66"),  # 4294967295: the Gauge32 maximum survives as an int
    ],
)
async def test_value_types_match_the_recording(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport, stem: str, tag: str
) -> None:
    records = read_snmprec(stem)
    candidates = [(oid, raw) for oid, (t, raw) in records.items() if t == tag]
    if tag == "4":  # plain text that survives the file's encoding round trip
        candidates = [(oid, raw) for oid, raw in candidates if raw.isascii() and raw.isprintable()]
    if stem == "huaweiups_ups2000":
        candidates = [(oid, raw) for oid, raw in candidates if raw == "4294967295"]
    oids = [oid for oid, _ in candidates[:10]]
    assert oids, f"{stem} has no {tag} value"
    resp = await transport.get(snmp_target(snmpsim, stem), oids)
    assert resp.error is None
    got = by_oid(resp)
    for oid, raw in candidates[:10]:
        assert got[oid] == (TAG_TYPES[tag], expected_value(tag, raw)), oid


async def test_get_many_oids_splits_into_pdus(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport) -> None:
    records = read_snmprec("cetpower")
    oids = [oid for oid, (tag, _) in records.items() if tag in ("2", "65", "66", "67")][:130]
    resp = await transport.get(snmp_target(snmpsim, "cetpower"), oids)
    assert resp.error is None
    assert resp.requests == math.ceil(len(oids) / MAX_VARBINDS_PER_PDU) == 4
    assert [vb.oid for vb in resp.varbinds] == oids
    assert all(vb.value == int(records[vb.oid][1]) for vb in resp.varbinds)


async def test_get_absent_oid_v2c_is_a_typed_varbind(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    absent_instance = "1.3.6.1.2.1.33.1.2.3.7"  # in a recorded subtree, no such instance
    absent_object = "1.3.6.1.4.1.99999.1.0"
    resp = await transport.get(snmp_target(snmpsim, "cetpower"), [absent_instance, absent_object])
    assert resp.error is None
    assert len(resp.varbinds) == 2
    assert all(vb.empty and vb.value is None for vb in resp.varbinds)
    assert {vb.type for vb in resp.varbinds} <= {SnmpType.NO_SUCH_INSTANCE, SnmpType.NO_SUCH_OBJECT}


async def test_get_absent_oid_v1_asks_again_without_it(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    absent = "1.3.6.1.2.1.1.99.0"
    target = snmp_target(snmpsim, "cetpower", SnmpVersion.V1)
    resp = await transport.get(target, [SYS_OBJECT_ID, absent, UPS_MINUTES_REMAINING])
    assert resp.error is None
    assert resp.requests == 2  # the noSuchName answer, then the PDU without the absent OID
    assert [(vb.oid, vb.type, vb.value) for vb in resp.varbinds] == [
        (SYS_OBJECT_ID, SnmpType.OID, "1.3.6.1.4.1.12551.4.0"),
        (absent, SnmpType.NO_SUCH_OBJECT, None),
        (UPS_MINUTES_REMAINING, SnmpType.INTEGER, 6000),
    ]


# -- walks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [SnmpVersion.V2C, SnmpVersion.V1, SnmpVersion.V3])
async def test_walk_if_table_matches_the_recording(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport, version: str
) -> None:
    expected = subtree("iosxe_asr920", IF_TABLE)
    assert len(expected) > 300
    # GETNEXT takes one request per row: allow enough of them for v1
    target = snmp_target(snmpsim, "iosxe_asr920", version, max_requests=1000)
    resp = await transport.walk(target, IF_TABLE)
    assert resp.error is None, resp.error
    assert not resp.truncated
    assert resp.problems == ()
    assert [vb.oid for vb in resp.varbinds] == [oid for oid, _ in expected]
    for vb, (_oid, (tag, raw)) in zip(resp.varbinds, expected, strict=True):
        assert (vb.type, vb.value) == (TAG_TYPES[tag], expected_value(tag, raw))
    if version == SnmpVersion.V1:
        assert resp.requests == len(expected) + 1  # GETNEXT: one row per request, one past the end
    else:
        assert resp.requests <= math.ceil((len(expected) + 1) / 25) + 1


async def test_walk_of_an_unsorted_recording(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport) -> None:
    # the file is unsorted with duplicate OIDs; the agent serves it sorted, last line winning
    expected = subtree("poweralert_2", "1.3.6.1.2.1.33")
    resp = await transport.walk(snmp_target(snmpsim, "poweralert_2"), "1.3.6.1.2.1.33")
    assert resp.error is None
    assert [vb.oid for vb in resp.varbinds] == [oid for oid, _ in expected]


async def test_walk_stops_at_max_rows(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport) -> None:
    resp = await transport.walk(snmp_target(snmpsim, "iosxe_asr920", max_rows=30), IF_TABLE)
    assert resp.error is None
    assert resp.truncated
    assert len(resp.varbinds) == 30
    assert [vb.oid for vb in resp.varbinds] == [oid for oid, _ in subtree("iosxe_asr920", IF_TABLE)[:30]]
    assert any("max_rows=30" in p for p in resp.problems)


async def test_walk_with_exactly_max_rows_is_not_truncated(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    root = "1.3.6.1.2.1.2.2.1.8"  # ifOperStatus
    rows = len(subtree("iosxe_asr920", root))
    resp = await transport.walk(snmp_target(snmpsim, "iosxe_asr920", max_rows=rows), root)
    assert resp.error is None
    assert len(resp.varbinds) == rows
    assert not resp.truncated
    assert resp.problems == ()


@pytest.mark.parametrize("version", [SnmpVersion.V2C, SnmpVersion.V1])
async def test_walk_stops_at_max_requests(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport, version: str
) -> None:
    target = snmp_target(snmpsim, "iosxe_asr920", version, max_requests=3, max_repetitions=4)
    resp = await transport.walk(target, IF_TABLE)
    assert resp.error is None
    assert resp.truncated
    assert resp.requests == 3
    assert len(resp.varbinds) == (12 if version == SnmpVersion.V2C else 3)
    assert any("max_requests=3" in p for p in resp.problems)


async def test_walk_of_an_absent_subtree_is_empty(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    resp = await transport.walk(snmp_target(snmpsim, "cetpower"), IF_TABLE)
    assert resp.error is None
    assert resp.varbinds == ()
    assert not resp.truncated


class _BackwardsAgent(asyncio.DatagramProtocol):
    """An SNMPv2c agent with a broken walk: the second answer goes back to an earlier OID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        from pyasn1.codec.ber import decoder, encoder
        from pysnmp.proto import api

        p = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
        msg, _ = decoder.decode(data, asn1Spec=p.Message())
        self.requests += 1
        rows = (
            ["1.3.6.1.2.1.2.2.1.1.1", "1.3.6.1.2.1.2.2.1.1.2"]
            if self.requests == 1
            else ["1.3.6.1.2.1.2.2.1.1.1"]
        )
        rsp = p.apiPDU.get_response(p.apiMessage.get_pdu(msg))
        p.apiPDU.set_varbinds(rsp, [(oid, p.Integer(i)) for i, oid in enumerate(rows)])
        out = p.apiMessage.get_response(msg)
        p.apiMessage.set_pdu(out, rsp)
        assert self.transport is not None
        self.transport.sendto(encoder.encode(out), addr)


async def test_walk_aborts_on_non_increasing_oid(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    loop = asyncio.get_running_loop()
    udp, agent = await loop.create_datagram_endpoint(_BackwardsAgent, local_addr=("127.0.0.1", 0))
    try:
        port = udp.get_extra_info("sockname")[1]
        resp = await transport.walk(snmp_target(snmpsim, "any", port=port), IF_TABLE)
    finally:
        udp.close()
    assert resp.error is None
    assert [vb.oid for vb in resp.varbinds] == ["1.3.6.1.2.1.2.2.1.1.1", "1.3.6.1.2.1.2.2.1.1.2"]
    assert agent.requests == resp.requests == 2
    assert any("did not increase" in p for p in resp.problems)


# -- SNMPv3 ---------------------------------------------------------------------------------------


async def test_v3_auth_priv_get(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport) -> None:
    target = snmp_target(snmpsim, "netmanplus_204", SnmpVersion.V3)
    assert target.security_level == "authPriv"
    resp = await transport.get(target, [SYS_OBJECT_ID, UPS_MINUTES_REMAINING])
    assert resp.error is None, resp.error
    assert [vb.value for vb in resp.varbinds] == ["1.3.6.1.4.1.5491.304", 135]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"auth_key": "not-the-auth-key"}, "wrong auth key"),
        ({"priv_key": "not-the-priv-key"}, "wrong priv key (decryption error)"),
        ({"user": "intruder"}, "unknown SNMPv3 user"),
    ],
)
async def test_v3_rejections_are_auth_errors_with_their_reason(
    snmpsim: SnmpsimEndpoint,
    transport: PysnmpTransport,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, str],
    words: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="uptimewatch")
    resp = await transport.get(snmp_target(snmpsim, "cetpower", SnmpVersion.V3, **overrides), [SYS_OBJECT_ID])
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.AUTH
    assert words in resp.error.message
    assert resp.varbinds == ()
    for secret in (*overrides.values(), snmpsim.v3_auth_key, snmpsim.v3_priv_key):
        if secret and secret != overrides.get("user"):
            assert secret not in resp.error.message
            assert secret not in caplog.text


async def test_v3_same_user_with_two_key_sets_on_one_transport(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    good = snmp_target(snmpsim, "cetpower", SnmpVersion.V3)
    bad = snmp_target(snmpsim, "cetpower", SnmpVersion.V3, auth_key="an-older-auth-key")
    results = await asyncio.gather(*(transport.get(t, [SYS_OBJECT_ID]) for t in (good, bad, good, bad)))
    assert [r.error is None for r in results] == [True, False, True, False]
    assert all(r.error.kind is ErrorKind.AUTH for r in results[1::2] if r.error)
    again = await transport.get(good, [UPS_MINUTES_REMAINING])
    assert [vb.value for vb in again.varbinds] == [6000]


@pytest.mark.parametrize(
    ("auth", "priv"),
    [("MD5", "DES"), ("SHA", "AES256BLMT"), ("SHA256", "AES192BLMT"), ("SHA512", "AES")],
)
async def test_v3_protocols(snmpsim_factory: SnmpsimFactory, auth: str, priv: str) -> None:
    endpoint = snmpsim_factory(
        {"cxc_ups": corpus_recording("cxc_ups")}, v3_auth_proto=auth, v3_priv_proto=priv
    )
    transport = PysnmpTransport()
    try:
        resp = await transport.get(snmp_target(endpoint, "cxc_ups", SnmpVersion.V3), [UPS_MINUTES_REMAINING])
    finally:
        await transport.close()
    assert resp.error is None, resp.error
    assert [vb.value for vb in resp.varbinds] == [1902]


# -- no answer ------------------------------------------------------------------------------------


async def test_wrong_community_times_out(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="uptimewatch")
    community = "no-such-recording-secret"
    resp = await transport.get(snmp_target(snmpsim, community, timeout=0.3, retries=2), [SYS_OBJECT_ID])
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.TIMEOUT
    assert resp.requests == 3
    assert community not in resp.error.message
    assert community not in caplog.text


async def test_closed_port_times_out_within_the_target_timeout(transport: PysnmpTransport) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = SnmpsimEndpoint(host="127.0.0.1", port=port, data_dir=Path("/nonexistent"))
    started = time.monotonic()
    resp = await transport.get(snmp_target(endpoint, "public", timeout=0.2, retries=1), [SYS_OBJECT_ID])
    elapsed = time.monotonic() - started
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.TIMEOUT
    assert resp.requests == 2
    # pysnmp's timer ticks every 0.1 s; well under a default 2 s timeout means the target's was used
    assert elapsed < 1.5


async def test_walk_timeout_is_an_error(transport: PysnmpTransport) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = SnmpsimEndpoint(host="127.0.0.1", port=port, data_dir=Path("/nonexistent"))
    resp = await transport.walk(snmp_target(endpoint, "public", timeout=0.1, retries=0), IF_TABLE)
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.TIMEOUT
    assert resp.requests == 1


async def test_host_name_is_resolved(snmpsim: SnmpsimEndpoint, transport: PysnmpTransport) -> None:
    # "localhost" comes from /etc/hosts: no query leaves the machine
    resp = await transport.get(snmp_target(snmpsim, "cetpower", host="localhost"), [UPS_MINUTES_REMAINING])
    assert resp.error is None, resp.error
    assert [vb.value for vb in resp.varbinds] == [6000]


# -- scale and life cycle -------------------------------------------------------------------------


async def test_500_concurrent_gets_across_recordings(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    stems = sorted(p.stem for p in (corpus_dir() / "snmprec").glob("*.snmprec"))
    expected = {stem: read_snmprec(stem)[SYS_OBJECT_ID][1].lstrip(".") for stem in stems}
    # no retries: a reply lost anywhere would show as a timeout instead of being papered over
    targets = [snmp_target(snmpsim, stems[i % len(stems)], timeout=10.0, retries=0) for i in range(500)]
    results = await asyncio.gather(*(transport.get(t, [SYS_OBJECT_ID]) for t in targets))
    failures = [(t.community, r.error) for t, r in zip(targets, results, strict=True) if r.error]
    assert failures == []
    for target, resp in zip(targets, results, strict=True):
        assert target.community is not None
        assert [vb.value for vb in resp.varbinds] == [expected[target.community.get_secret_value()]]
    assert sum(r.requests for r in results) == 500


#: both transports under the one driver: what the driver's face promises holds for each
BOTH_TRANSPORTS = pytest.mark.parametrize(
    "kind", [PysnmpTransport, FastSnmpTransport], ids=["pysnmp", "fast"]
)


@BOTH_TRANSPORTS
async def test_receive_buffer_is_enlarged(
    snmpsim: SnmpsimEndpoint, kind: type[PysnmpTransport | FastSnmpTransport]
) -> None:
    transport = kind()
    try:
        await transport.get(snmp_target(snmpsim, "cxc_ups"), [SYS_OBJECT_ID])
        assert transport.receive_buffer_granted is not None
        assert transport.receive_buffer_granted >= min(RECEIVE_BUFFER_BYTES, kernel_rmem_max())
    finally:
        await transport.close()


@BOTH_TRANSPORTS
async def test_close_answers_pending_and_later_requests(
    snmpsim: SnmpsimEndpoint, kind: type[PysnmpTransport | FastSnmpTransport]
) -> None:
    transport = kind()
    silent = snmp_target(snmpsim, "no-such-recording", timeout=10.0, retries=0)
    pending = asyncio.ensure_future(transport.get(silent, [SYS_OBJECT_ID]))
    await asyncio.sleep(0.2)
    await transport.close()
    resp = await asyncio.wait_for(pending, 2)
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.INTERNAL
    after = await transport.get(snmp_target(snmpsim, "cetpower"), [SYS_OBJECT_ID])
    assert after.error is not None
    assert after.error.kind is ErrorKind.INTERNAL


async def test_cancelled_get_leaves_the_transport_usable(
    snmpsim: SnmpsimEndpoint, transport: PysnmpTransport
) -> None:
    silent = snmp_target(snmpsim, "no-such-recording", timeout=0.3, retries=0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await transport.get(silent, [SYS_OBJECT_ID])
    await asyncio.sleep(0.5)  # the abandoned request times out inside pysnmp meanwhile
    resp = await transport.get(snmp_target(snmpsim, "cetpower"), [UPS_MINUTES_REMAINING])
    assert [vb.value for vb in resp.varbinds] == [6000]
