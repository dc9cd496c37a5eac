"""ICMP echo bursts: reachability, loss, round-trip time and jitter of one device.

icmplib opens the socket (and translates the permission errors), but its ping functions are not
used for the bursts themselves, for reasons read from its source (3.0.4):

* ``async_ping`` opens one socket per call. A raw ICMP socket receives a copy of every ICMP packet
  reaching the host, so thousands of concurrent pings with one raw socket each cost O(n²) copies.
* ``AsyncSocket.receive`` matches replies on identifier and sequence only and drops the source
  address, so a reply from another host carrying the same numbers would be counted.
* it waits for each reply before sending the next request, so a lossy host stretches a burst
  to ``count × timeout`` instead of ``count × interval + timeout``.

Here one socket per address family and event loop serves every burst in flight. Requests carry
numbers from one 32-bit counter (identifier and sequence), and replies are matched on the
(source address, identifier, sequence) triple. That state belongs to whoever runs the bursts: the
daemon builds one :class:`IcmpProber` at start (``app.py``) and hands it to the parts that ping,
so nothing here is process-wide. Receive times come from the kernel
(``SO_TIMESTAMPNS``), so a busy event loop does not inflate round-trip times. The kernel stamps
on the wall clock, which NTP or an operator may step; so a round trip is measured on the monotonic
clock, and the kernel stamp only says how long the reply waited in the queue before we read it
(the wall clock's own difference over that short wait). The socket stays open only while bursts
are in flight, so nothing leaks when an event loop ends.

Anyone can send ICMP to the monitor, and a raw socket sees all of it. Every length is checked
before it is read; a packet shorter than its headers say is counted (:class:`IcmpStats`, exported
as ``uptimewatch_icmp_malformed_packets_total``) and logged at most once a minute, and nothing a
packet holds can raise out of the reader callback.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import itertools
import logging
import math
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, SocketPermissionError

from .. import executors
from ..config.models import SchedulerSettings
from ..config.resolve import ResolvedDevice
from ..export.site_series import ICMP_SERIES
from ..model.checks import ICMP_CHECKS
from ..model.fields import (
    ICMP_JITTER,
    ICMP_LOSS_RATIO,
    ICMP_RECEIVED,
    ICMP_RTT_AVG,
    ICMP_RTT_MAX,
    ICMP_RTT_MIN,
    ICMP_SENT,
)
from ..model.observation import ErrorKind, FieldValue, Observation, ProbeError
from .protocol import Protocol

log = logging.getLogger(__name__)

PROBE_NAME = "icmp"

# Linux socket options the socket module does not name.
_SO_TIMESTAMPNS = 35
_SO_RXQ_OVFL = 40
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1

_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
# errors that quote our request back: destination unreachable, time exceeded
_V4_ERRORS = frozenset({3, 11})
_V6_ERRORS = frozenset({1, 3})
_V4_UNREACH_CODES = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited",
}
_V6_UNREACH_CODES = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    3: "address unreachable",
    4: "port unreachable",
}
_TIMESTAMP = struct.Struct("=qq")
_ID_SEQ = struct.Struct("!HH")
_ECHO_HEADER = struct.Struct("!BBHHH")
_U32 = struct.Struct("=I")
_RECV_BATCH = 256  # replies read per wake-up before giving other callbacks a turn
# Replies to thousands of requests sent in one loop iteration arrive within a millisecond; the
# default 208 KiB receive buffer holds only a few hundred of them, and the rest are lost.
_RCVBUF = 16 * 1024 * 1024
# The send tick runs at most once per _TICK seconds: a request is sent up to that much later
# than its interval says (its round trip is measured from when it is sent).
_TICK = 0.0005
_SEND_RETRY = 0.002  # the socket's send queue was full: try that request again this much later
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


#: the shortest headers a packet must hold to be read: ICMP (type, code, checksum, id, sequence),
#: the IPv4 header (IHL 5) and the IPv6 one; an error must quote the IP header and 8 octets after it
_ICMP_HEADER = 8
_IPV4_HEADER = 20
_IPV6_HEADER = 40
_PROTO_ICMP = 1
_PROTO_ICMPV6 = 58
_MALFORMED_LOG_EVERY = 60.0  # seconds between two warnings about malformed packets


class _Malformed(Exception):
    """A packet too short for what its header says it holds."""


@dataclass(slots=True)
class IcmpStats:
    """What the ICMP sockets received that no burst could use: counted, and logged at most once
    a minute, because anyone on the network can send them (and a hostile sender sends thousands)."""

    malformed: int = 0
    _logged: int = 0
    _next_warning: float = 0.0

    def count_malformed(self, now: float, source: str, why: str) -> None:
        self.malformed += 1
        if now < self._next_warning:
            return
        self._next_warning = now + _MALFORMED_LOG_EVERY
        since, self._logged = self.malformed - self._logged, self.malformed
        log.warning(
            "ICMP: malformed packet from %s (%s); %d malformed since the last warning, %d in all "
            "(uptimewatch_icmp_malformed_packets_total); the next warning comes in %.0f s at the earliest",
            source,
            why,
            since,
            self.malformed,
            _MALFORMED_LOG_EVERY,
        )


# -- privilege ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IcmpPrivilege:
    """Which kind of ICMP socket this process can open."""

    privileged: bool  # raw socket (root or CAP_NET_RAW); else unprivileged datagram ICMP
    usable: bool
    message: str


def _can_open(privileged: bool) -> str | None:
    """None when the socket opens, else why not."""
    try:
        ICMPv4Socket(privileged=privileged).close()
    except SocketPermissionError:
        return "permission denied"
    except ICMPLibError as exc:
        return str(exc) or type(exc).__name__
    return None


def _ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", encoding="ascii") as f:
            return " ".join(f.read().split())
    except OSError:
        return "unknown"


def detect_privilege() -> IcmpPrivilege:
    """Find out, by opening them, which ICMP sockets work.

    Raw sockets are preferred: they also see ICMP errors (host unreachable), which unprivileged
    datagram sockets only report to connected sockets. Blocking only for a moment (two socket()
    calls and a /proc read); the daemon calls it once at start, in a thread, and keeps the answer
    in its :class:`IcmpProber`.
    """
    raw_error = _can_open(privileged=True)
    if raw_error is None:
        result = IcmpPrivilege(True, True, "raw ICMP sockets (root or CAP_NET_RAW)")
    else:
        dgram_error = _can_open(privileged=False)
        if dgram_error is None:
            result = IcmpPrivilege(
                False, True, "unprivileged ICMP datagram sockets (net.ipv4.ping_group_range)"
            )
        else:
            result = IcmpPrivilege(
                False,
                False,
                f"cannot open an ICMP socket: raw sockets: {raw_error} (needs root or CAP_NET_RAW); "
                f"datagram sockets: {dgram_error} (gid {os.getgid()} outside "
                f"net.ipv4.ping_group_range = {_ping_group_range()})",
            )
    return result


# -- packets -----------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _payload(size: int) -> tuple[bytes, int]:
    """The payload of a given size and its 16-bit one's complement sum, computed once."""
    data = bytes(i & 0xFF for i in range(size))
    padded = data + b"\x00" if size % 2 else data
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    return data, total


def _echo_request(family: int, raw: bool, ident: int, seq: int, payload_size: int) -> bytes:
    payload, payload_sum = _payload(payload_size)
    kind = _ECHO_REQUEST[family]
    checksum = 0
    # the kernel fills the checksum for ICMPv6 and for datagram sockets; raw ICMPv4 is ours
    if raw and family == socket.AF_INET:
        total = (kind << 8) + ident + seq + payload_sum
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        checksum = ~total & 0xFFFF
    return struct.pack("!BBHHH", kind, 0, checksum, ident, seq) + payload


def _strip_scope(address: str) -> str:
    return address.partition("%")[0]


# -- bursts and the shared socket --------------------------------------------------------------


class _Burst:
    """One echo burst: its requests, the replies the socket's reader callback matched to them,
    and its place on the channel's tick (the next request to send, or the deadline)."""

    __slots__ = (
        "address",
        "count",
        "done",
        "error",
        "interval",
        "keys",
        "next",
        "payload_size",
        "peer",
        "remaining",
        "rtts",
        "sent_at",
        "target",
        "timeout",
        "waiter",
    )

    def __init__(
        self,
        count: int,
        timeout: float,
        interval: float = 0.0,
        *,
        address: str = "",
        peer: str = "",
        payload_size: int = 56,
    ) -> None:
        self.count = count
        self.timeout = timeout
        self.interval = interval
        self.address = address  # as given (an IPv6 scope kept), where requests go
        self.peer = peer  # compressed, unscoped: what replies come from
        self.target: tuple[Any, ...] = (address, 0)
        self.payload_size = payload_size
        self.sent_at: list[float] = [0.0] * count
        self.rtts: list[float | None] = [None] * count
        self.keys: list[_Key] = []
        self.next = 0  # index of the next request to send; == count once all are sent
        self.remaining = 0  # sent and not yet answered
        self.error: str | None = None  # first ICMP error quoting one of our requests
        self.waiter: asyncio.Future[None] | None = None
        self.done = False  # answered, expired, failed or given up: the tick skips it

    def finish(self) -> None:
        self.done = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def resolve(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and self.next >= self.count:
            self.finish()

    def reply(self, index: int, received_at: float, read_at: float) -> None:
        """``received_at``: when the kernel queued the reply, ``read_at``: when we read it, both on
        the monotonic clock, as ``sent_at``."""
        if self.rtts[index] is not None:
            return
        sent = self.sent_at[index]
        if not sent <= received_at <= read_at:
            # the wall clock stepped between the kernel's stamp and our read: the queue wait it
            # gives is meaningless, the read time is an upper bound
            received_at = read_at
        rtt = received_at - sent
        if rtt > self.timeout:
            return  # too late: lost, like ping -W
        self.rtts[index] = max(rtt, 1e-9)
        self.resolve()

    def fail(self, exc: BurstError) -> None:
        """Stop the burst with a local failure (the socket closed, a request could not be sent)."""
        self.done = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def abort(self) -> None:
        self.fail(BurstError(ErrorKind.INTERNAL, "the ICMP socket was closed"))

    def failed(self, index: int, message: str) -> None:
        if self.error is None:
            self.error = message
        self.resolve()


_Key = tuple[str, int, int]  # (peer address, identifier, sequence)


def _grow_receive_buffer(sock: socket.socket) -> None:
    try:
        # beyond net.core.rmem_max, which needs CAP_NET_ADMIN
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RCVBUF)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)  # capped at rmem_max
        except OSError as exc:
            log.debug("ICMP receive buffer left at its default: %s", exc)


class _Channel:
    """One ICMP socket of one address family, shared by every burst of an event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        family: int,
        raw: bool,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        stats: IcmpStats | None = None,
    ) -> None:
        self.loop = loop
        self.family = family
        self.raw = raw
        self.stats = stats if stats is not None else IcmpStats()
        self.wall = wall
        self.monotonic = monotonic
        self.read_at = 0.0  # monotonic time of the packet being dispatched
        self.pending: dict[_Key, tuple[_Burst, int]] = {}
        self.users = 0
        self._icmp: ICMPv4Socket | ICMPv6Socket | None = None
        self.sock: socket.socket | None = None
        self.ident = 0  # the kernel's identifier for datagram sockets (it rewrites ours)
        self.dropped = 0  # replies the kernel dropped because our receive queue was full
        self._next_overflow_warning = 0.0
        # identifier and sequence are the two halves of one counter, so a request's numbers
        # repeat only after 2**32 requests (2**16 for datagram sockets, whose identifier the
        # kernel sets; replies are also keyed by address, so that is plenty)
        self.counter = random.getrandbits(32)
        # The tick: every burst in flight has one entry (when, burst), due when its next request
        # is to be sent or, once all are sent, when it expires. An entry is always pushed at the
        # loop's time plus a delay (an interval, a timeout, the send retry), so one FIFO per
        # delay is in time order: no heap, and the tick pops only what is due. One timer serves all.
        self._due: dict[float, collections.deque[tuple[float, _Burst]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._last_tick = -math.inf
        # per payload size: (ICMP type, its sum with the payload's for the checksum or -1, payload)
        self._packets: dict[int, tuple[int, int, bytes]] = {}

    def acquire(self) -> None:
        """Open the socket for the first burst; raises icmplib errors and OSError."""
        if self.sock is None:
            cls = ICMPv4Socket if self.family == socket.AF_INET else ICMPv6Socket
            wrapper = cls(privileged=self.raw)
            sock: socket.socket = wrapper.sock
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
                _grow_receive_buffer(sock)
                if self.raw:
                    self._filter(sock)
                else:
                    # bind now, so the identifier the kernel will stamp on our requests is known
                    sock.bind(("0.0.0.0", 0) if self.family == socket.AF_INET else ("::", 0))
                    self.ident = sock.getsockname()[1]
                self.loop.add_reader(sock.fileno(), self._on_readable)
            except BaseException:
                wrapper.close()
                raise
            self._icmp = wrapper
            self.sock = sock
        self.users += 1

    def release(self) -> None:
        if self.users == 0:
            return  # closed under the burst
        self.users -= 1
        if self.users == 0:
            # nothing in flight: close, so no socket outlives its event loop
            self.close()

    def close(self) -> None:
        """Close the socket now; the bursts still waiting fail with :class:`BurstError`."""
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            assert self._icmp is not None
            self._icmp.close()
            self._icmp = None
            self.sock = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf
        for fifo in self._due.values():
            for _when, burst in fifo:
                burst.abort()
        self._due.clear()
        for burst, _index in self.pending.values():
            burst.abort()
        self.pending.clear()
        self.users = 0

    # -- the tick: sends and deadlines of every burst in flight --------------------------------

    def start(self, burst: _Burst) -> None:
        """Send the burst's first request now and put the burst on the tick. Raises
        :class:`BurstError` when that request cannot be sent."""
        try:
            self._send(burst)
        except BlockingIOError:  # send queue full: the tick tries again
            self._push(_SEND_RETRY, burst)
        except OSError as exc:
            raise _send_error(exc, burst.address) from exc
        else:
            # after the last request, the burst expires ``timeout`` after it, as ``ping -W``
            self._push(burst.interval if burst.next < burst.count else burst.timeout, burst)

    def _send(self, burst: _Burst) -> None:
        """Send request ``burst.next``; raises OSError (nothing recorded then) or BurstError."""
        sock = self.sock
        if sock is None:  # closed under the burst
            raise BurstError(ErrorKind.INTERNAL, "the ICMP socket was closed")
        index = burst.next
        counter = self.counter = (self.counter + 1) & 0xFFFFFFFF
        ident = counter >> 16 if self.raw else self.ident
        seq = counter & 0xFFFF
        key = (burst.peer, ident, seq)
        packet = self._request(ident, seq, burst.payload_size)
        burst.sent_at[index] = self.monotonic()
        self.pending[key] = (burst, index)
        try:
            sock.sendto(packet, burst.target)
        except OSError:
            del self.pending[key]
            raise
        burst.keys.append(key)
        burst.remaining += 1
        burst.next = index + 1

    def _request(self, ident: int, seq: int, payload_size: int) -> bytes:
        """:func:`_echo_request` of this channel, its constant parts looked up once per size."""
        parts = self._packets.get(payload_size)
        if parts is None:
            payload, payload_sum = _payload(payload_size)
            kind = _ECHO_REQUEST[self.family]
            # the kernel fills the checksum for ICMPv6 and datagram sockets; raw ICMPv4 is ours
            parts = self._packets[payload_size] = (
                kind,
                (kind << 8) + payload_sum if self.raw and self.family == socket.AF_INET else -1,
                payload,
            )
        kind, partial, payload = parts
        checksum = 0
        if partial >= 0:
            total = partial + ident + seq
            total = (total & 0xFFFF) + (total >> 16)
            total = (total & 0xFFFF) + (total >> 16)
            checksum = ~total & 0xFFFF
        return _ECHO_HEADER.pack(kind, 0, checksum, ident, seq) + payload

    def _push(self, delay: float, burst: _Burst) -> None:
        """Put ``burst`` on the tick ``delay`` from now (outside the tick)."""
        when = self.loop.time() + delay
        fifo = self._due.get(delay)
        if fifo is None:
            fifo = self._due[delay] = collections.deque()
        fifo.append((when, burst))
        if when < self._timer_at:
            self._arm()

    def _arm(self) -> None:
        """Keep one timer at the first entry's time, but at most one tick per ``_TICK``: entries
        due closer together than that are served by the same tick (sent up to ``_TICK`` late)."""
        first = min((fifo[0][0] for fifo in self._due.values() if fifo), default=math.inf)
        if first == math.inf:
            return
        when = max(first, self._last_tick + _TICK)
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._tick)

    def _tick(self) -> None:
        """Send the next request of every burst that is due, expire those past their deadline."""
        self._timer = None
        self._timer_at = math.inf
        now = self._last_tick = self.loop.time()
        due = self._due
        swept = False
        try:
            # a FIFO made during this tick (a new delay) is due later: the next tick serves it
            for delay_of_fifo, fifo in list(due.items()):
                while fifo and fifo[0][0] <= now:
                    burst = fifo.popleft()[1]
                    if burst.done:
                        continue
                    if burst.next < burst.count:
                        try:
                            self._send(burst)
                        except BlockingIOError:
                            delay = _SEND_RETRY
                        except OSError as exc:
                            burst.fail(_send_error(exc, burst.address))
                            continue
                        except BurstError as exc:
                            burst.fail(exc)
                            continue
                        else:
                            delay = burst.interval if burst.next < burst.count else burst.timeout
                        later = due.get(delay)
                        if later is None:
                            later = due[delay] = collections.deque()
                        later.append((now + delay, burst))
                        continue
                    if not swept:
                        # a busy loop may not have read replies that came in time; their kernel
                        # timestamps still tell, so read what is queued before calling anything lost
                        swept = True
                        self.read(None)
                        if burst.done:
                            continue
                    burst.finish()
                if not fifo:
                    # a delay no burst waits on (a reload changed the intervals): nothing left
                    # for _arm and the later ticks to walk
                    del due[delay_of_fifo]
        finally:
            self._arm()

    def _filter(self, sock: socket.socket) -> None:
        """Let the kernel drop the ICMP types we never read (echo requests, router adverts...)."""
        try:
            if self.family == socket.AF_INET:
                wanted = (1 << 0) | (1 << 3) | (1 << 11)
                sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", ~wanted & 0xFFFFFFFF))
            else:
                words = [0xFFFFFFFF] * 8  # a set bit blocks that type
                for kind in (1, 3, 129):
                    words[kind >> 5] &= ~(1 << (kind & 31)) & 0xFFFFFFFF
                sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
        except OSError as exc:  # only an optimization
            log.debug("ICMP type filter not set: %s", exc)

    def _on_readable(self) -> None:
        self.read(_RECV_BATCH)

    def read(self, limit: int | None) -> None:
        """Read and dispatch up to ``limit`` queued packets (all of them with None)."""
        sock = self.sock
        if sock is None:
            return
        v4 = self.family == socket.AF_INET
        # the common packet, an echo reply with no IP options (raw IPv4) or none at all, is
        # matched here; anything else goes through _dispatch's checks
        reply_at, reply_type = (20, 0) if v4 and self.raw else (0, 0 if v4 else 129)
        reply_len = reply_at + _ICMP_HEADER
        recvmsg, monotonic, wall, pending = sock.recvmsg, self.monotonic, self.wall, self.pending
        unpack_id_seq = _ID_SEQ.unpack_from
        count = 0
        while limit is None or count < limit:
            count += 1
            try:
                data, ancdata, _flags, peer = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # e.g. an ICMP error queued on a datagram socket; the next read goes on
                log.debug("ICMP receive: %s", exc)
                continue
            self.read_at = read_at = received_at = monotonic()
            for level, kind, value in ancdata:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == _SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = _TIMESTAMP.unpack_from(value)
                    # how long it waited for us, on the wall clock the kernel stamps with
                    received_at -= wall() - (sec + nsec * 1e-9)
                elif kind == _SO_RXQ_OVFL and len(value) >= 4:
                    self._overflowed(_U32.unpack_from(value)[0])
            source = peer[0] if v4 else _strip_scope(peer[0])
            try:
                if (
                    len(data) >= reply_len
                    and data[reply_at] == reply_type
                    and (reply_at == 0 or data[0] == 0x45)  # IPv4, a 20-octet header
                ):
                    entry = pending.pop((source, *unpack_id_seq(data, reply_at + 4)), None)
                    if entry is not None:
                        entry[0].reply(entry[1], received_at, read_at)
                else:
                    self._dispatch(data, source, received_at)
            except _Malformed as exc:
                self.stats.count_malformed(self.read_at, source, str(exc))
            except Exception:  # a bug here must cost one packet, never the loop's reader callback
                self.stats.count_malformed(self.read_at, source, "unreadable")
                log.exception("ICMP packet of %d octets from %s could not be read", len(data), source)

    def _overflowed(self, total: int) -> None:
        if total == self.dropped:
            return
        lost, self.dropped = total - self.dropped, total
        now = self.loop.time()
        if now >= self._next_overflow_warning:
            self._next_overflow_warning = now + 60.0
            log.warning(
                "ICMP receive queue overflowed: %d replies dropped (%d in all); more echo requests "
                "are in flight than this process reads, so some loss reported now is ours",
                lost,
                total,
            )

    def _dispatch(self, data: bytes, source: str, received_at: float) -> None:
        """Match one packet to the request it answers; raises :class:`_Malformed` for a packet
        shorter than its headers say, before reading past its end."""
        v4 = self.family == socket.AF_INET
        start = 0
        if v4 and self.raw:
            # raw IPv4 sockets hand over the IP header too; the others start at the ICMP header
            start = _ip_header_length(data, 0, "IP header")
        if len(data) < start + 4:
            raise _Malformed(f"{len(data) - start} octets of ICMP header")
        kind = data[start]
        if kind == (0 if v4 else 129):
            if len(data) < start + _ICMP_HEADER:
                raise _Malformed(f"echo reply of {len(data) - start} octets")
            ident, seq = _ID_SEQ.unpack_from(data, start + 4)
            entry = self.pending.pop((source, ident, seq), None)
            if entry is not None:
                entry[0].reply(entry[1], received_at, self.read_at)
            return
        if not self.raw or kind not in (_V4_ERRORS if v4 else _V6_ERRORS):
            return
        code = data[start + 1]
        inner = start + _ICMP_HEADER  # the quoted IP header of our request
        if v4:
            quoted = _ip_header_length(data, inner, "quoted IP header") + inner
            if data[inner + 9] != _PROTO_ICMP:
                return  # it quotes a UDP or TCP packet (SNMP to a closed port...): not ours
            destination = socket.inet_ntop(socket.AF_INET, data[inner + 16 : inner + 20])
            what = _V4_UNREACH_CODES.get(code, f"unreachable (code {code})") if kind == 3 else "TTL expired"
            echo = 8
        else:
            if len(data) < inner + _IPV6_HEADER:
                raise _Malformed(f"quoted IPv6 header of {len(data) - inner} octets")
            if data[inner + 6] != _PROTO_ICMPV6:
                return  # extension headers or another protocol: not a request of ours
            destination = socket.inet_ntop(socket.AF_INET6, data[inner + 24 : inner + 40])
            quoted = inner + _IPV6_HEADER
            what = (
                _V6_UNREACH_CODES.get(code, f"unreachable (code {code})")
                if kind == 1
                else "hop limit exceeded"
            )
            echo = 128
        if len(data) < quoted + _ICMP_HEADER:
            raise _Malformed(f"{len(data) - quoted} octets of the quoted ICMP header")
        if data[quoted] != echo:
            return
        ident, seq = _ID_SEQ.unpack_from(data, quoted + 4)
        entry = self.pending.pop((destination, ident, seq), None)
        if entry is not None:
            entry[0].failed(entry[1], f"{what} (ICMP from {source})")


def _ip_header_length(data: bytes, at: int, what: str) -> int:
    """The length of the IPv4 header at ``at``, checked against the version, its minimum and the
    octets there are."""
    if len(data) < at + _IPV4_HEADER:
        raise _Malformed(f"{what} of {max(0, len(data) - at)} octets")
    first = data[at]
    if first >> 4 != 4:
        raise _Malformed(f"{what} of IP version {first >> 4}")
    length = (first & 0x0F) << 2
    if length < _IPV4_HEADER or len(data) < at + length:
        raise _Malformed(f"{what} says {length} octets, {len(data) - at} there")
    return length


class BurstError(Exception):
    """A local failure that stopped a burst; ``kind`` says which."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class BurstResult:
    address: str
    sent: int
    rtts: tuple[float, ...]  # of the replies, in request order
    error: str | None  # an ICMP error quoting one of our requests (host unreachable...)

    @property
    def received(self) -> int:
        return len(self.rtts)


class Pinger:
    """Echo bursts to any number of hosts over one socket per address family.

    Bound to the running event loop on first use; its sockets are open only while bursts are in
    flight, and :meth:`close` closes them at once (the bursts still running then fail).
    """

    def __init__(
        self,
        privileged: bool,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.privileged = privileged
        self._wall = wall
        self._monotonic = monotonic
        self._channels: dict[int, _Channel] = {}
        self.stats = IcmpStats()
        self._closed = False

    def _channel(self, family: int) -> _Channel:
        channel = self._channels.get(family)
        if channel is None:
            channel = _Channel(
                asyncio.get_running_loop(),
                family,
                self.privileged,
                wall=self._wall,
                monotonic=self._monotonic,
                stats=self.stats,
            )
            self._channels[family] = channel
        return channel

    def in_flight(self) -> int:
        """Requests sent and not yet answered, over all bursts."""
        return sum(len(c.pending) for c in self._channels.values())

    def open_sockets(self) -> int:
        return sum(c.sock is not None for c in self._channels.values())

    def close(self) -> None:
        """Close every socket; bursts in flight fail and new ones are refused."""
        self._closed = True
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    async def burst(
        self, address: str, count: int, interval: float, timeout: float, payload_size: int = 56
    ) -> BurstResult:
        """Send ``count`` echo requests ``interval`` apart, then wait up to ``timeout`` for the rest.

        ``address`` must be a numeric IP address. A reply counts when it comes from ``address``
        within ``timeout`` of its request. Raises :class:`BurstError` for local failures.
        """
        family, peer = _numeric(address)
        if self._closed:
            raise BurstError(ErrorKind.INTERNAL, "the ICMP socket was closed")
        channel = self._channel(family)
        try:
            channel.acquire()
        except SocketPermissionError as exc:
            raise BurstError(ErrorKind.PERMISSION, f"cannot open ICMP socket: {exc}") from exc
        except (ICMPLibError, OSError) as exc:
            raise BurstError(ErrorKind.INTERNAL, f"cannot open ICMP socket: {exc}") from exc
        state = _Burst(count, timeout, interval, address=address, peer=peer, payload_size=payload_size)
        try:
            if count > 0:
                state.waiter = channel.loop.create_future()
                channel.start(state)
                await state.waiter
        finally:
            state.done = True
            if state.remaining:  # requests unanswered (every answer or error took its own key)
                pending = channel.pending
                for key in state.keys:
                    pending.pop(key, None)
            channel.release()
        rtts = tuple(r for r in state.rtts if r is not None)
        return BurstResult(peer, state.next, rtts, state.error)


@lru_cache(maxsize=1 << 19)
def _numeric(address: str) -> tuple[int, str]:
    """The address family of a numeric address and its compressed form without a scope; raises
    ValueError for anything else. Cached: every burst to a device asks again."""
    ip = ipaddress.ip_address(_strip_scope(address))
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.compressed


@lru_cache(maxsize=1 << 19)
def _numeric_or_none(address: str) -> tuple[int, str] | None:
    """:func:`_numeric`, or None for a name; cached either way (``_numeric``'s errors are not)."""
    try:
        return _numeric(address)
    except ValueError:
        return None


def _send_error(exc: OSError, address: str) -> BurstError:
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return BurstError(ErrorKind.UNREACHABLE, f"cannot send to {address}: {exc.strerror}")
    if exc.errno in (errno.EPERM, errno.EACCES):
        # a local firewall rule or a broadcast address: says nothing about the device
        return BurstError(ErrorKind.PERMISSION, f"sending to {address} refused locally: {exc.strerror}")
    return BurstError(ErrorKind.INTERNAL, f"cannot send to {address}: {exc}")


# -- the probe ---------------------------------------------------------------------------------


async def _resolve(host: str) -> str:
    """A numeric address for ``host``: IPv4 first (an A lookup), then IPv6, on the DNS lane."""
    try:
        _numeric(host)
    except ValueError:
        pass
    else:
        return host
    problem = ""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found = await executors.getaddrinfo(host, None, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            problem = problem or (exc.strerror or str(exc))
            continue
        if found:
            return str(found[0][4][0])
    raise BurstError(ErrorKind.UNREACHABLE, f"cannot resolve {host!r}" + (f": {problem}" if problem else ""))


def burst_fields(sent: int, rtts: tuple[float, ...] | list[float]) -> dict[str, FieldValue]:
    """The normalized ``icmp.*`` fields of a burst; RTTs are None when nothing came back."""
    received = len(rtts)
    fields: dict[str, FieldValue] = {
        ICMP_SENT: sent,
        ICMP_RECEIVED: received,
        ICMP_LOSS_RATIO: (sent - received) / sent if sent else None,
        ICMP_RTT_MIN: min(rtts) if rtts else None,
        ICMP_RTT_AVG: sum(rtts) / received if rtts else None,
        ICMP_RTT_MAX: max(rtts) if rtts else None,
        # mean absolute difference of consecutive round trips, the RFC 3550 idea without smoothing
        ICMP_JITTER: (
            sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (received - 1) if received >= 2 else None
        ),
    }
    return fields


class IcmpProber:
    """The ICMP side of one daemon: the privilege found at its start and the one :class:`Pinger`
    every burst goes through. Built by the composition root and passed to whoever pings."""

    def __init__(
        self,
        privilege: IcmpPrivilege,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.privilege = privilege
        self.pinger = Pinger(privilege.privileged, wall=wall, monotonic=monotonic)

    @property
    def usable(self) -> bool:
        return self.privilege.usable

    @property
    def malformed_packets(self) -> int:
        """ICMP packets received too short for what their headers say, since the start."""
        return self.pinger.stats.malformed

    async def probe(self, device: ResolvedDevice) -> Observation:
        """One ICMP echo burst to ``device``, as an Observation. Never raises (but can be cancelled).

        Total loss is a result (``icmp.loss_ratio`` 1.0), not an error; errors are kept for what
        stops us from asking: no ICMP socket, an unresolvable name, no route, an ICMP unreachable.
        """
        started_at = time.time()
        t0 = time.perf_counter()
        target = device.icmp
        fields: dict[str, FieldValue] = {}
        error: ProbeError | None = None
        try:
            if target is None:
                raise BurstError(ErrorKind.INTERNAL, "ICMP is not enabled for this device")
            if not self.privilege.usable:
                raise BurstError(ErrorKind.PERMISSION, self.privilege.message)
            host = target.host
            # a numeric address (the usual case) needs no lookup, nor a coroutine to say so
            address = host if _numeric_or_none(host) is not None else await _resolve(host)
            result = await self.pinger.burst(
                address, target.count, target.interval, target.timeout, target.payload_size
            )
            fields = burst_fields(result.sent, result.rtts)
            if result.error is not None and not result.rtts:
                error = ProbeError(ErrorKind.UNREACHABLE, result.error)
        except BurstError as exc:
            error = ProbeError(exc.kind, exc.message)
        except Exception as exc:  # a bug of ours must not stop the scheduler's loop
            log.exception("ICMP probe of %s/%s failed", device.site_id, device.device_id)
            error = ProbeError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
        return Observation(
            site_id=device.site_id,
            device_id=device.device_id,
            probe=PROBE_NAME,
            started_at=started_at,
            duration_s=time.perf_counter() - t0,
            fields=fields,
            error=error,
        )

    async def answers(self, address: str) -> bool:
        """Whether ``address`` (numeric) answers a short burst: the cluster's canary check."""
        if not self.privilege.usable:
            return False
        try:
            result = await self.pinger.burst(address, 2, 0.2, 1.0)
        except (BurstError, OSError, ValueError):
            return False
        return result.received > 0

    def close(self) -> None:
        self.pinger.close()


def _icmp_concurrency(settings: SchedulerSettings) -> int:
    return settings.icmp_max_concurrency


#: ICMP's registry entry; the daemon pings through its own :class:`IcmpProber` (``probe`` None),
#: and its series (loss, round trip, jitter) are the exporter's built-in families
def _all_lost(obs: Observation) -> bool:
    loss = obs.fields.get(ICMP_LOSS_RATIO)
    return isinstance(loss, int | float) and loss >= 1.0


PROTOCOL = Protocol("icmp", ICMP_CHECKS, series=ICMP_SERIES, concurrency=_icmp_concurrency, silent=_all_lost)
