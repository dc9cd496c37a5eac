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
import functools
import itertools
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config as lcd
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import config as rfc3413_config
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.api import v2c
from pysnmp.proto.error import StatusInformation
from pysnmp.proto.proxy import rfc2576 as v1_proxy

from .. import executors
from ..config.models import AuthProtocol, PrivProtocol, SnmpVersion
from ..config.resolve import SnmpTarget
from ..model.observation import ErrorKind, ProbeError
from . import snmp_driver
from .ber import parse_oid
from .snmp_driver import MAX_VARBINDS_PER_PDU, Reply, Request, closed_error, describe
from .snmp_fast import CompositeSnmpTransport, FastSnmpTransport
from .snmp_net import RECEIVE_BUFFER_BYTES, resolve_udp
from .snmp_types import SnmpTransport, SnmpType, Varbind

__all__ = [
    "MAX_VARBINDS_PER_PDU",
    "RECEIVE_BUFFER_BYTES",
    "PysnmpTransport",
    "create_transport",
    "to_varbind",
]

log = logging.getLogger(__name__)

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
_CLOSED: Final = snmp_driver.CLOSED
#: SNMPv3 resends after a report that the agent's engine ID or time was not known yet (RFC 3414
#: discovery), before the report counts as the answer; pysnmp's command generators allow as many.
_DISCOVERY_RESENDS: Final = 4
_BAD_RESPONSE: Final = "badResponse"  # an answer that does not match its request, in pysnmp's word


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


@dataclass(slots=True, eq=False)
class _Sent:
    """One request PDU on its way, until its answer (or the report that ends it)."""

    target: tuple[Any, ...]  # domain, address, timeout (cs), retries, mp model, security model/name/level
    context: Any  # SnmpAdminString
    pdu: Any  # the SNMPv2 PDU as built; converted for SNMPv1 on the wire
    fut: asyncio.Future[_Result]
    discovery: int = 0


class _Requests:
    """GET, GETNEXT and GETBULK through pysnmp's message and PDU dispatcher (RFC 3412 sendPdu).

    pysnmp's command generators look each target up by name in the engine's SNMP-TARGET-MIB. A row
    per device costs ~1.4 ms to add, and each added row makes pysnmp's community check rebuild its
    transport-to-tag map, O(rows), on the next response: over the first cycle of 20,000 devices
    that is quadratic and stalls the loop for minutes. The dispatcher underneath takes the target as
    data and is public API, so requests go to it directly; what RFC 3413 (3.1) leaves to a command
    generator is done here: the SNMPv3 discovery resends, the request-id match and the v1/v2c PDU
    conversion. Retries after a timeout are the caller's (see :meth:`PysnmpTransport._request`).
    """

    def __init__(self, snmp_engine: Any) -> None:
        self._snmp = snmp_engine
        (self._admin_string,) = snmp_engine.get_mib_builder().import_symbols(
            "SNMP-FRAMEWORK-MIB", "SnmpAdminString"
        )

    def send(self, target: tuple[Any, ...], context: bytes, pdu: Any, fut: asyncio.Future[_Result]) -> None:
        """Send ``pdu``; ``fut`` gets its outcome. Raises StatusInformation when nothing could be sent."""
        self._send(_Sent(target, self._admin_string(context), pdu, fut))

    def _send(self, sent: _Sent) -> None:
        domain, address, timeout, _retries, mp_model, sec_model, sec_name, sec_level = sent.target
        ticks = float(timeout) / 100 / self._snmp.transport_dispatcher.get_timer_resolution()
        wire_pdu, pdu_version = (v1_proxy.v2_to_v1(sent.pdu), 0) if mp_model == 0 else (sent.pdu, 1)
        self._snmp.message_dispatcher.send_pdu(
            self._snmp,
            domain,
            address,
            mp_model,
            sec_model,
            sec_name,
            sec_level,
            None,  # contextEngineId: the agent's own
            sent.context,
            pdu_version,
            wire_pdu,
            True,
            ticks,
            self._on_response,
            sent,
        )

    def _on_response(  # noqa: PLR0917 - the dispatcher calls back with these twelve positional arguments
        self,
        _snmp: Any,
        mp_model: Any,
        sec_model: Any,
        _sec_name: Any,
        _sec_level: Any,
        _context_engine_id: Any,
        _context_name: Any,
        pdu_version: Any,
        pdu: Any,
        status_information: Any,
        _handle: Any,
        sent: _Sent,
    ) -> None:
        if status_information:
            indication = status_information["errorIndication"]
            discovering = isinstance(indication, errind.NotInTimeWindow | errind.UnknownEngineID)
            if discovering and sent.discovery < _DISCOVERY_RESENDS:
                sent.discovery += 1
                try:
                    self._send(sent)
                except StatusInformation as exc:
                    _settle(sent.fut, (exc.get("errorIndication", exc), 0, 0, ()))
                return
            _settle(sent.fut, (indication, 0, 0, ()))
            return
        expected_mp, expected_sec = sent.target[4], sent.target[5]
        expected_version = 0 if expected_mp == 0 else 1
        if mp_model != expected_mp or sec_model != expected_sec or pdu_version != expected_version:
            _settle(sent.fut, (_BAD_RESPONSE, 0, 0, ()))
            return
        if mp_model == 0:
            pdu = v1_proxy.v1_to_v2(pdu, sent.pdu)
        if v2c.apiPDU.get_request_id(pdu) != v2c.apiPDU.get_request_id(sent.pdu):
            _settle(sent.fut, (_BAD_RESPONSE, 0, 0, ()))
            return
        status = v2c.apiPDU.get_error_status(pdu)
        index = v2c.apiPDU.get_error_index(pdu, muteErrors=True)
        _settle(sent.fut, (None, status, index, v2c.apiPDU.get_varbinds(pdu)))


def _settle(fut: asyncio.Future[_Result], result: _Result) -> None:
    # a cancelled poll (deadline) leaves its future behind; the dispatcher still reports into it
    if not fut.done():
        fut.set_result(result)


def _pdu(request: Request, varbinds: Sequence[_Raw]) -> Any:
    if request.kind == "bulk":
        pdu = v2c.GetBulkRequestPDU()
        v2c.apiBulkPDU.set_defaults(pdu)
        v2c.apiBulkPDU.set_non_repeaters(pdu, 0)
        v2c.apiBulkPDU.set_max_repetitions(pdu, request.repetitions)
        v2c.apiBulkPDU.set_varbinds(pdu, varbinds)
        return pdu
    pdu = v2c.GetRequestPDU() if request.kind == "get" else v2c.GetNextRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_varbinds(pdu, varbinds)
    return pdu


@functools.lru_cache(maxsize=65_536)
def _parsed_name(oid: str) -> tuple[int, ...]:
    """A requested OID as pysnmp's ``asTuple()`` gives it (profiles ask the same few hundred)."""
    return parse_oid(oid)


class _Rows:
    """How the driver reads pysnmp's (name, value) pairs."""

    @staticmethod
    def oid(row: _Raw) -> tuple[int, ...]:
        return tuple(row[0].asTuple())

    @staticmethod
    def named(row: _Raw, oid: str) -> bool:
        return tuple(row[0].asTuple()) == _parsed_name(oid)

    @staticmethod
    def ends_view(row: _Raw) -> bool:
        return bool(row[1].tagSet == rfc1905.EndOfMibView.tagSet)

    @staticmethod
    def varbind(row: _Raw) -> Varbind:
        return to_varbind(row[0], row[1])


_ROWS: Final = _Rows()


@dataclass(slots=True)
class _Engine:
    """One SnmpEngine and its sockets.

    USM keys users by name, so one engine holds one key set per user name; a second key set for
    the same name (a wrong key being tried, two vendors' defaults) gets an engine of its own.
    """

    snmp: Any
    requests: _Requests
    users: dict[str, tuple[object, ...]] = field(default_factory=dict)
    communities: dict[tuple[object, ...], str] = field(default_factory=dict)
    params: dict[tuple[str, str, int], str] = field(default_factory=dict)
    domains: dict[int, tuple[int, ...]] = field(default_factory=dict)  # address family -> domain


@dataclass(frozen=True, slots=True)
class _Peer:
    engine: _Engine
    target: tuple[Any, ...]  # what _Requests.send takes in place of a target name
    context: bytes


class PysnmpTransport(snmp_driver.DrivenTransport[_Raw, _Peer]):
    """:class:`SnmpTransport` on pysnmp 7. One instance serves all polls of an event loop."""

    bad_value_errors = (_BadValue,)

    def __init__(
        self,
        *,
        max_varbinds_per_pdu: int = MAX_VARBINDS_PER_PDU,
        receive_buffer: int = RECEIVE_BUFFER_BYTES,
    ) -> None:
        super().__init__(_ROWS, max_varbinds_per_pdu=max_varbinds_per_pdu, receive_buffer=receive_buffer)
        self._engines: list[_Engine] = []
        self._peers: dict[tuple[object, ...], _Peer] = {}
        self._varbinds: collections.OrderedDict[tuple[str, ...], tuple[_Raw, ...]] = collections.OrderedDict()
        self._pending: set[asyncio.Future[_Result]] = set()
        self._names = itertools.count(1)

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

    def _bad_value(self, target: SnmpTarget, exc: Exception) -> ProbeError:
        return ProbeError(ErrorKind.BAD_VALUE, str(exc))

    # -- requests --------------------------------------------------------------------------------

    def _request_varbinds(self, oids: tuple[str, ...]) -> tuple[_Raw, ...]:
        cached = self._varbinds.get(oids)
        if cached is not None:
            self._varbinds.move_to_end(oids)
            return cached
        varbinds = tuple((rfc1902.ObjectName(name), _NULL) for name in oids)
        self._varbinds[oids] = varbinds
        if len(self._varbinds) > _VARBIND_CACHE_SIZE:
            self._varbinds.popitem(last=False)
        return varbinds

    async def _request(self, peer: _Peer, target: SnmpTarget, request: Request, attempts: int) -> Reply[_Raw]:
        """The driver's ``exchange()``: send, and resend on timeout up to ``attempts`` PDUs in all
        (pysnmp's own retries are off so that the count is known)."""
        if request.kind == "get":
            varbinds = self._request_varbinds(request.oids)
        else:
            varbinds = ((rfc1902.ObjectName(request.oids[0]), _NULL),)
        loop = asyncio.get_running_loop()
        sent = 0
        result: _Result = (errind.requestTimedOut, 0, 0, ())
        while sent < attempts:
            if self._closed:
                return Reply(sent, error=closed_error())
            sent += 1
            fut: asyncio.Future[_Result] = loop.create_future()
            self._pending.add(fut)
            try:
                peer.engine.requests.send(peer.target, peer.context, _pdu(request, varbinds), fut)
                result = await fut
            except StatusInformation as exc:
                # raised before anything was sent, e.g. a USM user that cannot be used
                result = (exc.get("errorIndication", exc), 0, 0, ())
            finally:
                self._pending.discard(fut)
            if not isinstance(result[0], errind.RequestTimedOut):
                break
        indication, status, index, raw = result
        if isinstance(indication, errind.RequestTimedOut):
            return Reply(sent, timed_out=True)
        if indication is not None:
            return Reply(sent, error=self._indication_error(indication, target))
        return Reply(sent, int(status), int(index), raw)

    @staticmethod
    def _indication_error(indication: Any, target: SnmpTarget) -> ProbeError:
        if indication == _CLOSED:
            return closed_error()
        for cls, words in _AUTH_ERRORS.items():
            if isinstance(indication, cls):
                return ProbeError(ErrorKind.AUTH, f"{words} ({describe(target)})")
        return ProbeError(ErrorKind.BAD_VALUE, f"SNMP error from {target.host}:{target.port}: {indication}")

    # -- engine set-up ---------------------------------------------------------------------------

    async def _peer(self, target: SnmpTarget) -> _Peer | ProbeError:
        key = (target.credential_key(), target.host, target.port, target.timeout)
        peer = self._peers.get(key)
        if peer is not None:
            return peer
        if self._closed:
            return ProbeError(ErrorKind.INTERNAL, _CLOSED)
        if target.version is SnmpVersion.V3 and not target.user:
            return ProbeError(ErrorKind.AUTH, f"SNMPv3 needs a user ({describe(target)})")
        if target.version is not SnmpVersion.V3 and target.community is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv{target.version.value} needs a community")
        if target.priv_key is not None and target.auth_key is None:
            return ProbeError(ErrorKind.AUTH, f"SNMPv3 privacy needs an auth key ({describe(target)})")
        address = await resolve_udp(target.host, target.port)
        if isinstance(address, ProbeError):
            return address
        async with self._setup_lock:
            peer = self._peers.get(key)
            if peer is None:
                peer = await self._build_peer(target, address)
                self._peers[key] = peer
        return peer

    async def _build_peer(self, target: SnmpTarget, address: tuple[int, tuple[Any, ...]]) -> _Peer:
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
        peer_address = snmp.transport_dispatcher.get_transport(domain).ADDRESS_TYPE(
            (str(sockaddr[0]), int(sockaddr[1]))
        )
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
        engine = _Engine(snmp, _Requests(snmp))
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
            self._buffer.enlarge(sock)
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


def _master_keys(
    auth_id: tuple[int, ...], auth_secret: bytes | None, priv_id: tuple[int, ...], priv_secret: bytes | None
) -> tuple[Any, Any]:
    auth_master = lcd.AUTH_SERVICES[auth_id].hash_passphrase(auth_secret) if auth_secret else None
    priv_master = lcd.PRIV_SERVICES[priv_id].hash_passphrase(auth_id, priv_secret) if priv_secret else None
    return auth_master, priv_master


def create_transport(*, force_pysnmp: bool = False, v3_pysnmp: bool = False) -> SnmpTransport:
    """The transport the daemon uses: every version through the project's own codec (``snmp_fast``,
    SNMPv3 with ``usm``; several times cheaper per poll than pysnmp). ``force_pysnmp`` sends
    everything through pysnmp, ``v3_pysnmp`` only SNMPv3, for tests and benchmarks that compare
    them. Sockets and engines open lazily, on the running loop of the first poll."""
    if force_pysnmp:
        return PysnmpTransport()
    if v3_pysnmp:
        return CompositeSnmpTransport(FastSnmpTransport(), PysnmpTransport())
    return FastSnmpTransport()
