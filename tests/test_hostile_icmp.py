"""Malformed ICMP packets cost the daemon one counter increment each, never an exception.

Anyone on the network can send ICMP to the monitor, and a raw ICMP socket receives a copy of every
ICMP packet reaching the host. Here a raw socket of the test sends crafted packets to 127.0.0.1
(the kernel adds the outer IP header) while bursts are in flight: errors whose quoted IP header is
cut short (10 octets), claims more octets than it has or is no IPv4 header, errors quoting nothing
or only half of the quoted echo request. The burst still counts every real reply, each packet is counted in
``uptimewatch_icmp_malformed_packets_total``, and one warning stands for thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.test_icmp import assert_all_answered, device
from uptimewatch.app import run_daemon
from uptimewatch.model.health import SiteState
from uptimewatch.probing import icmp

pytestmark = pytest.mark.root


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_packet(kind: int, code: int, rest: bytes, body: bytes) -> bytes:
    """An ICMP message: ``rest`` is the header's last four octets (id and sequence, or unused)."""
    head = struct.pack("!BBH", kind, code, 0) + rest
    packet = head + body
    return packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]


def ipv4_header(protocol: int = 1, *, first: int = 0x45, dst: str = "127.0.0.1") -> bytes:
    """The 20 octets of an IPv4 header as an ICMP error quotes it."""
    return struct.pack(
        "!BBHHHBBH4s4s",
        first,
        0,
        84,
        1,
        0,
        64,
        protocol,
        0,
        socket.inet_aton("127.0.0.1"),
        socket.inet_aton(dst),
    )


UNUSED = b"\0\0\0\0"
UDP_TO_161 = struct.pack("!HHHH", 40000, 161, 16, 0)
ECHO_REQUEST_HEAD = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1)

#: name -> the ICMP message (without the outer IP header, which the kernel adds)
MALFORMED: dict[str, bytes] = {
    "quoted IP header of 10 octets": icmp_packet(3, 1, UNUSED, ipv4_header()[:10]),
    "error quoting nothing": icmp_packet(3, 1, UNUSED, b""),
    "TTL expired quoting 19 octets": icmp_packet(11, 0, UNUSED, ipv4_header()[:19]),
    "quoted header claims 60 octets": icmp_packet(3, 1, UNUSED, ipv4_header(first=0x4F)),
    "quoted header length 0": icmp_packet(3, 1, UNUSED, ipv4_header(first=0x40) + ECHO_REQUEST_HEAD),
    "quoted header of IP version 6": icmp_packet(3, 1, UNUSED, ipv4_header(first=0x65) + ECHO_REQUEST_HEAD),
    "quoted echo request of 4 octets": icmp_packet(3, 1, UNUSED, ipv4_header() + ECHO_REQUEST_HEAD[:4]),
}
# (an echo reply of fewer than 8 octets never arrives: the kernel's ICMP type filter on the raw
# socket drops what is too short to hold a type and a header)
#: well-formed errors that are not about us: skipped, not counted
FOREIGN: dict[str, bytes] = {
    "port unreachable quoting UDP": icmp_packet(
        3, 3, UNUSED, ipv4_header(17) + b"\x00\xa1\x00\xa1\0\x10\0\0"
    ),
    "host unreachable quoting an echo nobody sent": icmp_packet(
        3, 1, UNUSED, ipv4_header() + ECHO_REQUEST_HEAD
    ),
}


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    yield sock
    sock.close()


async def send(sock: socket.socket, packets: list[bytes]) -> None:
    """Send ``packets`` to 127.0.0.1 in slices, letting the loop read between them."""
    for i, packet in enumerate(packets):
        sock.sendto(packet, ("127.0.0.1", 0))
        if i % 100 == 99:
            await asyncio.sleep(0)


class LoopErrors:
    """What reaches the event loop's exception handler (an exception escaping a reader callback)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.seen.append(context)


@contextlib.contextmanager
def loop_errors() -> Iterator[LoopErrors]:
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(errors)
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


async def test_5000_truncated_errors_are_counted_and_logged_once(
    sender: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    prober = icmp.IcmpProber(icmp.detect_privilege())
    assert prober.privilege.privileged, "the test runs as root: the daemon's socket is raw"
    kinds = list(MALFORMED.values())
    packets = [kinds[i % len(kinds)] for i in range(5000)]
    foreign = [p for _ in range(50) for p in FOREIGN.values()]
    caplog.set_level(logging.DEBUG, logger="uptimewatch.probing.icmp")
    try:
        with loop_errors() as errors:
            target = device("127.0.0.1", count=20, interval=0.05, timeout=2.0)
            burst = asyncio.create_task(prober.probe(target))
            await wait_until(lambda: prober.pinger.open_sockets() == 1, timeout=5, interval=0.005)
            await send(sender, packets + foreign)
            obs = await burst
        assert errors.seen == [], errors.seen
        assert_all_answered(obs, 20, 2.0)
        assert prober.malformed_packets == len(packets) == 5000
    finally:
        prober.close()
    icmp_records = [r for r in caplog.records if r.name == "uptimewatch.probing.icmp"]
    assert [r.levelname for r in icmp_records] == ["WARNING"], [r.getMessage() for r in icmp_records]
    message = icmp_records[0].getMessage()
    assert message.startswith("ICMP: malformed packet from 127.0.0.1 ("), message
    assert "1 in all" in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("name", MALFORMED)
async def test_each_malformed_kind_is_counted(name: str, sender: socket.socket) -> None:
    prober = icmp.IcmpProber(icmp.detect_privilege())
    try:
        with loop_errors() as errors:
            burst = asyncio.create_task(prober.probe(device("127.0.0.1", count=5, interval=0.05)))
            await wait_until(lambda: prober.pinger.open_sockets() == 1, timeout=5, interval=0.005)
            await send(sender, [MALFORMED[name]] * 3)
            obs = await burst
        assert errors.seen == []
        assert_all_answered(obs, 5, 1.0)
        assert prober.malformed_packets == 3
    finally:
        prober.close()


def test_a_well_formed_error_quoting_a_request_in_flight_still_fails_it() -> None:
    """The checks let through what they must: a host unreachable quoting our request, as the
    kernel hands it to a raw socket (outer IP header first), fails that request with its reason."""
    loop = asyncio.new_event_loop()
    try:
        channel = icmp._Channel(loop, socket.AF_INET, raw=True)
        burst = icmp._Burst(1, 1.0)
        channel.pending[("192.0.2.7", 0x1234, 1)] = (burst, 0)
        quoted = ipv4_header(dst="192.0.2.7") + ECHO_REQUEST_HEAD
        packet = ipv4_header() + icmp_packet(3, 1, UNUSED, quoted)
        channel._dispatch(packet, "10.0.0.1", 0.0)
        assert channel.pending == {}
        assert burst.error == "host unreachable (ICMP from 10.0.0.1)"
        assert channel.stats.malformed == 0
        # cut the quoted request short and the same packet is malformed, before any lookup
        channel.pending[("192.0.2.7", 0x1234, 1)] = (burst, 0)
        with pytest.raises(icmp._Malformed, match="4 octets of the quoted ICMP header"):
            channel._dispatch(packet[:-4], "10.0.0.1", 0.0)
        assert len(channel.pending) == 1
    finally:
        loop.close()


async def test_the_daemon_counts_them_and_its_site_stays_up(tmp_path: Path, sender: socket.socket) -> None:
    site = {
        "id": "s1",
        "name": "Trạm s1",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [{"id": "router", "role": "router", "address": "127.0.0.1", "snmp_enabled": False}],
    }
    defaults = {
        "interval": "1s",
        "timeout": "3s",
        "hard_after": 1,
        "icmp": {"enabled": True, "count": 10, "interval": "0.1s", "timeout": "1s"},
    }
    data = province_config([site], listen=f"127.0.0.1:{free_tcp_port()}", defaults=defaults)
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    config = write_yaml(tmp_path / "config.yaml", data)
    async with run_daemon(config) as daemon, aiohttp.ClientSession() as http:

        async def metric() -> float:
            async with http.get(f"{daemon.url}/metrics") as resp:
                text = await resp.text()
            name = "uptimewatch_icmp_malformed_packets_total"
            lines = [line for line in text.splitlines() if line.startswith(name)]
            assert len(lines) == 1, lines
            return float(lines[0].split()[-1])

        await wait_until(lambda: daemon.snapshot().sites["s1"].state is SiteState.UP, timeout=30)
        assert await metric() == 0
        with loop_errors() as errors:
            for _ in range(30):  # bursts come and go: some of these land while a socket is open
                await send(sender, list(MALFORMED.values()) * 20)
                await asyncio.sleep(0.1)
                assert daemon.snapshot().sites["s1"].state is SiteState.UP, daemon.snapshot().sites["s1"]
        assert errors.seen == []
        assert await metric() > 0
        assert daemon.snapshot().sites["s1"].state is SiteState.UP
