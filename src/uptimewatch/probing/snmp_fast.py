"""SNMP over UDP with the project's own BER codec (:mod:`.ber`): the :class:`SnmpTransport` the
daemon polls every device through, v1/v2c by community and SNMPv3 with the User-based Security
Model of :mod:`.usm` (pysnmp stays for comparison: ``snmp_transport.create_transport``).

The benchmark found pysnmp/pyasn1 spending ~60% of the CPU of a poll cycle encoding and decoding
messages. Here a request is a prebuilt message with only its request id patched in, and a response
goes from bytes to :class:`Varbind` in one pass. PDU splitting, walk caps and problem wording are
the shared driver's (:mod:`.snmp_driver`); this module only supplies its ``exchange()``, typing
values exactly as :class:`PysnmpTransport` does, with retries counted in ``requests`` and failures
as data.

One UDP socket per address family serves every request. Replies are matched by request id, then by
source address and port, so a datagram from anywhere else cannot answer a poll; whatever does not
parse is dropped and counted in :attr:`FastSnmpTransport.stats`, never raised into the loop.

SNMPv3: each agent's engine is discovered on its first request (one discovery for all requests
waiting on it), keys are localized once per engine ID, and a ``notInTimeWindow`` or
``unknownEngineID`` report resynchronizes and resends, as pysnmp's command generators do (up to
:data:`_DISCOVERY_RESENDS` times). The msgID and the PDU's request id are the same number, from the
request-id space of v1/v2c. Discovery and resync PDUs are USM's own: counted in ``stats.requests``,
not in a response's ``requests`` (as with pysnmp), so timeouts read the same on both transports.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from .. import executors
from ..config.models import SnmpVersion
from ..config.resolve import SnmpTarget
from ..model.observation import ErrorKind, ProbeError
from . import ber, snmp_driver, usm
from .snmp_driver import MAX_VARBINDS_PER_PDU, Reply, Request, closed_error, describe
from .snmp_net import RECEIVE_BUFFER_BYTES, enlarge_receive_buffer, resolve_udp, same_host
from .snmp_types import SnmpResponse, SnmpTransport, SnmpType, Varbind

log = logging.getLogger(__name__)

__all__ = [
    "MAX_VARBINDS_PER_PDU",
    "RECEIVE_BUFFER_BYTES",
    "CompositeSnmpTransport",
    "FastSnmpTransport",
    "FastTransportStats",
    "enlarge_receive_buffer",
]

#: Prebuilt GET requests are kept for this many (community, version, OID list) combinations.
_TEMPLATE_CACHE_SIZE: Final = 4096
#: Dotted forms of response OIDs: a poll cycle asks the same few hundred OIDs of every device.
_OID_CACHE_SIZE: Final = 65_536

# outcomes of one exchange that are not an agent's error-status (those are >= 0)
_TIMED_OUT: Final = -1
_MAX_DATAGRAM: Final = 65_535
_CLOSED: Final = -2
_REPORT: Final = -3  # an SNMPv3 report; the index is its usmStats number (0: another report)
_NOT_AUTHENTIC: Final = -4  # an SNMPv3 response that failed our check of its digest
#: resends after an unknownEngineID or notInTimeWindow report that taught us something new, before
#: the report counts as the answer (pysnmp's command generators allow as many)
_DISCOVERY_RESENDS: Final = 4
_CREDENTIALS_CACHE_SIZE: Final = 4096
_LOCAL_KEYS_CACHE_SIZE: Final = 65_536
#: a request times out up to this much after its timeout: those due together share one sweep
_TIMEOUT_SLACK: Final = 0.01
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
# a one-PDU GET: the OIDs as requests name them, the prebuilt request, the names' BER content
_GetPlan = tuple[tuple[str, ...], ber.RequestTemplate, tuple[bytes, ...]]


@functools.lru_cache(maxsize=_OID_CACHE_SIZE)
def _encoded_name(oid: str) -> bytes:
    """The content octets of a requested OID (profiles ask the same few hundred)."""
    return ber.encode_oid(ber.parse_oid(oid))


class _BadValue(Exception):
    """A response value the SNMPv2-SMI types cannot hold."""


@dataclass(slots=True)
class FastTransportStats:
    """Counters since the transport was built (for diagnostics and tests)."""

    requests: int = 0  # PDUs sent, retries included
    responses: int = 0  # replies matched to a request
    timeouts: int = 0  # exchanges that got no reply after all their attempts
    malformed: int = 0  # datagrams that are no Response (or SNMPv3 report), or not the version asked
    unmatched: int = 0  # responses to no pending request: late, duplicated or stray
    wrong_source: int = 0  # a pending request id, from an address or port it was not sent to


#: datagrams read per wake-up of the socket before other callbacks get a turn
_RECV_BATCH: Final = 256


class _Endpoint(asyncio.DatagramProtocol):
    """The socket of one address family; every datagram goes straight to the transport.

    asyncio's datagram transport reads one datagram per wake-up of the loop, and every poll of
    the province shares this socket: on a busy loop, replies would queue in the socket faster
    than one per iteration drains them, and time out there though the agents answered in time.
    So each wake-up reads what is queued, up to :data:`_RECV_BATCH` datagrams.
    """

    def __init__(self, owner: FastSnmpTransport, family: int, sock: socket.socket | None = None) -> None:
        self.owner = owner
        self.family = family
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport, but is one
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        received = self.owner._received
        received(data, addr)
        sock = self.sock
        if sock is None:
            return
        for _ in range(_RECV_BATCH - 1):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # as the transport's own read would: the next wake-up goes on
                log.debug("SNMP socket error: %s", exc)
                return
            received(data, addr)

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
class _Agent:
    """One SNMPv3 agent's engine as we know it, and its discovery while one is on the wire."""

    engine: usm.EngineState
    discovering: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class _V3Wait:
    """What reading an SNMPv3 reply to one request takes."""

    agent: _Agent
    keys: usm.LocalKeys | None  # None: engine discovery
    flags: int  # the request's msgFlags


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
    v3: _V3Wait | None = None


class _Rows:
    """How the driver reads this transport's raw varbinds; keeps the dotted forms of OIDs seen."""

    def __init__(self) -> None:
        self._oid_strings: dict[bytes, str] = {}

    @staticmethod
    def oid(row: ber.RawVarbind) -> tuple[int, ...]:
        return ber.decode_oid(row[0])

    @staticmethod
    def named(row: ber.RawVarbind, oid: str) -> bool:
        raw = row[0]
        if raw == _encoded_name(oid):
            return True
        try:  # the same OID in a non-minimal encoding (leading 0x80 octets) is still the same OID
            return ber.decode_oid(raw) == ber.parse_oid(oid)
        except ber.BerError:
            return False

    @staticmethod
    def ends_view(row: ber.RawVarbind) -> bool:
        return row[1] == ber.END_OF_MIB_VIEW

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

    def varbind(self, raw: ber.RawVarbind) -> Varbind:
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


class FastSnmpTransport(snmp_driver.DrivenTransport[ber.RawVarbind, "_Peer"]):
    """:class:`SnmpTransport` for SNMP v1, v2c and v3. One instance serves all polls of an event loop."""

    bad_value_errors = (_BadValue, ber.BerError)

    def __init__(
        self,
        *,
        max_varbinds_per_pdu: int = MAX_VARBINDS_PER_PDU,
        receive_buffer: int = RECEIVE_BUFFER_BYTES,
    ) -> None:
        super().__init__(_Rows(), max_varbinds_per_pdu=max_varbinds_per_pdu, receive_buffer=receive_buffer)
        self._endpoints: dict[int, _Endpoint] = {}
        self._peers: dict[tuple[str, int], _Peer] = {}
        self._pending: dict[int, _Pending] = {}
        self._templates: collections.OrderedDict[tuple[object, ...], ber.RequestTemplate] = (
            collections.OrderedDict()
        )
        # a random start, so that a restarted daemon does not take late replies meant for its
        # previous life as answers
        self._next_id = random.randint(ber.REQUEST_ID_MIN, ber.REQUEST_ID_MAX)
        self.stats = FastTransportStats()
        # the one-PDU GETs asked: (community, version, OIDs as given) -> what to send and expect
        self._get_plans: dict[tuple[object, ...], _GetPlan] = {}
        # per timeout value, (deadline, request, attempt) in send order: swept by one timer
        self._timeouts: dict[float, collections.deque[tuple[float, _Pending, int]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        # SNMPv3: engines per agent address, master keys per user, keys per (user, engine ID)
        self._agents: dict[tuple[str, int], _Agent] = {}
        self._credentials: dict[tuple[object, ...], asyncio.Future[usm.Credentials]] = {}
        self._local_keys: dict[tuple[usm.Credentials, bytes], usm.LocalKeys] = {}
        self._v3_pdus: dict[tuple[str, ...], ber.RequestTemplate] = {}
        self._salt = random.getrandbits(64)

    async def close(self) -> None:
        self._closed = True
        pending, self._pending = self._pending, {}
        self._timeouts.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
            self._sweep_at = math.inf
        for entry in pending.values():
            if not entry.fut.done():
                entry.fut.set_result((_CLOSED, 0, []))
        endpoints, self._endpoints = self._endpoints, {}
        self._peers.clear()
        self._agents.clear()
        for endpoint in endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        # let the loop run the close callbacks, so the sockets are really gone when this returns
        await asyncio.sleep(0)

    # -- the common GET: one PDU, answered in full ----------------------------------------------

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        """A v1/v2c GET that fits one PDU goes straight to the wire with its prebuilt request, and a
        reply naming the OIDs asked, in order, with no error-status, straight back as varbinds.
        Anything else (a split, an error-status, a timeout, other names) is the driver's, given the
        reply already received, so it reads exactly as :meth:`DrivenTransport.get` would."""
        if not oids or target.version is SnmpVersion.V3 or target.community is None or self._closed:
            return await super().get(target, oids)
        key = (target.community, target.version, oids if isinstance(oids, tuple) else tuple(oids))
        plan = self._get_plans.get(key)
        if plan is None:
            if len(oids) > self._max_varbinds:
                return await super().get(target, oids)
            plan = self._get_plan(key, target, oids)
        try:
            peer = self._peers.get((target.host, target.port))
            if peer is None:
                found = await self._peer(target)
                if isinstance(found, ProbeError):
                    return SnmpResponse(error=found)
                peer = found
            names, template, encoded = plan
            status, index, raw, sent = await self._exchange(
                peer, target, template.with_id, attempts=target.retries + 1
            )
            if status == 0 and len(raw) == len(encoded) and tuple([r[0] for r in raw]) == encoded:
                convert = self._rows.varbind
                return SnmpResponse(varbinds=tuple([convert(r) for r in raw]), requests=sent)
        except self.bad_value_errors as exc:
            return SnmpResponse(error=self._bad_value(target, exc))
        except Exception:
            log.exception("SNMP GET with %s failed unexpectedly", snmp_driver.describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, "unexpected error in SNMP GET"))
        first: Reply[ber.RawVarbind]
        if status == _TIMED_OUT:
            first = Reply(sent, timed_out=True)
        elif status == _CLOSED:
            first = Reply(sent, error=closed_error())
        else:
            first = Reply(sent, status, index, raw)
        primed = [first]

        async def exchange(request: Request, attempts: int) -> Reply[ber.RawVarbind]:
            if primed and request.oids == names:
                return primed.pop()
            return await self._request(peer, target, request, attempts)

        rows, step = self._rows, self._max_varbinds
        return await self._drive(
            target, "GET", lambda _exchange: snmp_driver.get(exchange, rows, target, oids, max_varbinds=step)
        )

    def _get_plan(self, key: tuple[object, ...], target: SnmpTarget, oids: Sequence[str]) -> _GetPlan:
        names = tuple(snmp_driver.oid_key(o) for o in oids)
        template = self._template(target, Request("get", names))
        plan = (names, template, tuple(_encoded_name(name) for name in names))
        if len(self._get_plans) >= _TEMPLATE_CACHE_SIZE:
            self._get_plans.clear()
        self._get_plans[key] = plan
        return plan

    # -- requests --------------------------------------------------------------------------------

    def _template(self, target: SnmpTarget, request: Request) -> ber.RequestTemplate:
        assert target.community is not None
        version = _VERSION_NUMBER[target.version]
        if request.kind != "get":
            # a walk's cursor moves with every request: nothing to reuse
            community = target.community.get_secret_value().encode()
            cursor = (ber.encode_oid(ber.parse_oid(request.oids[0])),)
            if request.kind == "bulk":
                return ber.request_template(
                    version, community, ber.GETBULK, cursor, field3=request.repetitions
                )
            return ber.request_template(version, community, ber.GETNEXT, cursor)
        # keyed by the SecretStr itself: it hashes and compares by value without showing it
        key = (target.community, version, request.oids)
        cached = self._templates.get(key)
        if cached is not None:
            self._templates.move_to_end(key)
            return cached
        community = target.community.get_secret_value().encode()
        encoded = tuple(ber.encode_oid(ber.parse_oid(name)) for name in request.oids)
        template = ber.request_template(version, community, ber.GET, encoded)
        self._templates[key] = template
        if len(self._templates) > _TEMPLATE_CACHE_SIZE:
            self._templates.popitem(last=False)
        return template

    async def _request(
        self, peer: _Peer, target: SnmpTarget, request: Request, attempts: int
    ) -> Reply[ber.RawVarbind]:
        """The driver's ``exchange()``."""
        if target.version is SnmpVersion.V3:
            return await self._request_v3(peer, target, request, attempts)
        template = self._template(target, request)
        status, index, raw, sent = await self._exchange(peer, target, template.with_id, attempts=attempts)
        if status == _TIMED_OUT:
            return Reply(sent, timed_out=True)
        if status == _CLOSED:
            return Reply(sent, error=closed_error())
        return Reply(sent, status, index, raw)

    # -- one request -----------------------------------------------------------------------------

    async def _exchange(
        self,
        peer: _Peer,
        target: SnmpTarget,
        message: Callable[[int], bytes],
        *,
        attempts: int,
        v3: _V3Wait | None = None,
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
            _VERSION_NUMBER.get(target.version, usm.VERSION_3),
            attempts,
            target.timeout,
            v3=v3,
        )
        self._pending[request_id] = entry
        self._transmit(entry)
        try:
            status, index, raw = await fut
        except asyncio.CancelledError:
            # the caller's deadline: forget the request, a late reply is then merely unmatched
            if self._pending.get(request_id) is entry:
                del self._pending[request_id]
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + entry.timeout
        queue = self._timeouts.get(entry.timeout)
        if queue is None:
            queue = self._timeouts[entry.timeout] = collections.deque()
        queue.append((deadline, entry, entry.sent))
        if deadline + _TIMEOUT_SLACK < self._sweep_at:
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweep_at = deadline + _TIMEOUT_SLACK
            self._sweeper = loop.call_at(self._sweep_at, self._sweep)

    def _sweep(self) -> None:
        """Resend or time out the requests whose attempt is past its timeout; one timer serves
        every request (a per-request timer cost more than the rest of the exchange's scheduling)."""
        self._sweeper = None
        self._sweep_at = math.inf
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        first = math.inf
        for timeout, queue in list(self._timeouts.items()):
            while queue and queue[0][0] <= now:
                _deadline, entry, attempt = queue.popleft()
                # answered, cancelled or resent since: that attempt's timeout is moot
                if entry.sent == attempt and pending.get(entry.request_id) is entry:
                    self._expire(entry)
            if queue:
                first = min(first, queue[0][0])
            else:
                del self._timeouts[timeout]
        if first < math.inf and first + _TIMEOUT_SLACK < self._sweep_at:
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweep_at = first + _TIMEOUT_SLACK
            self._sweeper = loop.call_at(self._sweep_at, self._sweep)

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
        if usm.is_v3(data):
            self._received_v3(data, addr)
            return
        try:
            head = ber.decode_response_header(data)
            entry = self._pending.get(head.request_id)
            if entry is None:
                stats.unmatched += 1
                return
            peer = entry.peer
            if addr[1] != peer.port or (addr[0] != peer.host and not same_host(addr[0], peer.host)):
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
        stats.responses += 1
        if not entry.fut.done():
            entry.fut.set_result((head.error_status, head.error_index, varbinds))

    # -- SNMPv3 ----------------------------------------------------------------------------------

    async def _request_v3(
        self, peer: _Peer, target: SnmpTarget, request: Request, attempts: int
    ) -> Reply[ber.RawVarbind]:
        """One request with the target's USM user: discovery first if the agent's engine is not
        known, and one resend per report that resynchronized it."""
        creds = await self._user(target)
        if isinstance(creds, ProbeError):
            return Reply(0, error=creds)
        agent = self._agent(peer)
        engine = agent.engine
        template = self._v3_pdu(request)
        context = target.context.encode()
        sent = 0
        report = usm.UNKNOWN_ENGINE_ID
        for _round in range(_DISCOVERY_RESENDS + 1):
            if engine.engine_id is None:
                failed = await self._discover(peer, target, agent, attempts)
                if failed is not None:
                    return failed
                if engine.engine_id is None:
                    continue  # another request's discovery ended without an answer: ours now
            engine_id = engine.engine_id
            keys = self._localized(creds, engine_id)
            generation = engine.generation

            def message(request_id: int, keys: usm.LocalKeys = keys, engine_id: bytes = engine_id) -> bytes:
                boots, engine_time = engine.clock(asyncio.get_running_loop().time())
                scoped = usm.scoped_pdu(engine_id, context, template.with_id(request_id))
                self._salt = (self._salt + 1) & 0xFFFF_FFFF_FFFF_FFFF
                return usm.encode_message(
                    msg_id=request_id,
                    flags=creds.flags,
                    engine_id=engine_id,
                    boots=boots,
                    engine_time=engine_time,
                    user=creds.user,
                    scoped_pdu=scoped,
                    keys=keys,
                    salt=self._salt,
                )

            wait = _V3Wait(agent, keys, creds.flags)
            status, index, raw, n = await self._exchange(peer, target, message, attempts=attempts, v3=wait)
            sent += n
            if status == _REPORT:
                report = index
                resync = index in (usm.NOT_IN_TIME_WINDOW, usm.UNKNOWN_ENGINE_ID)
                if resync and engine.generation != generation:
                    continue
                return Reply(sent, error=self._report_error(index, raw, target))
            if status == _NOT_AUTHENTIC:
                error = ProbeError(ErrorKind.AUTH, f"{usm.RESPONSE_NOT_AUTHENTIC} ({describe(target)})")
                return Reply(sent, error=error)
            if status == _TIMED_OUT:
                return Reply(sent, timed_out=True)
            if status == _CLOSED:
                return Reply(sent, error=closed_error())
            return Reply(sent, status, index, raw)
        return Reply(sent, error=self._report_error(report, [], target))

    async def _discover(
        self, peer: _Peer, target: SnmpTarget, agent: _Agent, attempts: int
    ) -> Reply[ber.RawVarbind] | None:
        """Learn the agent's engine ID, boots and time (RFC 3414 4): None once known, else what the
        request comes to. Requests arriving meanwhile wait for the discovery on the wire."""
        if agent.discovering is not None:
            await asyncio.shield(agent.discovering)
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        agent.discovering = done
        try:
            empty = ber.pdu_template(ber.GET, ())

            def message(request_id: int) -> bytes:
                return usm.encode_message(
                    msg_id=request_id,
                    flags=usm.DISCOVERY_FLAGS,
                    engine_id=b"",
                    boots=0,
                    engine_time=0,
                    user=b"",
                    scoped_pdu=usm.scoped_pdu(b"", b"", empty.with_id(request_id)),
                )

            wait = _V3Wait(agent, None, usm.DISCOVERY_FLAGS)
            status, _index, _raw, n = await self._exchange(peer, target, message, attempts=attempts, v3=wait)
        finally:
            agent.discovering = None
            done.set_result(None)
        if status == _TIMED_OUT:
            return Reply(n, timed_out=True)
        if status == _CLOSED:
            return Reply(n, error=closed_error())
        if agent.engine.engine_id is None:
            return Reply(n, error=self._report_error(usm.UNKNOWN_ENGINE_ID, [], target))
        return None

    def _report_error(self, number: int, raw: list[ber.RawVarbind], target: SnmpTarget) -> ProbeError:
        words = usm.REPORT_WORDS.get(number)
        if words is not None:
            return ProbeError(ErrorKind.AUTH, f"{words} ({describe(target)})")
        what = "report"
        if raw:
            with contextlib.suppress(ber.BerError):
                what = ber.format_oid(ber.decode_oid(raw[0][0]))
        return ProbeError(ErrorKind.BAD_VALUE, f"SNMP error from {target.host}:{target.port}: {what}")

    def _agent(self, peer: _Peer) -> _Agent:
        key = (peer.host, peer.port)
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = _Agent(usm.EngineState())
        return agent

    def _v3_pdu(self, request: Request) -> ber.RequestTemplate:
        if request.kind != "get":
            cursor = (ber.encode_oid(ber.parse_oid(request.oids[0])),)
            if request.kind == "bulk":
                return ber.pdu_template(ber.GETBULK, cursor, field3=request.repetitions)
            return ber.pdu_template(ber.GETNEXT, cursor)
        template = self._v3_pdus.get(request.oids)
        if template is None:
            template = ber.pdu_template(ber.GET, tuple(_encoded_name(name) for name in request.oids))
            if len(self._v3_pdus) >= _TEMPLATE_CACHE_SIZE:
                self._v3_pdus.clear()
            self._v3_pdus[request.oids] = template
        return template

    async def _user(self, target: SnmpTarget) -> usm.Credentials | ProbeError:
        """The target's USM user with its master keys: derived once per user and key set (a
        megabyte hashed per key, in a worker thread), shared by every request that needs it."""
        # keyed by the SecretStrs themselves: they hash and compare by value without showing it
        key = (target.user, target.auth_protocol, target.auth_key, target.priv_protocol, target.priv_key)
        fut = self._credentials.get(key)
        if fut is None:
            if len(self._credentials) >= _CREDENTIALS_CACHE_SIZE:
                self._credentials.clear()
            fut = self._credentials[key] = asyncio.ensure_future(self._derive(target))
        try:
            return fut.result() if fut.done() else await asyncio.shield(fut)
        except ValueError as exc:
            return ProbeError(ErrorKind.AUTH, f"{exc} ({describe(target)})")

    @staticmethod
    async def _derive(target: SnmpTarget) -> usm.Credentials:
        args = (
            target.user or "",
            target.auth_protocol,
            target.auth_key.get_secret_value() if target.auth_key is not None else None,
            target.priv_protocol,
            target.priv_key.get_secret_value() if target.priv_key is not None else None,
        )
        try:
            return await executors.CONFIG.run(usm.credentials, *args)
        except executors.LaneFull:
            return usm.credentials(*args)  # milliseconds on the loop rather than a failed poll

    def _localized(self, creds: usm.Credentials, engine_id: bytes) -> usm.LocalKeys:
        key = (creds, engine_id)
        keys = self._local_keys.get(key)
        if keys is None:
            if len(self._local_keys) >= _LOCAL_KEYS_CACHE_SIZE:
                self._local_keys.clear()
            keys = self._local_keys[key] = usm.localize(creds, engine_id)
        return keys

    def _received_v3(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        try:
            msg = usm.decode_message(data)
        except ber.BerError:
            stats.malformed += 1
            return
        entry = self._pending.get(msg.msg_id)
        if entry is None or entry.v3 is None:
            stats.unmatched += 1
            return
        peer = entry.peer
        if addr[1] != peer.port or (addr[0] != peer.host and not same_host(addr[0], peer.host)):
            stats.wrong_source += 1
            return
        try:
            result = self._read_v3(data, msg, entry.v3)
        except ber.BerError:
            result = None
        except Exception:  # a codec bug must cost one datagram, not the loop's callback
            log.exception("SNMPv3 message from %s could not be read", addr[0] if addr else "?")
            result = None
        if result is None:
            stats.malformed += 1
            return
        del self._pending[msg.msg_id]
        stats.responses += 1
        if not entry.fut.done():
            entry.fut.set_result(result)

    @staticmethod
    def _read_v3(data: bytes, msg: usm.Message, wait: _V3Wait) -> _Reply | None:
        """What an SNMPv3 reply to ``wait``'s request says, or None to drop it as malformed. Reports
        that the agent cannot authenticate (unknown user, wrong digest, discovery) come unsigned,
        and are taken as such (RFC 3414 3.2); a response must be at the level asked and signed."""
        keys = wait.keys
        authenticated = False
        if msg.flags & usm.AUTH:
            if keys is None or not keys.digest_length:
                return None
            if not msg.authentic(data, keys):
                return _NOT_AUTHENTIC, 0, []
            authenticated = True
        plain = msg.scoped_pdu(data, keys)
        if plain is None:
            return _REPORT, usm.DECRYPTION_ERROR, []
        try:
            pdu = usm.decode_scoped_pdu(plain)
            varbinds = ber.decode_varbinds(plain, pdu.varbinds_start, pdu.varbinds_end)
        except ber.BerError:
            if msg.encrypted:  # what the wrong key makes of a reply
                return _REPORT, usm.DECRYPTION_ERROR, []
            raise
        engine = wait.agent.engine
        now = asyncio.get_running_loop().time()
        if pdu.pdu_type == usm.REPORT:
            number = usm.report_number(ber.decode_oid(varbinds[0][0])) if varbinds else 0
            if msg.engine_id and (
                keys is None
                or (number == usm.UNKNOWN_ENGINE_ID and msg.engine_id != keys.engine_id)
                or (number == usm.NOT_IN_TIME_WINDOW and authenticated)
            ):
                engine.learn(msg.engine_id, msg.boots, msg.time, now)
            return _REPORT, number, varbinds
        if pdu.pdu_type != ber.RESPONSE or pdu.request_id != msg.msg_id:
            return None
        if keys is None:  # a response to discovery: the engine is known all the same
            if msg.engine_id:
                engine.learn(msg.engine_id, msg.boots, msg.time, now)
            return _REPORT, 0, []
        if (msg.flags & (usm.AUTH | usm.PRIV)) != (wait.flags & (usm.AUTH | usm.PRIV)):
            return None  # a response below the level asked answers nothing
        if authenticated:
            engine.observe(msg.boots, msg.time, now)
        return pdu.error_status, pdu.error_index, varbinds

    # -- set-up ----------------------------------------------------------------------------------

    async def _peer(self, target: SnmpTarget) -> _Peer | ProbeError:
        if self._closed:
            return closed_error()
        if target.version is SnmpVersion.V3:
            if not target.user:
                return ProbeError(ErrorKind.AUTH, f"SNMPv3 needs a user ({describe(target)})")
            if target.priv_key is not None and target.auth_key is None:
                return ProbeError(ErrorKind.AUTH, f"SNMPv3 privacy needs an auth key ({describe(target)})")
        elif target.community is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv{target.version.value} needs a community")
        known = self._peers.get((target.host, target.port))
        if known is not None:
            return known
        address = await resolve_udp(target.host, target.port)
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
            return closed_error()
        peer = _Peer(str(sockaddr[0]), int(sockaddr[1]), sockaddr, endpoint)
        self._peers[(target.host, target.port)] = peer
        return peer

    async def _open(self, family: int) -> _Endpoint:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._buffer.enlarge(sock)
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            sock.setblocking(False)
            _transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Endpoint(self, family, sock), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        return endpoint


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
