"""Why an SNMPv3 device does not answer, in words an operator can act on.

Two exchanges tell the usual misconfigurations apart:

1. Engine discovery: an unauthenticated request with an empty user, which every SNMPv3 agent must
   answer with a Report (``usmStatsUnknownEngineIDs``) carrying its engine ID, boots and time.
   Silence here means nothing answers SNMPv3 at that address at all.
2. One GET of sysUpTime with the configured user and keys. An agent that cannot accept it says
   why in a Report PDU (RFC 3414 section 3.2): its varbind is one of the ``usmStats`` counters
   under 1.3.6.1.6.3.15.1.1, and :data:`REPORTS` words each of them.

Nothing printed or returned contains a key: only the user name, the protocols and the engine ID.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from ..config.models import AuthProtocol, PrivProtocol, SnmpVersion
from ..config.resolve import SnmpTarget

SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
USM_STATS: Final = "1.3.6.1.6.3.15.1.1"


class V3Problem(StrEnum):
    OK = "ok"
    NO_ANSWER = "no_answer"
    UNKNOWN_USER = "unknown_user"
    WRONG_AUTH_KEY = "wrong_auth_key"
    WRONG_PRIV_KEY = "wrong_priv_key"
    NOT_IN_TIME_WINDOW = "not_in_time_window"
    UNSUPPORTED_SECURITY_LEVEL = "unsupported_security_level"
    UNKNOWN_ENGINE_ID = "unknown_engine_id"
    NO_RESPONSE_TO_REQUEST = "no_response_to_request"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Discovery:
    engine_id: bytes
    boots: int
    time: int


@dataclass(frozen=True, slots=True)
class V3Diagnosis:
    problem: V3Problem
    message: str  # for the operator: what is wrong and what to check
    engine_id: str | None = None  # hex, once discovery got it
    engine_boots: int | None = None
    engine_time: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is V3Problem.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.value,
            "message": self.message,
            "engine_id": self.engine_id,
            "engine_boots": self.engine_boots,
            "engine_time": self.engine_time,
        }


#: usmStats report OIDs (SNMP-USER-BASED-SM-MIB) -> the problem they stand for
REPORTS: Final[dict[str, V3Problem]] = {
    f"{USM_STATS}.1.0": V3Problem.UNSUPPORTED_SECURITY_LEVEL,
    f"{USM_STATS}.2.0": V3Problem.NOT_IN_TIME_WINDOW,
    f"{USM_STATS}.3.0": V3Problem.UNKNOWN_USER,
    f"{USM_STATS}.4.0": V3Problem.UNKNOWN_ENGINE_ID,
    f"{USM_STATS}.5.0": V3Problem.WRONG_AUTH_KEY,
    f"{USM_STATS}.6.0": V3Problem.WRONG_PRIV_KEY,
}


def _level(target: SnmpTarget) -> str:
    if target.priv_key is not None:
        return (
            f"authPriv, {target.auth_protocol or AuthProtocol.SHA}/{target.priv_protocol or PrivProtocol.AES}"
        )
    if target.auth_key is not None:
        return f"authNoPriv, {target.auth_protocol or AuthProtocol.SHA}"
    return "noAuthNoPriv"


def explain(problem: V3Problem, target: SnmpTarget) -> str:
    """The operator's sentence for one problem. Names the user and protocols, never a key."""
    user = target.user or ""
    where = f"{target.host}:{target.port}"
    words = {
        V3Problem.OK: f"{where} accepts SNMPv3 user '{user}' ({_level(target)})",
        V3Problem.NO_ANSWER: (
            f"no answer from {where}, not even to SNMPv3 engine discovery: check that the device is up, "
            "that SNMP (v3) is enabled on it and on this port, and that no firewall or ACL drops UDP "
            "from this host"
        ),
        V3Problem.UNKNOWN_USER: (
            f"the agent at {where} answered but does not know SNMPv3 user '{user}': check the user "
            "name on the device (it is case-sensitive)"
        ),
        V3Problem.WRONG_AUTH_KEY: (
            f"the agent at {where} knows user '{user}' but rejected the authentication digest: the "
            f"auth key or the auth protocol ({target.auth_protocol or AuthProtocol.SHA}) differs "
            "from the device's"
        ),
        V3Problem.WRONG_PRIV_KEY: (
            f"the agent at {where} accepted the authentication of user '{user}' but could not "
            f"decrypt the request: the priv key or the priv protocol "
            f"({target.priv_protocol or PrivProtocol.AES}) differs from the device's"
        ),
        V3Problem.NOT_IN_TIME_WINDOW: (
            f"the agent at {where} says the request is outside its time window (engine boots/time "
            "disagree): usually two devices share one engine ID, or the agent's engine time jumped; "
            "give each device its own engine ID, or restart its agent"
        ),
        V3Problem.UNSUPPORTED_SECURITY_LEVEL: (
            f"the agent at {where} knows user '{user}' but not at security level {_level(target)}: "
            "configure the same level (auth and priv keys present or absent) as on the device"
        ),
        V3Problem.UNKNOWN_ENGINE_ID: (
            f"the agent at {where} did not accept its own engine ID back: its SNMPv3 engine is "
            "misbehaving; restart its agent"
        ),
        V3Problem.NO_RESPONSE_TO_REQUEST: (
            f"the agent at {where} answers SNMPv3 discovery but not the request of user '{user}': "
            "many agents silently drop requests with a wrong priv key or an unknown context "
            f"('{target.context}'), or the user has no access (VACM view) to sysUpTime"
        ),
        V3Problem.OTHER: f"SNMPv3 request to {where} failed",
    }
    return words[problem]


def diagnosis(
    problem: V3Problem, target: SnmpTarget, found: Discovery | None = None, detail: str = ""
) -> V3Diagnosis:
    message = explain(problem, target) + (f" ({detail})" if detail else "")
    if found is None:
        return V3Diagnosis(problem, message)
    return V3Diagnosis(problem, message, found.engine_id.hex(), found.boots, found.time)


def diagnosis_from_report(oid: str, target: SnmpTarget, found: Discovery | None = None) -> V3Diagnosis:
    """What a Report PDU whose first varbind is ``oid`` means for ``target``."""
    problem = REPORTS.get(oid.lstrip("."), V3Problem.OTHER)
    return diagnosis(problem, target, found, "" if problem is not V3Problem.OTHER else f"report {oid}")


# -- raw SNMPv3 messages ---------------------------------------------------------------------------


def build_request(
    *,
    msg_id: int,
    engine_id: bytes = b"",
    boots: int = 0,
    engine_time: int = 0,
    user: bytes = b"",
    context: bytes = b"",
    flags: int = 0x04,
    auth_key_localized: bytes | None = None,
    auth_protocol: AuthProtocol = AuthProtocol.SHA,
    encrypted_pdu: bytes | None = None,
    priv_parameters: bytes = b"",
) -> bytes:
    """One SNMPv3 GET of sysUpTime, built by hand so every header field is ours to choose.

    ``flags``: 0x04 reportable, | 0x01 auth, | 0x02 priv. With auth, the message is signed with the
    localized key (HMAC per RFC 3414/7860); with priv, ``encrypted_pdu`` stands in for the scoped PDU.
    """
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import rfc1902
    from pysnmp.proto.api import v2c
    from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    from .snmp_transport import _AUTH

    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, msg_id)
    v2c.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(SYS_UPTIME), v2c.Null(""))])

    auth_service: Any = None
    digest_length = 0
    if flags & 0x01:
        from pysnmp.entity import config as lcd

        auth_service = lcd.AUTH_SERVICES[_AUTH[auth_protocol]]
        digest_length = int(auth_service.digest_length)

    params = UsmSecurityParameters()
    params["msgAuthoritativeEngineId"] = engine_id
    params["msgAuthoritativeEngineBoots"] = boots
    params["msgAuthoritativeEngineTime"] = engine_time
    params["msgUserName"] = user
    params["msgAuthenticationParameters"] = b"\x00" * digest_length
    params["msgPrivacyParameters"] = priv_parameters

    msg = SNMPv3Message()
    msg["msgVersion"] = 3
    header = msg["msgGlobalData"]
    header["msgID"] = msg_id
    header["msgMaxSize"] = 65507
    header["msgFlags"] = bytes([flags])
    header["msgSecurityModel"] = 3
    msg["msgSecurityParameters"] = encoder.encode(params)
    data = msg["msgData"]
    if encrypted_pdu is not None:
        data["encryptedPDU"] = encrypted_pdu
    else:
        scoped = data["plaintext"]
        scoped["contextEngineId"] = engine_id
        scoped["contextName"] = context
        scoped["data"]["get-request"] = pdu
    whole: bytes = encoder.encode(msg)
    if auth_service is not None:
        assert auth_key_localized is not None
        whole = bytes(
            auth_service.authenticate_outgoing_message(rfc1902.OctetString(auth_key_localized), whole)
        )
    return whole


@dataclass(frozen=True, slots=True)
class Reply:
    engine: Discovery
    pdu_type: str  # "report", "response", ...
    first_oid: str | None


def read_reply(message: bytes) -> Reply | None:
    """Engine ID, boots, time and the PDU's first varbind of an unencrypted SNMPv3 reply."""
    from pyasn1.codec.ber import decoder
    from pyasn1.error import PyAsn1Error
    from pysnmp.proto.api import v2c
    from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    try:
        msg, _ = decoder.decode(message, asn1Spec=SNMPv3Message())
        params, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        engine = Discovery(
            bytes(params["msgAuthoritativeEngineId"]),
            int(params["msgAuthoritativeEngineBoots"]),
            int(params["msgAuthoritativeEngineTime"]),
        )
        data = msg["msgData"]
        if data.getName() != "plaintext":
            return Reply(engine, "encrypted", None)
        pdus = data["plaintext"]["data"]
        kind = str(pdus.getName())
        varbinds = v2c.apiPDU.get_varbinds(pdus.getComponent())
    except (PyAsn1Error, ValueError, TypeError, KeyError):
        return None
    first = str(varbinds[0][0]) if len(varbinds) else None
    return Reply(engine, kind, first)


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


async def exchange(host: str, port: int, message: bytes, timeout: float, attempts: int) -> bytes | None:
    """Send ``message``, resending on timeout; the first datagram back, or None."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    transport, protocol = await loop.create_datagram_endpoint(_Exchange, family=family)
    try:
        for _ in range(max(attempts, 1)):
            transport.sendto(message, address)
            try:
                async with asyncio.timeout(timeout):
                    return await protocol.replies.get()
            except TimeoutError:
                continue
        return None
    finally:
        transport.close()


async def discover(host: str, port: int, *, timeout: float = 2.0, attempts: int = 2) -> Discovery | None:
    """The agent's engine ID, boots and time (RFC 3414 section 4), or None when nothing answers."""
    msg_id = int.from_bytes(os.urandom(3), "big")
    reply = await exchange(host, port, build_request(msg_id=msg_id), timeout, attempts)
    found = read_reply(reply) if reply is not None else None
    if found is None or not found.engine.engine_id:
        return None
    return found.engine


# -- the diagnosis ---------------------------------------------------------------------------------


async def diagnose_v3(target: SnmpTarget) -> V3Diagnosis:
    """Tell unknown user, wrong auth key, wrong priv key, time window and no answer apart."""
    if target.version is not SnmpVersion.V3:
        raise ValueError("diagnose_v3 needs an SNMPv3 target")
    try:
        found = await discover(target.host, target.port, timeout=target.timeout, attempts=target.retries + 1)
    except OSError as exc:
        return diagnosis(V3Problem.NO_ANSWER, target, detail=f"{type(exc).__name__}: {exc.strerror or exc}")
    if found is None:
        return diagnosis(V3Problem.NO_ANSWER, target)
    indication = await _authenticated_get(target)
    if indication is None:
        return diagnosis(V3Problem.OK, target, found)
    return _from_indication(indication, target, found)


def _from_indication(indication: Any, target: SnmpTarget, found: Discovery) -> V3Diagnosis:
    from pysnmp.proto import errind

    if isinstance(indication, errind.RequestTimedOut):
        return diagnosis(V3Problem.NO_RESPONSE_TO_REQUEST, target, found)
    # pysnmp turns each usmStats report into an error indication; map it back to the report OID
    reports = {
        errind.UnsupportedSecurityLevel: f"{USM_STATS}.1.0",
        errind.NotInTimeWindow: f"{USM_STATS}.2.0",
        errind.UnknownUserName: f"{USM_STATS}.3.0",
        errind.UnknownEngineID: f"{USM_STATS}.4.0",
        errind.WrongDigest: f"{USM_STATS}.5.0",
        errind.DecryptionError: f"{USM_STATS}.6.0",
    }
    for cls, oid in reports.items():
        if isinstance(indication, cls):
            return diagnosis_from_report(oid, target, found)
    if isinstance(indication, errind.AuthenticationFailure | errind.AuthenticationError):
        return diagnosis(V3Problem.WRONG_AUTH_KEY, target, found)
    return diagnosis(V3Problem.OTHER, target, found, detail=str(indication))


async def _authenticated_get(target: SnmpTarget) -> Any:
    """pysnmp's error indication of one GET with the target's credentials, or None on success."""
    from pysnmp.entity.engine import SnmpEngine
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        ObjectIdentity,
        ObjectType,
        UdpTransportTarget,
        UsmUserData,
        get_cmd,
    )

    from .snmp_transport import _AUTH, _PRIV

    options: dict[str, Any] = {}
    if target.auth_key is not None:
        options["authKey"] = target.auth_key.get_secret_value()
        options["authProtocol"] = _AUTH[target.auth_protocol or AuthProtocol.SHA]
    if target.priv_key is not None:
        options["privKey"] = target.priv_key.get_secret_value()
        options["privProtocol"] = _PRIV[target.priv_protocol or PrivProtocol.AES]
    # a fresh engine: no cached engine ID or time window from earlier polls may colour the answer;
    # building it loads MIB modules (tens of milliseconds), so off the loop
    engine = await asyncio.to_thread(SnmpEngine)
    auth = UsmUserData(target.user or "", **options)
    try:
        transport = await UdpTransportTarget.create(
            (target.host, target.port), timeout=target.timeout, retries=target.retries
        )
        result = await get_cmd(
            engine,
            auth,
            transport,
            ContextData(contextName=target.context or ""),
            ObjectType(ObjectIdentity(SYS_UPTIME)),
            lookupMib=False,
        )
    finally:
        engine.close_dispatcher()
    indication, status, _index, _varbinds = result
    if indication is None and int(status) != 0:
        return None  # an error status is an answer: the credentials were accepted
    return indication
