"""An SNMP reply that does not answer the request is a problem ("bad reply"), not a healthy device
whose fields are all null: one varbind whose OID has 20,000 sub-identifiers, the right count of
varbinds naming other OIDs, fewer or more varbinds than asked.

The agent is crafted here: a UDP responder that reads each GET and answers it the way its mode
says, in BER written by hand (not by the project's codec, which is under test). Both transports
(the own codec and pysnmp) go through the shared driver, so both are tried; then the daemon polls
such an agent and shows the device as not up on SNMP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.snmpsim import SnmpsimEndpoint, snmp_target
from uptimewatch.app import run_daemon
from uptimewatch.model.checks import CheckState
from uptimewatch.model.health import SiteState
from uptimewatch.model.observation import ErrorKind
from uptimewatch.probing import ber
from uptimewatch.probing.snmp_fast import FastSnmpTransport
from uptimewatch.probing.snmp_transport import PysnmpTransport
from uptimewatch.probing.snmp_types import SnmpTransport

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
ASKED = [SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME]
LONG_OID = (1, 3, 6, 1, *([1] * 19_996))  # 20,000 sub-identifiers


# -- BER by hand ------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def oid_content(arcs: tuple[int, ...]) -> bytes:
    out = bytearray()
    for arc in (arcs[0] * 40 + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the element at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return tag, pos + 2 + n, pos + 2 + n + length


def parse_get(message: bytes) -> tuple[bytes, bytes, bytes, list[bytes]]:
    """(version, community, request-id element, OIDs' content octets) of a v1/v2c GET."""
    _, pos, _ = read(message, 0)
    _, s, e = read(message, pos)
    version = message[pos:e]
    _, s, e2 = read(message, e)
    community = message[e:e2]
    tag, pos, _ = read(message, e2)
    assert tag == 0xA0, f"not a GET: 0x{tag:02x}"
    _, s, e = read(message, pos)
    request_id = message[pos:e]
    _, _, e = read(message, e)  # error-status
    _, _, e = read(message, e)  # error-index
    _, pos, end = read(message, e)  # the varbind list
    oids = []
    while pos < end:
        _, vb, vb_end = read(message, pos)
        _, s, e = read(message, vb)
        oids.append(message[s:e])
        pos = vb_end
    return version, community, request_id, oids


def response(
    version: bytes, community: bytes, request_id: bytes, varbinds: list[tuple[bytes, bytes]]
) -> bytes:
    """A GetResponse: ``varbinds`` are (OID content, encoded value)."""
    body = b"".join(tlv(0x30, tlv(0x06, oid) + value) for oid, value in varbinds)
    pdu = request_id + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, body)
    return tlv(0x30, version + community + tlv(0xA2, pdu))


INTEGER_1 = tlv(0x02, b"\x01")


def _other(oid: bytes) -> bytes:
    return oid[:-1] + bytes([oid[-1] + 1])  # the next instance: a name nobody asked for


MODES: dict[str, Callable[[list[bytes]], list[tuple[bytes, bytes]]]] = {
    "honest": lambda asked: [(oid, INTEGER_1) for oid in asked],
    "long-oid": lambda asked: [(oid_content(LONG_OID), INTEGER_1)],
    "other-oids": lambda asked: [(_other(oid), INTEGER_1) for oid in asked],
    "fewer": lambda asked: [(asked[0], INTEGER_1)],
    "more": lambda asked: [*((oid, INTEGER_1) for oid in asked), (_other(asked[-1]), INTEGER_1)],
    "reordered": lambda asked: [(oid, INTEGER_1) for oid in reversed(asked)],
}


class CraftedAgent(asyncio.DatagramProtocol):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.requests += 1
        version, community, request_id, asked = parse_get(data)
        self.transport.sendto(response(version, community, request_id, MODES[self.mode](asked)), addr)


@contextlib.asynccontextmanager
async def crafted_agent(mode: str) -> AsyncIterator[tuple[CraftedAgent, SnmpsimEndpoint]]:
    loop = asyncio.get_running_loop()
    agent = CraftedAgent(mode)
    transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", 0))
    port = int(transport.get_extra_info("sockname")[1])
    try:
        yield agent, SnmpsimEndpoint("127.0.0.1", port, Path())
    finally:
        transport.close()


TRANSPORTS: dict[str, Callable[[], SnmpTransport]] = {
    "own-codec": FastSnmpTransport,
    "pysnmp": PysnmpTransport,
}


# -- the codec --------------------------------------------------------------------------------------


def test_the_codec_reads_the_largest_sub_identifiers_snmp_carries() -> None:
    assert ber.decode_oid(oid_content((1, 3, 2**32 - 1))) == (1, 3, 2**32 - 1)
    assert ber.decode_oid(oid_content((2, 2**32 - 1, 5))) == (2, 2**32 - 1, 5)


@pytest.mark.parametrize(
    "content",
    [
        oid_content((1, 3, 2**32)),  # one past the largest, ending in a final octet
        oid_content((2, 2**32, 5)),  # the first two arcs' shared sub-identifier
        b"\x2b" + b"\xff" * 60_000 + b"\x01",  # one arc of 420,000 bits
    ],
    ids=["2^32", "first-arcs-2^32", "60k-continuation-octets"],
)
def test_the_codec_refuses_a_sub_identifier_above_2_32_minus_1(content: bytes) -> None:
    with pytest.raises(ber.BerError, match="sub-identifier above 2\\^32-1"):
        ber.decode_oid(content)


# -- both transports ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_an_honest_reply_is_read(transport_name: str) -> None:
    async with crafted_agent("honest") as (agent, endpoint):
        transport = TRANSPORTS[transport_name]()
        try:
            got = await transport.get(snmp_target(endpoint, "public"), ASKED)
        finally:
            await transport.close()
    assert got.error is None
    assert [(vb.oid, vb.value) for vb in got.varbinds] == [(oid, 1) for oid in ASKED]
    assert agent.requests == 1


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("long-oid", "3 OID(s) asked, 1 varbind(s) answered"),
        ("fewer", "3 OID(s) asked, 1 varbind(s) answered"),
        ("more", "3 OID(s) asked, 4 varbind(s) answered"),
        ("other-oids", f"varbind 1 of 3 names 1.3.6.1.2.1.1.1.1, not the {SYS_DESCR} asked"),
        ("reordered", f"varbind 1 of 3 names {SYS_UPTIME}, not the {SYS_DESCR} asked"),
    ],
)
@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_a_reply_that_does_not_answer_the_request_is_a_bad_reply(
    transport_name: str, mode: str, why: str
) -> None:
    async with crafted_agent(mode) as (agent, endpoint):
        transport = TRANSPORTS[transport_name]()
        try:
            got = await transport.get(snmp_target(endpoint, "public", retries=0), ASKED)
        finally:
            await transport.close()
    assert agent.requests == 1, "a bad reply is an answer: nothing to resend"
    assert got.varbinds == ()
    assert got.error is not None
    assert got.error.kind is ErrorKind.BAD_REPLY
    assert got.error.message == f"bad reply from 127.0.0.1:{endpoint.port}: {why}"


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_the_long_oid_is_named_briefly_when_it_stands_where_another_was_asked(
    transport_name: str,
) -> None:
    async with crafted_agent("long-oid") as (_agent, endpoint):
        transport = TRANSPORTS[transport_name]()
        try:
            got = await transport.get(snmp_target(endpoint, "public", retries=0), [SYS_DESCR])
        finally:
            await transport.close()
    assert got.error is not None
    assert got.error.kind is ErrorKind.BAD_REPLY
    assert got.error.message.endswith(
        f"varbind 1 of 1 names 1.3.6.1.1.1.1.1.1.1.1.1... (20000 sub-identifiers), not the {SYS_DESCR} asked"
    ), got.error.message


# -- the daemon -----------------------------------------------------------------------------------------


async def test_the_daemon_shows_a_device_answering_other_oids_as_not_up(tmp_path: Path) -> None:
    async with crafted_agent("long-oid") as (agent, endpoint):
        site = {
            "id": "s1",
            "name": "Trạm s1",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "ups",
                    "role": "power",
                    "address": "127.0.0.1",
                    "profile": "ups-mib",
                    "snmp": {"port": endpoint.port, "community": "public", "timeout": "0.5s", "retries": 0},
                }
            ],
        }
        data = province_config(
            [site],
            listen=f"127.0.0.1:{free_tcp_port()}",
            defaults={"interval": "1s", "timeout": "3s", "hard_after": 1, "icmp": {"enabled": False}},
        )
        data["storage"] = {"path": str(tmp_path / "state.sqlite")}
        data["server"]["metrics_detail"] = "full"  # uptimewatch_snmp_up is read below
        config = write_yaml(tmp_path / "config.yaml", data)
        async with run_daemon(config) as daemon:

            def polled() -> bool:
                return bool(daemon.snapshot().sites["s1"].devices[0].probes)

            await wait_until(polled, timeout=30)
            snap = daemon.snapshot()
            site_status = snap.sites["s1"]
            device = site_status.devices[0]
            assert site_status.state is not SiteState.UP
            check = device.check("snmp.reachable")
            assert check is not None
            assert check.state is CheckState.CRITICAL
            assert str(check.reason).startswith("SNMP reply does not match the request: bad reply from")
            assert device.probes["snmp"].error_kind is ErrorKind.BAD_REPLY

            async with aiohttp.ClientSession() as http:
                async with http.get(f"{daemon.url}/metrics") as resp:
                    metrics = await resp.text()
                async with http.get(f"{daemon.url}/api/v1/sites/s1") as resp:
                    api = json.loads(await resp.text())
            up = [line for line in metrics.splitlines() if line.startswith("uptimewatch_snmp_up{")]
            assert up
            assert all(line.endswith((" 0.0", " 0")) for line in up), up
            assert api["state"] != "up"
            assert "SNMP reply does not match the request" in api["reason"], api
            assert agent.requests >= 1
