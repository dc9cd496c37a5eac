"""SNMP over UDP with pysnmp 7's asyncio engine: the :class:`SnmpTransport` the SNMP probe polls through.

Built for many devices polled often: one SnmpEngine (one UDP socket with a large receive buffer)
serves every device, and whatever a poll needs (community or USM user, target parameters, target
address, request varbinds) is registered in the engine once and reused. The low-level command
generators are used directly, so a poll does no MIB lookups and builds no high-level objects.

Failures come back as data in :class:`SnmpResponse`, never as exceptions; only cancellation (the
scheduler's deadline) propagates.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config as lcd
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.entity.rfc3413 import config as rfc3413_config
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.error import StatusInformation
from pysnmp.proto.proxy import rfc2576 as v1_proxy

from .. import executors
from ..config.models import AuthProtocol, PrivProtocol, SnmpVersion
from ..config.resolve import SnmpTarget
from ..model.observation import ErrorKind, ProbeError
from .ber import ERROR_STATUS_NAMES, NO_SUCH_NAME, TOO_BIG
from .snmp_fast import CompositeSnmpTransport, FastSnmpTransport, enlarge_receive_buffer
from .snmp_types import SnmpResponse, SnmpTransport, SnmpType, Varbind

log = logging.getLogger(__name__)

#: Varbinds per GET PDU: keeps responses well under a 1472-byte UDP payload for typical values,
#: and small enough for old agents with tiny PDU buffers.
MAX_VARBINDS_PER_PDU: Final = 40
#: A poll burst of thousands of devices answers at once; the default ~200 KiB buffer drops replies.
RECEIVE_BUFFER_BYTES: Final = 4 * 1024 * 1024
#: Prebuilt request varbinds are kept for this many distinct OID lists (profiles x devices in practice).
_VARBIND_CACHE_SIZE: Final = 4096

_AUTH: Final = {
    AuthProtocol.MD5: lcd.USM_AUTH_HMAC96_MD5,
    AuthProtocol.SHA: lcd.USM_AUTH_HMAC96_SHA,
    AuthProtocol.SHA224: lcd.USM_AUTH_HMAC128_SHA224,
    AuthProtocol.SHA256: lcd.USM_AUTH_HMAC192_SHA256,
    AuthProtocol.SHA384: lcd.USM_AUTH_HMAC256_SHA384,
    AuthProtocol.SHA512: lcd.USM_AUTH_HMAC384_SHA512,
}
# AES-192/256 key extension follows net-snmp (Blumenthal draft); agents using Cisco's (Reeder)
# extension only agree when the auth hash is long enough that no extension is needed (SHA-256+).
_PRIV: Final = {
    PrivProtocol.DES: lcd.USM_PRIV_CBC56_DES,
    PrivProtocol.AES: lcd.USM_PRIV_CFB128_AES,
    PrivProtocol.AES192: lcd.USM_PRIV_CFB192_AES_BLUMENTHAL,
    PrivProtocol.AES256: lcd.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
_MP_MODEL: Final = {SnmpVersion.V1: 0, SnmpVersion.V2C: 1, SnmpVersion.V3: 3}

# The USM report counters a v3 agent answers with, in the words the health model shows; the
# wording is kept distinct because diagnosing v3 misconfiguration depends on it.
_AUTH_ERRORS: Final[dict[type[Exception], str]] = {
    errind.UnknownUserName: "unknown SNMPv3 user",
    errind.WrongDigest: "wrong auth key",
    errind.AuthenticationFailure: "wrong auth key (response failed authentication)",
    errind.AuthenticationError: "wrong auth key (authentication error)",
    errind.DecryptionError: "wrong priv key (decryption error)",
    errind.NotInTimeWindow: "not in time window",
    errind.UnknownEngineID: "unknown engine ID (SNMPv3 discovery failed)",
    errind.UnsupportedSecurityLevel: "unsupported security level",
    errind.UnsupportedAuthProtocol: "unsupported auth protocol",
    errind.UnsupportedPrivProtocol: "unsupported priv protocol",
    errind.UnknownCommunityName: "unknown community",
    errind.UnknownSecurityName: "unknown security name",
}

_ACCESS_ERRORS: Final = frozenset({6, 16})  # noAccess, authorizationError: a view or ACL says no

_TYPE_BY_TAG: Final = {
    rfc1902.Integer32.tagSet: SnmpType.INTEGER,
    rfc1902.OctetString.tagSet: SnmpType.OCTET_STRING,
    rfc1902.ObjectIdentifier.tagSet: SnmpType.OID,
    rfc1902.IpAddress.tagSet: SnmpType.IPADDRESS,
    rfc1902.Counter32.tagSet: SnmpType.COUNTER32,
    rfc1902.Gauge32.tagSet: SnmpType.GAUGE32,
    rfc1902.TimeTicks.tagSet: SnmpType.TIMETICKS,
    rfc1902.Counter64.tagSet: SnmpType.COUNTER64,
    rfc1902.Opaque.tagSet: SnmpType.OPAQUE,
    rfc1902.Null.tagSet: SnmpType.NULL,
    rfc1905.NoSuchObject.tagSet: SnmpType.NO_SUCH_OBJECT,
    rfc1905.NoSuchInstance.tagSet: SnmpType.NO_SUCH_INSTANCE,
    rfc1905.EndOfMibView.tagSet: SnmpType.END_OF_MIB_VIEW,
}
#: filled on first sight of each value class: a dict hit per varbind instead of a tag-set hash
_TYPE_BY_CLASS: dict[type, SnmpType] = {}
_INT_TYPES: Final = frozenset(
    {SnmpType.INTEGER, SnmpType.COUNTER32, SnmpType.GAUGE32, SnmpType.TIMETICKS, SnmpType.COUNTER64}
)
_NULL: Final = rfc1902.Null("")

_Raw = tuple[Any, Any]  # (ObjectName, value) as pysnmp hands them over
_Result = tuple[Any, int, int, Sequence[_Raw]]  # errorIndication, errorStatus, errorIndex, varbinds
_CLOSED: Final = "transport closed"


class _BadValue(Exception):
    """A response value of a type outside SNMPv2-SMI."""


def _value_type(value: Any) -> SnmpType:
    cls = type(value)
    kind = _TYPE_BY_CLASS.get(cls)
    if kind is None:
        kind = _TYPE_BY_TAG.get(value.tagSet)
        if kind is None:
            raise _BadValue(f"unknown SNMP value type {cls.__name__}")
        _TYPE_BY_CLASS[cls] = kind
    return kind


def to_varbind(name: Any, value: Any) -> Varbind:
    """One pysnmp (name, value) pair as plain data, typed as snmp_types documents."""
    kind = _value_type(value)
    converted: int | bytes | str | None
    if kind in _INT_TYPES:
        converted = int(value)
    elif kind is SnmpType.OCTET_STRING or kind is SnmpType.OPAQUE:
        converted = value.asOctets()
    elif kind is SnmpType.OID:
        converted = str(value)
    elif kind is SnmpType.IPADDRESS:
        raw = value.asOctets()
        converted = socket.inet_ntoa(raw) if len(raw) == 4 else ".".join(str(b) for b in raw)
    else:
        converted = None
    return Varbind(str(name), kind, converted)


def _oid_key(oid: str) -> str:
    return oid.strip().lstrip(".")


def _describe(target: SnmpTarget) -> str:
    """For logs and messages: never a secret, only where and how."""
    who = f"user {target.user}" if target.version is SnmpVersion.V3 else "community"
    return f"{target.host}:{target.port} (SNMPv{target.version.value}, {who})"


class _DirectSend:
    """pysnmp's ``CommandGenerator.send_pdu`` (7.1), with the target handed over as data rather than
    named in the engine's SNMP-TARGET-MIB.

    A SNMP-TARGET-MIB row per device costs ~1.4 ms to add, and each added row makes pysnmp's
    community check rebuild its transport-to-tag map, O(rows), on the next response: over the first
    cycle of 20,000 devices that is quadratic and stalls the loop for minutes. Responses still go
    through pysnmp's own ``process_response_pdu`` (request-id match, v3 discovery retries), fed with
    the same pending-request record.
    """

    def send_pdu(  # noqa: PLR0917 - pysnmp calls it with these seven positional arguments
        self,
        snmp_engine: Any,
        target: tuple[Any, ...],
        context_engine_id: Any,
        context_name: Any,
        pdu: Any,
        cb_fun: Any,
        cb_ctx: Any,
    ) -> int:
        domain, address, timeout, retry_count, mp_model, sec_model, sec_name, sec_level = target
        dispatcher = snmp_engine.transport_dispatcher
        ticks = float(timeout) / 100 / dispatcher.get_timer_resolution()
        engine_id_cls, admin_string_cls = snmp_engine.get_mib_builder().import_symbols(
            "SNMP-FRAMEWORK-MIB", "SnmpEngineID", "SnmpAdminString"
        )
        if context_engine_id:
            context_engine_id = engine_id_cls(context_engine_id)
        context_name = admin_string_cls(context_name)
        if mp_model == 0:
            wire_pdu, pdu_version = v1_proxy.v2_to_v1(pdu), 0
        else:
            wire_pdu, pdu_version = pdu, 1
        request_handle: int = cmdgen.getNextHandle()
        handle = snmp_engine.message_dispatcher.send_pdu(
            snmp_engine,
            domain,
            address,
            mp_model,
            sec_model,
            sec_name,
            sec_level,
            context_engine_id,
            context_name,
            pdu_version,
            wire_pdu,
            True,
            ticks,
            self.process_response_pdu,  # type: ignore[attr-defined]
            (request_handle, cb_fun, cb_ctx),
        )
        dispatcher.job_started(id(self))
        # the record process_response_pdu reads back (and rewrites on a v3 discovery resend)
        self._CommandGenerator__pendingReqs[handle] = (  # type: ignore[attr-defined]
            domain,
            address,
            mp_model,
            sec_model,
            sec_name,
            sec_level,
            context_engine_id,
            context_name,
            pdu_version,
            pdu,
            ticks,
            retry_count,
            0,
            0,
        )
        return request_handle


class _GetGenerator(_DirectSend, cmdgen.GetCommandGenerator):  # type: ignore[misc]
    pass


class _NextGenerator(_DirectSend, cmdgen.NextCommandGeneratorSingleRun):  # type: ignore[misc]
    pass


class _BulkGenerator(_DirectSend, cmdgen.BulkCommandGeneratorSingleRun):  # type: ignore[misc]
    pass


@dataclass(slots=True)
class _Engine:
    """One SnmpEngine and its sockets.

    USM keys users by name, so one engine holds one key set per user name; a second key set for
    the same name (a wrong key being tried, two vendors' defaults) gets an engine of its own.
    """

    snmp: Any
    users: dict[str, tuple[object, ...]] = field(default_factory=dict)
    communities: dict[tuple[object, ...], str] = field(default_factory=dict)
    params: dict[tuple[str, str, int], str] = field(default_factory=dict)
    domains: dict[int, tuple[int, ...]] = field(default_factory=dict)  # address family -> domain
    get_gen: Any = field(default_factory=_GetGenerator)
    next_gen: Any = field(default_factory=_NextGenerator)
    bulk_gen: Any = field(default_factory=_BulkGenerator)


@dataclass(frozen=True, slots=True)
class _Peer:
    engine: _Engine
    target: tuple[Any, ...]  # what _DirectSend.send_pdu takes in place of a target name
    context: bytes


class PysnmpTransport:
    """:class:`SnmpTransport` on pysnmp 7. One instance serves all polls of an event loop."""

    def __init__(
        self,
        *,
        max_varbinds_per_pdu: int = MAX_VARBINDS_PER_PDU,
        receive_buffer: int = RECEIVE_BUFFER_BYTES,
    ) -> None:
        self._max_varbinds = max_varbinds_per_pdu
        self._receive_buffer = receive_buffer
        self._engines: list[_Engine] = []
        self._peers: dict[tuple[object, ...], _Peer] = {}
        self._varbinds: collections.OrderedDict[tuple[str, ...], tuple[tuple[_Raw, ...], ...]] = (
            collections.OrderedDict()
        )
        self._pending: set[asyncio.Future[_Result]] = set()
        self._setup_lock = asyncio.Lock()
        self._names = itertools.count(1)
        self._closed = False
        self._logged_buffer = False
        #: the receive buffer the kernel granted the first socket (bytes, as getsockopt reports it)
        self.receive_buffer_granted: int | None = None

    # -- SnmpTransport ---------------------------------------------------------------------------

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        if not oids:
            return SnmpResponse()
        try:
            peer = await self._peer(target)
            if isinstance(peer, ProbeError):
                return SnmpResponse(error=peer)
            return await self._get(peer, target, tuple(oids))
        except _BadValue as exc:
            return SnmpResponse(error=ProbeError(ErrorKind.BAD_VALUE, str(exc)))
        except Exception:
            log.exception("SNMP GET to %s failed unexpectedly", _describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, "unexpected error in SNMP GET"))

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        try:
            peer = await self._peer(target)
            if isinstance(peer, ProbeError):
                return SnmpResponse(error=peer)
            return await self._walk(peer, target, _oid_key(root))
        except _BadValue as exc:
            return SnmpResponse(error=ProbeError(ErrorKind.BAD_VALUE, str(exc)))
        except Exception:
            log.exception("SNMP walk of %s on %s failed unexpectedly", root, _describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, "unexpected error in SNMP walk"))

    async def close(self) -> None:
        self._closed = True
        for fut in self._pending:
            if not fut.done():
                fut.set_result((_CLOSED, 0, 0, ()))
        self._pending.clear()
        engines, self._engines = self._engines, []
        self._peers.clear()
        for engine in engines:
            try:
                engine.snmp.close_dispatcher()
            except Exception:
                log.exception("closing an SNMP engine failed")

    # -- GET -------------------------------------------------------------------------------------

    def _request_varbinds(self, oids: tuple[str, ...]) -> tuple[tuple[_Raw, ...], ...]:
        cached = self._varbinds.get(oids)
        if cached is not None:
            self._varbinds.move_to_end(oids)
            return cached
        names = [(rfc1902.ObjectName(_oid_key(o)), _NULL) for o in oids]
        step = self._max_varbinds
        chunks = tuple(tuple(names[i : i + step]) for i in range(0, len(names), step))
        self._varbinds[oids] = chunks
        if len(self._varbinds) > _VARBIND_CACHE_SIZE:
            self._varbinds.popitem(last=False)
        return chunks

    async def _get(self, peer: _Peer, target: SnmpTarget, oids: tuple[str, ...]) -> SnmpResponse:
        queue = collections.deque(self._request_varbinds(oids))
        out: list[Varbind] = []
        missing_v1: list[Varbind] = []
        requests = 0
        while queue:
            chunk = queue.popleft()
            error_ind, status, index, raw, sent = await self._exchange(
                peer, target, self._sender(peer, "get"), chunk, attempts=target.retries + 1
            )
            requests += sent
            if error_ind is not None:
                return SnmpResponse(error=self._indication_error(error_ind, target, sent), requests=requests)
            if status == TOO_BIG and len(chunk) > 1:
                # the agent cannot fit the answer in one message: ask in halves
                half = len(chunk) // 2
                queue.appendleft(chunk[half:])
                queue.appendleft(chunk[:half])
                continue
            if status == NO_SUCH_NAME and target.version is SnmpVersion.V1 and 0 < index <= len(chunk):
                # SNMPv1 fails the whole PDU for one absent OID; ask again without it, as net-snmp
                # does, so v1 devices answer like v2c ones (absent OIDs typed noSuchObject)
                bad = chunk[index - 1]
                missing_v1.append(Varbind(str(bad[0]), SnmpType.NO_SUCH_OBJECT, None))
                rest = chunk[: index - 1] + chunk[index:]
                if rest:
                    queue.appendleft(rest)
                continue
            if status:
                return SnmpResponse(error=self._status_error(status, index, chunk), requests=requests)
            out.extend(to_varbind(name, value) for name, value in raw)
        if missing_v1:
            order = {_oid_key(o): i for i, o in enumerate(oids)}
            out.extend(missing_v1)
            out.sort(key=lambda vb: order.get(vb.oid, len(order)))
        return SnmpResponse(varbinds=tuple(out), requests=requests)

    # -- walk ------------------------------------------------------------------------------------

    async def _walk(self, peer: _Peer, target: SnmpTarget, root: str) -> SnmpResponse:
        cursor = rfc1902.ObjectName(root)
        root_t = cursor.asTuple()
        depth = len(root_t)
        last_t = root_t
        bulk = target.version is not SnmpVersion.V1
        send = self._sender(peer, "bulk" if bulk else "next")
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
            # one more than the rows still allowed, to tell a full table from a cut one
            reps = max(1, min(repetitions, target.max_rows - len(out) + 1))
            error_ind, status, _index, raw, sent = await self._exchange(
                peer,
                target,
                send,
                ((cursor, _NULL),),
                attempts=min(budget, target.retries + 1),
                repetitions=reps,
            )
            requests += sent
            if error_ind is not None:
                error = self._indication_error(error_ind, target, sent)
                if out:
                    problems.append(f"walk of {root} failed after {len(out)} rows: {error.message}")
                return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
            if status == NO_SUCH_NAME and not bulk:
                break  # SNMPv1's end of the MIB view
            if status == TOO_BIG and bulk and repetitions > 1:
                repetitions = max(1, repetitions // 2)
                continue
            if status:
                error = self._status_error(status, _index, ((cursor, _NULL),))
                return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
            if not raw:
                problems.append(f"walk of {root} stopped: empty response after {len(out)} rows")
                break
            done = False
            for name, value in raw:
                name_t = name.asTuple()
                if name_t[:depth] != root_t or value.tagSet == rfc1905.EndOfMibView.tagSet:
                    done = True
                    break
                if name_t <= last_t:
                    problems.append(f"walk of {root} stopped: OID did not increase ({name} after {cursor})")
                    done = True
                    break
                if len(out) >= target.max_rows:
                    truncated = True
                    problems.append(f"walk of {root} stopped at max_rows={target.max_rows}")
                    done = True
                    break
                out.append(to_varbind(name, value))
                last_t = name_t
                cursor = name
            if done:
                break
        return SnmpResponse(tuple(out), None, requests, truncated, tuple(problems))

    # -- one request -----------------------------------------------------------------------------

    def _sender(self, peer: _Peer, kind: str) -> Callable[..., None]:
        engine = peer.engine
        if kind == "get":

            def send(varbinds: Sequence[_Raw], fut: asyncio.Future[_Result], reps: int) -> None:
                engine.get_gen.send_varbinds(
                    engine.snmp, peer.target, None, peer.context, varbinds, _on_response, fut
                )

        elif kind == "next":

            def send(varbinds: Sequence[_Raw], fut: asyncio.Future[_Result], reps: int) -> None:
                engine.next_gen.send_varbinds(
                    engine.snmp, peer.target, None, peer.context, varbinds, _on_response, fut
                )

        else:

            def send(varbinds: Sequence[_Raw], fut: asyncio.Future[_Result], reps: int) -> None:
                engine.bulk_gen.send_varbinds(
                    engine.snmp, peer.target, None, peer.context, 0, reps, varbinds, _on_response, fut
                )

        return send

    async def _exchange(
        self,
        peer: _Peer,
        target: SnmpTarget,
        send: Callable[..., None],
        varbinds: Sequence[_Raw],
        *,
        attempts: int,
        repetitions: int = 0,
    ) -> tuple[Any, int, int, Sequence[_Raw], int]:
        """Send, and resend on timeout up to ``attempts`` PDUs in all (pysnmp's own retries are off
        so that the count is known). Returns the raw result and the PDUs sent."""
        loop = asyncio.get_running_loop()
        sent = 0
        result: _Result = (errind.requestTimedOut, 0, 0, ())
        while sent < attempts:
            if self._closed:
                return (_CLOSED, 0, 0, (), sent)
            sent += 1
            fut: asyncio.Future[_Result] = loop.create_future()
            self._pending.add(fut)
            try:
                send(varbinds, fut, repetitions)
                result = await fut
            except StatusInformation as exc:
                # raised before anything was sent, e.g. a USM user that cannot be used
                result = (exc.get("errorIndication", exc), 0, 0, ())
            finally:
                self._pending.discard(fut)
            if not isinstance(result[0], errind.RequestTimedOut):
                break
        error_ind, status, index, raw = result
        return error_ind, int(status), int(index), raw, sent

    # -- errors ----------------------------------------------------------------------------------

    def _indication_error(self, indication: Any, target: SnmpTarget, sent: int) -> ProbeError:
        if isinstance(indication, errind.RequestTimedOut):
            return ProbeError(
                ErrorKind.TIMEOUT,
                f"no response from {target.host}:{target.port} after {sent} request(s) "
                f"of {target.timeout:g} s",
            )
        if indication == _CLOSED:
            return ProbeError(ErrorKind.INTERNAL, _CLOSED)
        for cls, words in _AUTH_ERRORS.items():
            if isinstance(indication, cls):
                return ProbeError(ErrorKind.AUTH, f"{words} ({_describe(target)})")
        return ProbeError(ErrorKind.BAD_VALUE, f"SNMP error from {target.host}:{target.port}: {indication}")

    @staticmethod
    def _status_error(status: int, index: int, chunk: Sequence[_Raw]) -> ProbeError:
        name = ERROR_STATUS_NAMES[status] if 0 <= status < len(ERROR_STATUS_NAMES) else f"error {status}"
        where = f" at {chunk[index - 1][0]}" if 0 < index <= len(chunk) else ""
        if status == NO_SUCH_NAME:
            kind = ErrorKind.NO_SUCH_OBJECT
        elif status in _ACCESS_ERRORS:
            kind = ErrorKind.AUTH
        else:
            kind = ErrorKind.BAD_VALUE
        return ProbeError(kind, f"agent answered {name}{where}")

    # -- engine set-up ---------------------------------------------------------------------------

    async def _peer(self, target: SnmpTarget) -> _Peer | ProbeError:
        key = (target.credential_key(), target.host, target.port, target.timeout)
        peer = self._peers.get(key)
        if peer is not None:
            return peer
        if self._closed:
            return ProbeError(ErrorKind.INTERNAL, _CLOSED)
        if target.version is SnmpVersion.V3 and not target.user:
            return ProbeError(ErrorKind.AUTH, f"SNMPv3 needs a user ({_describe(target)})")
        if target.version is not SnmpVersion.V3 and target.community is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv{target.version.value} needs a community")
        if target.priv_key is not None and target.auth_key is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv3 privacy needs an auth key ({_describe(target)})")
        address = await self._resolve(target.host, target.port)
        if isinstance(address, ProbeError):
            return address
        async with self._setup_lock:
            peer = self._peers.get(key)
            if peer is None:
                peer = await self._build_peer(target, address)
                self._peers[key] = peer
        return peer

    @staticmethod
    async def _resolve(host: str, port: int) -> tuple[int, tuple[str, int]] | ProbeError:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            return family, (str(ip), port)
        try:
            infos = await executors.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            return ProbeError(ErrorKind.UNREACHABLE, f"cannot resolve {host}: {exc}")
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, like most agents
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), int(sockaddr[1]))

    async def _build_peer(self, target: SnmpTarget, address: tuple[int, tuple[str, int]]) -> _Peer:
        family, sockaddr = address
        engine = await self._engine_for(target)
        snmp = engine.snmp
        if target.version is SnmpVersion.V3:
            security_name = await self._add_user(engine, target)
        else:
            security_name = self._add_community(engine, target)
        level = target.security_level if target.version is SnmpVersion.V3 else "noAuthNoPriv"
        mp_model = _MP_MODEL[target.version]
        params_key = (security_name, level, mp_model)
        params_name = engine.params.get(params_key)
        if params_name is None:
            params_name = f"p{next(self._names)}"
            lcd.add_target_parameters(snmp, params_name, security_name, level, mp_model)
            engine.params[params_key] = params_name
        domain = self._open_domain(engine, family)
        # the parameters come typed as pysnmp's own lookups type them (one row per credential)
        _mp, sec_model, sec_name, sec_level = rfc3413_config.get_target_parameters(snmp, params_name)
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        peer_address = snmp.transport_dispatcher.get_transport(domain).ADDRESS_TYPE(sockaddr)
        # timeouts in centiseconds, as SNMP-TARGET-MIB keeps them; retries are ours (see _exchange)
        info = (domain, peer_address.set_local_address(local), target.timeout * 100, 0)
        context = target.context.encode() if target.version is SnmpVersion.V3 else b""
        return _Peer(engine, (*info, mp_model, sec_model, sec_name, sec_level), context)

    async def _engine_for(self, target: SnmpTarget) -> _Engine:
        if target.version is SnmpVersion.V3:
            assert target.user is not None
            wanted = target.credential_key()
            for engine in self._engines:
                if engine.users.get(target.user, wanted) == wanted:
                    return engine
        elif self._engines:
            return self._engines[0]
        # building the engine loads its MIB modules: tens of milliseconds, kept off the loop
        snmp = await executors.CONFIG.run(SnmpEngine)
        snmp.register_transport_dispatcher(AsyncioDispatcher(loop=asyncio.get_running_loop()))
        engine = _Engine(snmp)
        self._engines.append(engine)
        if len(self._engines) > 1:
            log.info(
                "SNMPv3 user %s is used with more than one key set: polling it through engine %d",
                target.user,
                len(self._engines),
            )
        return engine

    def _add_community(self, engine: _Engine, target: SnmpTarget) -> str:
        assert target.community is not None
        key = target.credential_key()[1:2]  # the community alone; v1 and v2c share the entry
        index = engine.communities.get(key)
        if index is None:
            index = f"c{next(self._names)}"
            lcd.add_v1_system(engine.snmp, index, target.community.get_secret_value())
            engine.communities[key] = index
        return index

    async def _add_user(self, engine: _Engine, target: SnmpTarget) -> str:
        user = target.user
        assert user is not None
        if user in engine.users:
            return user
        auth_id, priv_id = lcd.USM_AUTH_NONE, lcd.USM_PRIV_NONE
        auth_secret = priv_secret = None
        if target.auth_key is not None:
            auth_id = _AUTH[target.auth_protocol or AuthProtocol.SHA]
            auth_secret = target.auth_key.get_secret_value().encode()
        if target.priv_key is not None:
            priv_id = _PRIV[target.priv_protocol or PrivProtocol.AES]
            priv_secret = target.priv_key.get_secret_value().encode()
        # RFC 3414 password-to-key hashes a megabyte per key: done in a thread, once per key set;
        # pysnmp then only localizes these master keys to each agent's engine ID
        auth_master, priv_master = await executors.CONFIG.run(
            _master_keys, auth_id, auth_secret, priv_id, priv_secret
        )
        lcd.add_v3_user(
            engine.snmp,
            user,
            auth_id,
            auth_master,
            priv_id,
            priv_master,
            authKeyType=lcd.USM_KEY_TYPE_MASTER,
            privKeyType=lcd.USM_KEY_TYPE_MASTER,
        )
        engine.users[user] = target.credential_key()
        return user

    def _open_domain(self, engine: _Engine, family: int) -> tuple[int, ...]:
        domain = engine.domains.get(family)
        if domain is not None:
            return domain
        if family == socket.AF_INET6:
            domain, transport_cls, bind_to = udp6.DOMAIN_NAME, udp6.Udp6AsyncioTransport, ("::", 0)
        else:
            domain, transport_cls, bind_to = udp.DOMAIN_NAME, udp.UdpAsyncioTransport, ("0.0.0.0", 0)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._enlarge_receive_buffer(sock)
            sock.bind(bind_to)
            sock.setblocking(False)
            # pysnmp's client mode opens its own socket out of reach; handing it ours through
            # server mode is the public way to control the socket options
            transport = transport_cls(loop=asyncio.get_running_loop()).open_server_mode(sock=sock)
        except BaseException:
            sock.close()
            raise
        lcd.add_transport(engine.snmp, domain, transport)
        engine.domains[family] = domain
        return tuple(domain)

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


def _master_keys(
    auth_id: tuple[int, ...], auth_secret: bytes | None, priv_id: tuple[int, ...], priv_secret: bytes | None
) -> tuple[Any, Any]:
    auth_master = lcd.AUTH_SERVICES[auth_id].hash_passphrase(auth_secret) if auth_secret else None
    priv_master = lcd.PRIV_SERVICES[priv_id].hash_passphrase(auth_id, priv_secret) if priv_secret else None
    return auth_master, priv_master


def _on_response(
    _engine: Any,
    _handle: Any,
    error_indication: Any,
    error_status: Any,
    error_index: Any,
    varbinds: Any,
    fut: asyncio.Future[_Result],
) -> None:
    # a cancelled poll (deadline) leaves its future behind; pysnmp still reports into it
    if not fut.done():
        fut.set_result((error_indication, error_status, error_index, varbinds))


def create_transport(*, force_pysnmp: bool = False) -> SnmpTransport:
    """The transport the daemon uses: SNMP v1/v2c through the project's own codec (``snmp_fast``, several
    times cheaper per poll), SNMPv3 through pysnmp. ``force_pysnmp`` sends everything through pysnmp,
    for tests and benchmarks that compare the two. Sockets and engines open lazily, on the running
    loop of the first poll."""
    if force_pysnmp:
        return PysnmpTransport()
    return CompositeSnmpTransport(FastSnmpTransport(), PysnmpTransport())
