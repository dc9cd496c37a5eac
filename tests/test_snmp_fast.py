"""FastSnmpTransport (and the composite the daemon uses) against snmpsim serving the real corpus.

The pysnmp transport's own test cases run here again, unchanged, against ``create_transport()``:
every version goes through the fast path (SNMPv3 against snmpsim's USM, which is pysnmp's), and
every expectation is the same. The
tests after them cover what only the fast path has: source matching, malformed datagrams, the
request-id demultiplexing under load, and error-status handling an agent must be provoked into
(a relay in front of snmpsim answers tooBig or genErr in its place).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, cast

import pytest

from tests.fixtures.snmpsim import SnmpsimEndpoint, read_snmprec, snmp_target
from tests.test_snmp_transport import (  # the pysnmp transport's cases, collected here again
    IF_TABLE,
    SYS_OBJECT_ID,
    UPS_MINUTES_REMAINING,
    subtree,
    test_500_concurrent_gets_across_recordings,
    test_cancelled_get_leaves_the_transport_usable,
    test_closed_port_times_out_within_the_target_timeout,
    test_get_absent_oid_v1_asks_again_without_it,
    test_get_absent_oid_v2c_is_a_typed_varbind,
    test_get_many_oids_splits_into_pdus,
    test_get_ups_scalars,
    test_host_name_is_resolved,
    test_v3_auth_priv_get,
    test_v3_rejections_are_auth_errors_with_their_reason,
    test_value_types_match_the_recording,
    test_walk_aborts_on_non_increasing_oid,
    test_walk_if_table_matches_the_recording,
    test_walk_of_an_absent_subtree_is_empty,
    test_walk_of_an_unsorted_recording,
    test_walk_stops_at_max_requests,
    test_walk_stops_at_max_rows,
    test_walk_timeout_is_an_error,
    test_walk_with_exactly_max_rows_is_not_truncated,
    test_wrong_community_times_out,
)
from uptimewatch.config.models import SnmpVersion
from uptimewatch.model.observation import ErrorKind
from uptimewatch.probing import ber
from uptimewatch.probing.snmp_fast import (
    CompositeSnmpTransport,
    FastSnmpTransport,
)
from uptimewatch.probing.snmp_transport import PysnmpTransport, create_transport

REUSED = (
    test_500_concurrent_gets_across_recordings,
    test_cancelled_get_leaves_the_transport_usable,
    test_closed_port_times_out_within_the_target_timeout,
    test_get_absent_oid_v1_asks_again_without_it,
    test_get_absent_oid_v2c_is_a_typed_varbind,
    test_get_many_oids_splits_into_pdus,
    test_get_ups_scalars,
    test_host_name_is_resolved,
    test_v3_auth_priv_get,
    test_v3_rejections_are_auth_errors_with_their_reason,
    test_value_types_match_the_recording,
    test_walk_aborts_on_non_increasing_oid,
    test_walk_if_table_matches_the_recording,
    test_walk_of_an_absent_subtree_is_empty,
    test_walk_of_an_unsorted_recording,
    test_walk_stops_at_max_requests,
    test_walk_stops_at_max_rows,
    test_walk_timeout_is_an_error,
    test_walk_with_exactly_max_rows_is_not_truncated,
    test_wrong_community_times_out,
)


@pytest.fixture
async def transport() -> AsyncIterator[FastSnmpTransport]:
    """What the reused cases poll through: the daemon's own transport."""
    t = create_transport()
    assert isinstance(t, FastSnmpTransport)
    yield t
    await t.close()


@pytest.fixture
async def fast() -> AsyncIterator[FastSnmpTransport]:
    t = FastSnmpTransport()
    yield t
    await t.close()


# -- routing --------------------------------------------------------------------------------------


async def test_every_version_goes_through_the_fast_path(snmpsim: SnmpsimEndpoint) -> None:
    t = create_transport()
    assert isinstance(t, FastSnmpTransport)
    try:
        v3 = await t.get(snmp_target(snmpsim, "cetpower", SnmpVersion.V3), [UPS_MINUTES_REMAINING])
        assert v3.error is None, v3.error
        assert [vb.value for vb in v3.varbinds] == [6000]
        assert t.stats.requests == 2  # engine discovery, then the GET
        for version in (SnmpVersion.V2C, SnmpVersion.V1):
            got = await t.get(snmp_target(snmpsim, "cetpower", version), [UPS_MINUTES_REMAINING])
            assert [vb.value for vb in got.varbinds] == [6000]
        walked = await t.walk(snmp_target(snmpsim, "iosxe_asr920"), "1.3.6.1.2.1.2.2.1.8")
        assert walked.error is None
        assert t.stats.requests == 4 + walked.requests
        assert t.stats.responses == t.stats.requests
    finally:
        await t.close()


async def test_v3_pysnmp_sends_only_v3_to_pysnmp(snmpsim: SnmpsimEndpoint) -> None:
    t = create_transport(v3_pysnmp=True)
    assert isinstance(t, CompositeSnmpTransport)
    fast_path = t.community
    assert isinstance(fast_path, FastSnmpTransport)
    assert isinstance(t.v3, PysnmpTransport)
    try:
        v3 = await t.get(snmp_target(snmpsim, "cetpower", SnmpVersion.V3), [UPS_MINUTES_REMAINING])
        assert [vb.value for vb in v3.varbinds] == [6000]
        assert fast_path.stats.requests == 0
        got = await t.get(snmp_target(snmpsim, "cetpower"), [UPS_MINUTES_REMAINING])
        assert [vb.value for vb in got.varbinds] == [6000]
        assert fast_path.stats.requests == 1
    finally:
        await t.close()


def test_force_pysnmp_gives_the_pysnmp_transport() -> None:
    assert isinstance(create_transport(force_pysnmp=True), PysnmpTransport)


async def test_fast_transport_refuses_v3_without_user_and_missing_community(
    snmpsim: SnmpsimEndpoint, fast: FastSnmpTransport
) -> None:
    nobody = replace(snmp_target(snmpsim, "cetpower", SnmpVersion.V3), user=None)
    v3 = await fast.get(nobody, [SYS_OBJECT_ID])
    assert v3.error is not None
    assert v3.error.kind is ErrorKind.AUTH
    ok = await fast.get(snmp_target(snmpsim, "cetpower"), [SYS_OBJECT_ID])
    assert ok.error is None
    # the same address again: checked although its socket and peer are known by now
    v3 = await fast.get(nobody, [SYS_OBJECT_ID])
    assert v3.error is not None
    assert v3.error.kind is ErrorKind.AUTH
    keyless = replace(snmp_target(snmpsim, "cetpower", SnmpVersion.V3), auth_key=None)
    v3 = await fast.get(keyless, [SYS_OBJECT_ID])
    assert v3.error is not None
    assert v3.error.kind is ErrorKind.AUTH
    assert "privacy needs an auth key" in v3.error.message
    none = await fast.get(replace(snmp_target(snmpsim, "cetpower"), community=None), [SYS_OBJECT_ID])
    assert none.error is not None
    assert none.error.kind is ErrorKind.AUTH
    assert fast.stats.requests == 1


# -- life cycle -----------------------------------------------------------------------------------


async def test_community_never_reaches_logs_or_errors(
    snmpsim: SnmpsimEndpoint, fast: FastSnmpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="uptimewatch")
    secret = "cetpower"  # the recording's community: it must answer, and never be shown
    ok = await fast.get(snmp_target(snmpsim, secret), [SYS_OBJECT_ID])
    assert ok.error is None
    bad = await fast.get(snmp_target(snmpsim, "s3cret-community", timeout=0.1, retries=0), [SYS_OBJECT_ID])
    assert bad.error is not None
    text = repr(ok) + repr(bad) + caplog.text
    assert secret not in text
    assert "s3cret-community" not in text


# -- a relay in front of snmpsim ------------------------------------------------------------------

_Handler = Callable[[ber.Request, bytes], "bytes | None"]


class _Relay(asyncio.DatagramProtocol):
    """Forwards each request to snmpsim and hands the genuine reply to ``deliver``, which sends
    whatever a test wants the poller to see, from whichever socket it wants."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.client: Any = None
        self.requests: list[ber.Request] = []
        self.answer: _Handler | None = None  # answers instead of snmpsim when it returns bytes
        self.deliver: Callable[[bytes], None] = self.send
        self._up: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        up, _ = await loop.create_datagram_endpoint(lambda: _Upstream(self), local_addr=("127.0.0.1", 0))
        self._up = cast(asyncio.DatagramTransport, up)
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        for t in (self.transport, self._up):
            if t is not None:
                t.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        req = ber.decode_request(data)
        self.requests.append(req)
        if self.answer is not None:
            reply = self.answer(req, data)
            if reply is not None:
                self.send(reply)
                return
        assert self._up is not None
        self._up.sendto(data, self.upstream)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.client)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.deliver(data)


@pytest.fixture
async def relay(snmpsim: SnmpsimEndpoint) -> AsyncIterator[tuple[_Relay, SnmpsimEndpoint]]:
    r = _Relay((snmpsim.host, snmpsim.port))
    port = await r.start()
    yield r, SnmpsimEndpoint(host="127.0.0.1", port=port, data_dir=snmpsim.data_dir)
    r.close()


@pytest.mark.parametrize("stray_address", [("127.0.0.1", 0), ("127.0.0.2", None)])
async def test_a_reply_from_elsewhere_is_ignored(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport, stray_address: tuple[str, int | None]
) -> None:
    agent, endpoint = relay
    host, port = stray_address
    # another port of the agent's address, or the agent's port on another address
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stray.bind((host, endpoint.port if port is None else port))
    try:
        only_stray = True

        def deliver(data: bytes) -> None:
            stray.sendto(data, agent.client)
            if not only_stray:
                agent.send(data)

        agent.deliver = deliver
        target = snmp_target(endpoint, "cetpower", timeout=0.3, retries=0)
        lost = await fast.get(target, [UPS_MINUTES_REMAINING])
        assert lost.error is not None
        assert lost.error.kind is ErrorKind.TIMEOUT
        assert fast.stats.wrong_source == 1
        assert fast.stats.responses == 0

        only_stray = False  # the stray copy first, then the genuine one: the genuine one counts
        got = await fast.get(target, [UPS_MINUTES_REMAINING])
        assert got.error is None, got.error
        assert [vb.value for vb in got.varbinds] == [6000]
        assert fast.stats.wrong_source == 2
        assert fast.stats.responses == 1
    finally:
        stray.close()


def _garbage(reply: bytes) -> list[bytes]:
    """Datagrams that must not answer a request, made from the genuine ``reply``."""
    head = ber.decode_response_header(reply)
    body = bytearray(reply)
    longer = bytearray(reply)
    longer[1] += 1  # the outer SEQUENCE claims one octet more than there is
    wrong_version = bytearray(reply)
    wrong_version[4] ^= 1  # v2c <-> v1: not what was asked
    broken_varbind = bytearray(body)
    broken_varbind[head.varbinds_start] = 0x31  # a SET where a varbind SEQUENCE belongs
    return [
        b"\x00",
        b"\x30",
        b"\x30\x80\x00\x00",  # indefinite length
        bytes(random.Random(1).randbytes(60)),
        *(reply[:cut] for cut in (2, 10, len(reply) // 2, len(reply) - 1)),
        bytes(longer),
        bytes(wrong_version),
        bytes(broken_varbind),
        reply.replace(bytes((ber.RESPONSE,)), bytes((ber.GET,)), 1),  # a request, not a response
    ]


async def test_malformed_datagrams_are_dropped_and_counted(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport
) -> None:
    agent, endpoint = relay
    sent: list[bytes] = []

    def deliver(data: bytes) -> None:
        for junk in _garbage(data):
            agent.send(junk)
            sent.append(junk)
        agent.send(data)

    agent.deliver = deliver
    got = await fast.get(snmp_target(endpoint, "cetpower"), [SYS_OBJECT_ID, UPS_MINUTES_REMAINING])
    assert got.error is None, got.error
    assert [vb.value for vb in got.varbinds] == ["1.3.6.1.4.1.12551.4.0", 6000]
    assert got.requests == 1
    assert fast.stats.malformed == len(sent)
    assert fast.stats.responses == 1


def test_the_response_decoder_raises_nothing_but_ber_error_on_mutations() -> None:
    reply = ber.encode_response(
        ber.VERSION_2C,
        b"public",
        0x01234567,
        [
            ber.encode_varbind(((1, 3, 6, 1, 2, 1, 1, 2, 0), ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 9))),
            ber.encode_varbind(((1, 3, 6, 1, 2, 1, 1, 3, 0), ber.TIMETICKS, 4_000_000_000)),
            ber.encode_varbind(((1, 3, 6, 1, 2, 1, 1, 5, 0), ber.OCTET_STRING, b"x" * 200)),
        ],
    )
    rng = random.Random(7)
    decoded = 0
    for _ in range(5000):
        data = bytearray(reply)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data
        try:
            head = ber.decode_response_header(bytes(data))
            ber.decode_varbinds(bytes(data), head.varbinds_start, head.varbinds_end)
            decoded += 1
        except ber.BerError:
            pass
    assert 0 < decoded < 5000  # both outcomes were exercised


async def test_too_big_splits_a_get_into_halves(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport
) -> None:
    agent, endpoint = relay

    def small_pdus_only(req: ber.Request, _data: bytes) -> bytes | None:
        if len(req.oids) <= 5:
            return None
        return ber.encode_response(req.version, req.community, req.request_id, [], error_status=ber.TOO_BIG)

    agent.answer = small_pdus_only
    records = read_snmprec("cetpower")
    oids = [oid for oid, (tag, _) in records.items() if tag == "2"][:20]
    got = await fast.get(snmp_target(endpoint, "cetpower"), oids)
    assert got.error is None, got.error
    assert got.requests == 1 + 2 + 4  # 20 refused, 2 x 10 refused, 4 x 5 answered
    assert [vb.oid for vb in got.varbinds] == oids
    assert [vb.value for vb in got.varbinds] == [int(records[o][1]) for o in oids]


async def test_too_big_halves_the_bulk_repetitions(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport
) -> None:
    agent, endpoint = relay

    def few_repetitions(req: ber.Request, _data: bytes) -> bytes | None:
        if req.pdu_type != ber.GETBULK or req.field3 <= 8:
            return None
        return ber.encode_response(req.version, req.community, req.request_id, [], error_status=ber.TOO_BIG)

    agent.answer = few_repetitions
    root = "1.3.6.1.2.1.2.2.1.2"  # ifDescr
    expected = [oid for oid, _ in subtree("iosxe_asr920", root)]
    got = await fast.walk(snmp_target(endpoint, "iosxe_asr920", max_repetitions=25), root)
    assert got.error is None, got.error
    assert [vb.oid for vb in got.varbinds] == expected
    assert [r.field3 for r in agent.requests[:3]] == [25, 12, 6]
    assert all(r.field3 <= 6 for r in agent.requests[2:])


@pytest.mark.parametrize(
    ("status", "kind"), [(ber.GEN_ERR, ErrorKind.BAD_VALUE), (ber.NO_ACCESS, ErrorKind.AUTH)]
)
async def test_error_status_is_an_error_naming_the_oid(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport, status: int, kind: ErrorKind
) -> None:
    agent, endpoint = relay
    agent.answer = lambda req, _data: ber.encode_response(
        req.version, req.community, req.request_id, [], error_status=status, error_index=2
    )
    got = await fast.get(snmp_target(endpoint, "cetpower"), [SYS_OBJECT_ID, UPS_MINUTES_REMAINING])
    assert got.error is not None
    assert got.error.kind is kind
    name = ber.ERROR_STATUS_NAMES[status]
    assert got.error.message == f"agent answered {name} at {UPS_MINUTES_REMAINING}"
    assert got.varbinds == ()


async def test_retries_reuse_the_request_id_and_count(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport
) -> None:
    agent, endpoint = relay
    # the agent answers the first two copies with junk only, and the third for real
    agent.answer = lambda req, _data: b"\x00" if len(agent.requests) < 3 else None
    got = await fast.get(snmp_target(endpoint, "cetpower", timeout=0.2, retries=2), [UPS_MINUTES_REMAINING])
    assert got.error is None, got.error
    assert got.requests == 3
    assert len({r.request_id for r in agent.requests}) == 1
    assert fast.stats.malformed == 2  # the junk


async def test_unknown_value_type_is_a_bad_value(
    relay: tuple[_Relay, SnmpsimEndpoint], fast: FastSnmpTransport
) -> None:
    agent, endpoint = relay
    agent.answer = lambda req, _data: ber.encode_response(
        req.version,
        req.community,
        req.request_id,
        [
            ber.tlv(
                ber.SEQUENCE, ber.tlv(ber.OBJECT_IDENTIFIER, ber.encode_oid(req.oids[0])) + b"\x47\x01\x00"
            )
        ],
    )
    got = await fast.get(snmp_target(endpoint, "cetpower"), [SYS_OBJECT_ID])
    assert got.error is not None
    assert got.error.kind is ErrorKind.BAD_VALUE
    assert "0x47" in got.error.message


async def test_many_devices_many_oids_concurrently(snmpsim: SnmpsimEndpoint, fast: FastSnmpTransport) -> None:
    # 200 polls of 60 OIDs each (two PDUs apiece), all in flight at once
    stems = ["cetpower", "iosxe_asr920", "eltek-webpower", "routeros"]
    wanted = {stem: list(read_snmprec(stem))[:60] for stem in stems}
    assert all(len(oids) == 60 for oids in wanted.values())
    targets = [snmp_target(snmpsim, stems[i % len(stems)], timeout=10.0, retries=0) for i in range(200)]
    results = await asyncio.gather(
        *(fast.get(t, wanted[cast(Any, t.community).get_secret_value()]) for t in targets)
    )
    for target, resp in zip(targets, results, strict=True):
        assert resp.error is None, resp.error
        assert [vb.oid for vb in resp.varbinds] == wanted[cast(Any, target.community).get_secret_value()]
        assert resp.requests == 2
    assert fast.stats.requests == fast.stats.responses == 400
    assert fast.stats.unmatched == fast.stats.malformed == fast.stats.wrong_source == 0


async def test_walk_if_table_v2c_counts_requests_like_pysnmp(
    snmpsim: SnmpsimEndpoint, fast: FastSnmpTransport
) -> None:
    target = snmp_target(snmpsim, "iosxe_asr920", max_requests=1000)
    pysnmp = PysnmpTransport()
    try:
        theirs = await pysnmp.walk(target, IF_TABLE)
    finally:
        await pysnmp.close()
    ours = await fast.walk(target, IF_TABLE)
    assert ours == theirs
