"""SNMP v1/v2c over UDP with the project's own BER codec (:mod:`.ber`): the :class:`SnmpTransport` the
daemon polls community-based devices through; SNMPv3 stays with pysnmp (see
:class:`CompositeSnmpTransport` and ``snmp_transport.create_transport``).

The benchmark found pysnmp/pyasn1 spending ~60% of the CPU of a poll cycle encoding and decoding
messages. Here a request is a prebuilt message with only its request id patched in, and a response
goes from bytes to :class:`Varbind` in one pass. Everything else follows :class:`PysnmpTransport`
exactly: the same value typing, PDU splitting, walk caps and problem wording, retries counted in
``requests``, and failures as data.

One UDP socket per address family serves every request. Replies are matched by request id, then by
source address and port, so a datagram from anywhere else cannot answer a poll; whatever does not
parse is dropped and counted in :attr:`FastSnmpTransport.stats`, never raised into the loop.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import random
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from .. import executors
from ..config.models import SnmpVersion
from ..config.resolve import SnmpTarget
from ..model.observation import ErrorKind, ProbeError
from . import ber
from .snmp_types import SnmpResponse, SnmpTransport, SnmpType, Varbind

log = logging.getLogger(__name__)

#: Varbinds per GET PDU, as the pysnmp transport splits them (see its MAX_VARBINDS_PER_PDU).
MAX_VARBINDS_PER_PDU: Final = 40
#: A poll burst of thousands of devices answers at once; the default ~200 KiB buffer drops replies.
RECEIVE_BUFFER_BYTES: Final = 4 * 1024 * 1024
#: Prebuilt requests are kept for this many (community, version, OID list) combinations.
_TEMPLATE_CACHE_SIZE: Final = 4096
#: Dotted forms of response OIDs: a poll cycle asks the same few hundred OIDs of every device.
_OID_CACHE_SIZE: Final = 65_536

# outcomes of one exchange that are not an agent's error-status (those are >= 0)
_TIMED_OUT: Final = -1
_CLOSED: Final = -2
_CLOSED_MESSAGE: Final = "transport closed"
_ACCESS_ERRORS: Final = frozenset({6, 16})  # noAccess, authorizationError: a view or ACL says no
_VERSION_NUMBER: Final = {SnmpVersion.V1: ber.VERSION_1, SnmpVersion.V2C: ber.VERSION_2C}

_UNSIGNED: Final = {
    ber.COUNTER32: SnmpType.COUNTER32,
    ber.GAUGE32: SnmpType.GAUGE32,
    ber.TIMETICKS: SnmpType.TIMETICKS,
    ber.COUNTER64: SnmpType.COUNTER64,
}
_EMPTY: Final = {
    ber.NULL: SnmpType.NULL,
    ber.NO_SUCH_OBJECT: SnmpType.NO_SUCH_OBJECT,
    ber.NO_SUCH_INSTANCE: SnmpType.NO_SUCH_INSTANCE,
    ber.END_OF_MIB_VIEW: SnmpType.END_OF_MIB_VIEW,
}

_Reply = tuple[int, int, list[ber.RawVarbind]]  # error-status (or _TIMED_OUT/_CLOSED), index, varbinds


class _BadValue(Exception):
    """A response value the SNMPv2-SMI types cannot hold."""


@dataclass(slots=True)
class FastTransportStats:
    """Counters since the transport was built (for diagnostics and tests)."""

    requests: int = 0  # PDUs sent, retries included
    responses: int = 0  # replies matched to a request
    timeouts: int = 0  # exchanges that got no reply after all their attempts
    malformed: int = 0  # datagrams that are no v1/v2c Response, or not the version asked
    unmatched: int = 0  # responses to no pending request: late, duplicated or stray
    wrong_source: int = 0  # a pending request id, from an address or port it was not sent to


def _oid_key(oid: str) -> str:
    return oid.strip().lstrip(".")


def _describe(target: SnmpTarget) -> str:
    """For logs and messages: never a secret, only where and how."""
    return f"{target.host}:{target.port} (SNMPv{target.version.value}, community)"


@dataclass(frozen=True, slots=True)
class _Chunk:
    """The OIDs of one GET PDU and the message asking for them."""

    oids: tuple[str, ...]
    encoded: tuple[bytes, ...]
    template: ber.RequestTemplate


class _Endpoint(asyncio.DatagramProtocol):
    """The socket of one address family; every datagram goes straight to the transport."""

    def __init__(self, owner: FastSnmpTransport, family: int) -> None:
        self.owner = owner
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport, but is one
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # unconnected UDP: the kernel cannot say which request failed; that request times out
        log.debug("SNMP socket error: %s", exc)


@dataclass(frozen=True, slots=True)
class _Peer:
    host: str  # the address replies must come from, as the kernel reports it
    port: int
    sockaddr: tuple[Any, ...]
    endpoint: _Endpoint


@dataclass(slots=True, eq=False)
class _Pending:
    """One request on the wire, until its reply, its last timeout, cancellation or close."""

    fut: asyncio.Future[_Reply]
    peer: _Peer
    payload: bytes
    request_id: int
    version: int
    attempts: int
    timeout: float
    sent: int = 0
    timer: asyncio.TimerHandle | None = None


def _chunk(community: bytes, version: int, oids: tuple[str, ...], encoded: tuple[bytes, ...]) -> _Chunk:
    return _Chunk(oids, encoded, ber.request_template(version, community, ber.GET, encoded))


class FastSnmpTransport:
    """:class:`SnmpTransport` for SNMP v1 and v2c. One instance serves all polls of an event loop."""

    def __init__(
        self,
        *,
        max_varbinds_per_pdu: int = MAX_VARBINDS_PER_PDU,
        receive_buffer: int = RECEIVE_BUFFER_BYTES,
    ) -> None:
        self._max_varbinds = max_varbinds_per_pdu
        self._receive_buffer = receive_buffer
        self._endpoints: dict[int, _Endpoint] = {}
        self._peers: dict[tuple[str, int], _Peer] = {}
        self._pending: dict[int, _Pending] = {}
        self._templates: collections.OrderedDict[tuple[object, ...], tuple[_Chunk, ...]] = (
            collections.OrderedDict()
        )
        self._oid_strings: dict[bytes, str] = {}
        self._setup_lock = asyncio.Lock()
        # a random start, so that a restarted daemon does not take late replies meant for its
        # previous life as answers
        self._next_id = random.randint(ber.REQUEST_ID_MIN, ber.REQUEST_ID_MAX)
        self._closed = False
        self._logged_buffer = False
        self.stats = FastTransportStats()
        #: the receive buffer the kernel granted the first socket (bytes, as getsockopt reports it)
        self.receive_buffer_granted: int | None = None

    # -- SnmpTransport ---------------------------------------------------------------------------

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        if not oids:
            return SnmpResponse()
        try:
            peer = self._peers.get((target.host, target.port))
            if peer is None or target.community is None or target.version is SnmpVersion.V3:
                found = await self._peer(target)
                if isinstance(found, ProbeError):
                    return SnmpResponse(error=found)
                peer = found
            return await self._get(peer, target, tuple(oids))
        except (_BadValue, ber.BerError) as exc:
            return SnmpResponse(error=self._bad_value(target, exc))
        except Exception:
            log.exception("SNMP GET to %s failed unexpectedly", _describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, "unexpected error in SNMP GET"))

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        try:
            peer = self._peers.get((target.host, target.port))
            if peer is None or target.community is None or target.version is SnmpVersion.V3:
                found = await self._peer(target)
                if isinstance(found, ProbeError):
                    return SnmpResponse(error=found)
                peer = found
            return await self._walk(peer, target, _oid_key(root))
        except (_BadValue, ber.BerError) as exc:
            return SnmpResponse(error=self._bad_value(target, exc))
        except Exception:
            log.exception("SNMP walk of %s on %s failed unexpectedly", root, _describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, "unexpected error in SNMP walk"))

    async def close(self) -> None:
        self._closed = True
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.fut.done():
                entry.fut.set_result((_CLOSED, 0, []))
        endpoints, self._endpoints = self._endpoints, {}
        self._peers.clear()
        for endpoint in endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        # let the loop run the close callbacks, so the sockets are really gone when this returns
        await asyncio.sleep(0)

    # -- GET -------------------------------------------------------------------------------------

    def _chunks(self, target: SnmpTarget, oids: tuple[str, ...]) -> tuple[_Chunk, ...]:
        # keyed by the SecretStr itself: it hashes and compares by value without showing it
        key = (target.community, target.version, oids)
        cached = self._templates.get(key)
        if cached is not None:
            self._templates.move_to_end(key)
            return cached
        assert target.community is not None
        community = target.community.get_secret_value().encode()
        version = _VERSION_NUMBER[target.version]
        names = tuple(_oid_key(o) for o in oids)
        encoded = tuple(ber.encode_oid(ber.parse_oid(name)) for name in names)
        step = self._max_varbinds
        chunks = tuple(
            _chunk(community, version, names[i : i + step], encoded[i : i + step])
            for i in range(0, len(names), step)
        )
        self._templates[key] = chunks
        if len(self._templates) > _TEMPLATE_CACHE_SIZE:
            self._templates.popitem(last=False)
        return chunks

    async def _get(self, peer: _Peer, target: SnmpTarget, oids: tuple[str, ...]) -> SnmpResponse:
        queue = collections.deque(self._chunks(target, oids))
        v1 = target.version is SnmpVersion.V1
        out: list[Varbind] = []
        missing_v1: list[Varbind] = []
        requests = 0
        while queue:
            chunk = queue.popleft()
            status, index, raw, sent = await self._exchange(
                peer, target, chunk.template.with_id, attempts=target.retries + 1
            )
            requests += sent
            if status < 0:
                return SnmpResponse(error=self._no_answer(status, target, sent), requests=requests)
            if status == ber.TOO_BIG and len(chunk.oids) > 1:
                # the agent cannot fit the answer in one message: ask in halves
                half = len(chunk.oids) // 2
                community = self._community(target)
                version = _VERSION_NUMBER[target.version]
                queue.appendleft(_chunk(community, version, chunk.oids[half:], chunk.encoded[half:]))
                queue.appendleft(_chunk(community, version, chunk.oids[:half], chunk.encoded[:half]))
                continue
            if status == ber.NO_SUCH_NAME and v1 and 0 < index <= len(chunk.oids):
                # SNMPv1 fails the whole PDU for one absent OID; ask again without it, as net-snmp
                # does, so v1 devices answer like v2c ones (absent OIDs typed noSuchObject)
                missing_v1.append(Varbind(chunk.oids[index - 1], SnmpType.NO_SUCH_OBJECT, None))
                rest_oids = chunk.oids[: index - 1] + chunk.oids[index:]
                if rest_oids:
                    rest_encoded = chunk.encoded[: index - 1] + chunk.encoded[index:]
                    community = self._community(target)
                    queue.appendleft(
                        _chunk(community, ber.VERSION_1, rest_oids, rest_encoded),
                    )
                continue
            if status:
                return SnmpResponse(error=self._status_error(status, index, chunk.oids), requests=requests)
            convert = self._varbind
            out.extend([convert(vb) for vb in raw])
        if missing_v1:
            order = {_oid_key(o): i for i, o in enumerate(oids)}
            out.extend(missing_v1)
            out.sort(key=lambda vb: order.get(vb.oid, len(order)))
        return SnmpResponse(varbinds=tuple(out), requests=requests)

    # -- walk ------------------------------------------------------------------------------------

    async def _walk(self, peer: _Peer, target: SnmpTarget, root: str) -> SnmpResponse:
        root_t = ber.parse_oid(root)
        cursor_raw = ber.encode_oid(root_t)
        cursor = root
        depth = len(root_t)
        last_t = root_t
        bulk = target.version is not SnmpVersion.V1
        version = _VERSION_NUMBER[target.version]
        community = self._community(target)
        repetitions = target.max_repetitions
        out: list[Varbind] = []
        problems: list[str] = []
        requests = 0
        truncated = False
        while True:
            budget = target.max_requests - requests
            if budget <= 0:
                truncated = True
                problems.append(
                    f"walk of {root} stopped at max_requests={target.max_requests} after {len(out)} rows"
                )
                break
            if bulk:
                # one more than the rows still allowed, to tell a full table from a cut one
                reps = max(1, min(repetitions, target.max_rows - len(out) + 1))
                template = ber.request_template(version, community, ber.GETBULK, (cursor_raw,), field3=reps)
            else:
                template = ber.request_template(version, community, ber.GETNEXT, (cursor_raw,))
            status, index, raw, sent = await self._exchange(
                peer, target, template.with_id, attempts=min(budget, target.retries + 1)
            )
            requests += sent
            if status < 0:
                error = self._no_answer(status, target, sent)
                if out:
                    problems.append(f"walk of {root} failed after {len(out)} rows: {error.message}")
                return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
            if status == ber.NO_SUCH_NAME and not bulk:
                break  # SNMPv1's end of the MIB view
            if status == ber.TOO_BIG and bulk and repetitions > 1:
                repetitions = max(1, repetitions // 2)
                continue
            if status:
                error = self._status_error(status, index, (cursor,))
                return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
            if not raw:
                problems.append(f"walk of {root} stopped: empty response after {len(out)} rows")
                break
            done = False
            for vb in raw:
                oid_raw, tag, _content = vb
                name_t = ber.decode_oid(oid_raw)
                if name_t[:depth] != root_t or tag == ber.END_OF_MIB_VIEW:
                    done = True
                    break
                if name_t <= last_t:
                    name = ber.format_oid(name_t)
                    problems.append(f"walk of {root} stopped: OID did not increase ({name} after {cursor})")
                    done = True
                    break
                if len(out) >= target.max_rows:
                    truncated = True
                    problems.append(f"walk of {root} stopped at max_rows={target.max_rows}")
                    done = True
                    break
                varbind = self._varbind(vb)
                out.append(varbind)
                last_t = name_t
                cursor = varbind.oid
                cursor_raw = oid_raw
            if done:
                break
        return SnmpResponse(tuple(out), None, requests, truncated, tuple(problems))

    # -- values ----------------------------------------------------------------------------------

    def _oid_string(self, raw: bytes) -> str:
        cache = self._oid_strings
        text = cache.get(raw)
        if text is None:
            text = ber.format_oid(ber.decode_oid(raw))
            if len(cache) >= _OID_CACHE_SIZE:
                cache.clear()
            cache[raw] = text
        return text

    def _varbind(self, raw: ber.RawVarbind) -> Varbind:
        """One wire varbind as plain data, typed as snmp_types documents (as the pysnmp path types it)."""
        oid_raw, tag, content = raw
        oid = self._oid_string(oid_raw)
        if tag == ber.INTEGER:
            if not content:
                raise _BadValue(f"empty INTEGER at {oid}")
            return Varbind(oid, SnmpType.INTEGER, int.from_bytes(content, "big", signed=True))
        if tag == ber.OCTET_STRING:
            return Varbind(oid, SnmpType.OCTET_STRING, content)
        kind = _UNSIGNED.get(tag)
        if kind is not None:
            if not content or len(content) > 9:
                raise _BadValue(f"{kind.value} of {len(content)} octets at {oid}")
            # unsigned even without the leading zero octet some agents leave out
            return Varbind(oid, kind, int.from_bytes(content, "big"))
        kind = _EMPTY.get(tag)
        if kind is not None:
            return Varbind(oid, kind, None)
        if tag == ber.OBJECT_IDENTIFIER:
            return Varbind(oid, SnmpType.OID, self._oid_string(content))
        if tag == ber.IPADDRESS:
            text = socket.inet_ntoa(content) if len(content) == 4 else ".".join(str(b) for b in content)
            return Varbind(oid, SnmpType.IPADDRESS, text)
        if tag == ber.OPAQUE:
            return Varbind(oid, SnmpType.OPAQUE, content)
        raise _BadValue(f"unknown SNMP value type 0x{tag:02x} at {oid}")

    # -- one request -----------------------------------------------------------------------------

    async def _exchange(
        self, peer: _Peer, target: SnmpTarget, message: Callable[[int], bytes], *, attempts: int
    ) -> tuple[int, int, list[ber.RawVarbind], int]:
        """Send ``message(request_id)``, and again on timeout up to ``attempts`` PDUs in all (with the
        same request id, so a slow agent's answer to an earlier one still counts). Returns the
        error-status (or _TIMED_OUT / _CLOSED), error-index, raw varbinds and the PDUs sent."""
        if self._closed:
            return _CLOSED, 0, [], 0
        request_id = self._request_id()
        fut: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        entry = _Pending(
            fut,
            peer,
            message(request_id),
            request_id,
            _VERSION_NUMBER[target.version],
            attempts,
            target.timeout,
        )
        self._pending[request_id] = entry
        self._transmit(entry)
        try:
            status, index, raw = await fut
        except asyncio.CancelledError:
            # the caller's deadline: forget the request, a late reply is then merely unmatched
            if self._pending.get(request_id) is entry:
                del self._pending[request_id]
            if entry.timer is not None:
                entry.timer.cancel()
            raise
        return status, index, raw, entry.sent

    def _request_id(self) -> int:
        request_id = self._next_id
        pending = self._pending
        while True:
            request_id = request_id + 1 if request_id < ber.REQUEST_ID_MAX else ber.REQUEST_ID_MIN
            if request_id not in pending:
                self._next_id = request_id
                return request_id

    def _transmit(self, entry: _Pending) -> None:
        peer = entry.peer
        transport = peer.endpoint.transport
        if transport is not None:
            transport.sendto(entry.payload, peer.sockaddr)
        entry.sent += 1
        self.stats.requests += 1
        entry.timer = asyncio.get_running_loop().call_later(entry.timeout, self._expire, entry)

    def _expire(self, entry: _Pending) -> None:
        if self._pending.get(entry.request_id) is not entry:
            return
        if entry.sent < entry.attempts:
            self._transmit(entry)
            return
        del self._pending[entry.request_id]
        self.stats.timeouts += 1
        if not entry.fut.done():
            entry.fut.set_result((_TIMED_OUT, 0, []))

    def _received(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        try:
            head = ber.decode_response_header(data)
            entry = self._pending.get(head.request_id)
            if entry is None:
                stats.unmatched += 1
                return
            peer = entry.peer
            if addr[1] != peer.port or (addr[0] != peer.host and not _same_host(addr[0], peer.host)):
                stats.wrong_source += 1
                return
            if head.version != entry.version:
                stats.malformed += 1
                return
            varbinds = ber.decode_varbinds(data, head.varbinds_start, head.varbinds_end)
        except ber.BerError:
            stats.malformed += 1
            return
        except Exception:  # a codec bug must cost one datagram, not the loop's callback
            stats.malformed += 1
            log.exception("SNMP response from %s could not be read", addr[0] if addr else "?")
            return
        del self._pending[head.request_id]
        if entry.timer is not None:
            entry.timer.cancel()
        stats.responses += 1
        if not entry.fut.done():
            entry.fut.set_result((head.error_status, head.error_index, varbinds))

    # -- errors ----------------------------------------------------------------------------------

    @staticmethod
    def _no_answer(status: int, target: SnmpTarget, sent: int) -> ProbeError:
        if status == _CLOSED:
            return ProbeError(ErrorKind.INTERNAL, _CLOSED_MESSAGE)
        return ProbeError(
            ErrorKind.TIMEOUT,
            f"no response from {target.host}:{target.port} after {sent} request(s) of {target.timeout:g} s",
        )

    @staticmethod
    def _status_error(status: int, index: int, oids: Sequence[str]) -> ProbeError:
        names = ber.ERROR_STATUS_NAMES
        name = names[status] if 0 <= status < len(names) else f"error {status}"
        where = f" at {oids[index - 1]}" if 0 < index <= len(oids) else ""
        if status == ber.NO_SUCH_NAME:
            kind = ErrorKind.NO_SUCH_OBJECT
        elif status in _ACCESS_ERRORS:
            kind = ErrorKind.AUTH
        else:
            kind = ErrorKind.BAD_VALUE
        return ProbeError(kind, f"agent answered {name}{where}")

    @staticmethod
    def _bad_value(target: SnmpTarget, exc: Exception) -> ProbeError:
        return ProbeError(ErrorKind.BAD_VALUE, f"SNMP response from {target.host}:{target.port}: {exc}")

    @staticmethod
    def _community(target: SnmpTarget) -> bytes:
        assert target.community is not None
        return target.community.get_secret_value().encode()

    # -- set-up ----------------------------------------------------------------------------------

    async def _peer(self, target: SnmpTarget) -> _Peer | ProbeError:
        if self._closed:
            return ProbeError(ErrorKind.INTERNAL, _CLOSED_MESSAGE)
        if target.version is SnmpVersion.V3:
            return ProbeError(ErrorKind.INTERNAL, "SNMPv3 goes through the pysnmp transport, not this one")
        if target.community is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv{target.version.value} needs a community")
        address = await _resolve(target.host, target.port)
        if isinstance(address, ProbeError):
            return address
        family, sockaddr = address
        endpoint = self._endpoints.get(family)
        if endpoint is None:
            async with self._setup_lock:
                endpoint = self._endpoints.get(family)
                if endpoint is None:
                    endpoint = await self._open(family)
                    self._endpoints[family] = endpoint
        if self._closed:  # closed while the socket opened
            return ProbeError(ErrorKind.INTERNAL, _CLOSED_MESSAGE)
        peer = _Peer(str(sockaddr[0]), int(sockaddr[1]), sockaddr, endpoint)
        self._peers[(target.host, target.port)] = peer
        return peer

    async def _open(self, family: int) -> _Endpoint:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._enlarge_receive_buffer(sock)
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            sock.setblocking(False)
            _transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Endpoint(self, family), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        return endpoint

    def _enlarge_receive_buffer(self, sock: socket.socket) -> None:
        granted = enlarge_receive_buffer(sock, self._receive_buffer)
        if self.receive_buffer_granted is None:
            self.receive_buffer_granted = granted
        # less than asked means the kernel capped it (net.core.rmem_max)
        if granted < self._receive_buffer and not self._logged_buffer:
            self._logged_buffer = True
            log.debug(
                "SNMP socket receive buffer is %d bytes, %d asked: raise net.core.rmem_max for bursts",
                granted,
                self._receive_buffer,
            )


def _same_host(got: str, expected: str) -> bool:
    """Whether two spellings name one address (IPv6 has several); the common case never gets here."""
    try:
        return ipaddress.ip_address(got.partition("%")[0]) == ipaddress.ip_address(expected.partition("%")[0])
    except ValueError:
        return False


async def _resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]] | ProbeError:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return socket.AF_INET6, (str(ip), port, 0, 0)
        return socket.AF_INET, (str(ip), port)
    try:
        infos = await executors.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        return ProbeError(ErrorKind.UNREACHABLE, f"cannot resolve {host}: {exc}")
    if not infos:
        return ProbeError(ErrorKind.UNREACHABLE, f"cannot resolve {host}: no address")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, like most agents
    family, _, _, _, sockaddr = infos[0]
    return family, tuple(sockaddr)


class CompositeSnmpTransport:
    """Sends v1/v2c through one transport (the fast one) and SNMPv3 through another (pysnmp)."""

    def __init__(self, community: SnmpTransport, v3: SnmpTransport) -> None:
        self.community = community
        self.v3 = v3

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        if target.version is SnmpVersion.V3:
            return await self.v3.get(target, oids)
        return await self.community.get(target, oids)

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        if target.version is SnmpVersion.V3:
            return await self.v3.walk(target, root)
        return await self.community.walk(target, root)

    async def close(self) -> None:
        await asyncio.gather(self.community.close(), self.v3.close())


def enlarge_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for a ``wanted``-byte receive buffer (replies are dropped at high concurrency
    otherwise); returns what the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    except OSError as exc:
        log.debug("cannot set the SNMP socket receive buffer: %s", exc)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if sys.platform.startswith("linux"):
        granted //= 2  # Linux reports the buffer doubled for its bookkeeping overhead
    return int(granted)
