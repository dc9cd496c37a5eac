"""SNMPv3 on the project's own BER codec: the message framing of RFC 3412 (msgGlobalData, the scoped
PDU) and the User-based Security Model of RFC 3414, for a manager (the non-authoritative side).

What this module does, and what it leaves to the transport (:mod:`.snmp_fast`):

* **Keys.** A password becomes a master key once per (auth protocol, password) (RFC 3414 A.2.1, a
  megabyte hashed: :func:`credentials`, run off the loop), and the master keys are localized once per
  agent engine ID (A.2.2, :func:`localize`). The privacy key is derived with the auth protocol's
  hash; AES-192/256 extend a short localized key as the Blumenthal draft (and net-snmp) do.
* **Protection.** HMAC-MD5-96 and HMAC-SHA-96 (RFC 3414), HMAC-SHA-2 (RFC 7860: 128/192/256/384-bit
  truncations), AES-128-CFB (RFC 3826), AES-192/256-CFB (Blumenthal draft) and DES-CBC (RFC 3414
  8), every one of them a primitive of the ``cryptography`` package: nothing here computes a
  cipher or a MAC itself.
* **Engine state.** :class:`EngineState` keeps one agent's engine ID, boots and time as learned by
  discovery, a ``notInTimeWindow`` report or an authenticated message (RFC 3414 3.2.7 b), and
  estimates the agent's time for the next request.
* **Reports.** :data:`REPORT_WORDS` words each ``usmStats`` report as the poll's error; the same
  words the pysnmp transport gives its error indications, and :mod:`.v3diag` explains.

No key, password or digest ever reaches a message or a log line here: only the user name.
"""

from __future__ import annotations

import hmac as _compare
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..config.models import AuthProtocol, PrivProtocol
from . import ber

__all__ = [
    "AUTH",
    "DISCOVERY_FLAGS",
    "MSG_MAX_SIZE",
    "PRIV",
    "REPORT",
    "REPORTABLE",
    "REPORT_WORDS",
    "USM_STATS",
    "Credentials",
    "EngineState",
    "LocalKeys",
    "Message",
    "ScopedPdu",
    "credentials",
    "decode_message",
    "decode_scoped_pdu",
    "encode_message",
    "localize",
    "password_to_key",
    "report_number",
]

VERSION_3: Final = 3
SECURITY_MODEL_USM: Final = 3
#: the largest message we accept, as we tell agents (RFC 3412: 484 at least; UDP's own limit here)
MSG_MAX_SIZE: Final = 65_507
REPORT: Final = 0xA8  # the Report PDU's tag
# msgFlags bits
AUTH: Final = 0x01
PRIV: Final = 0x02
REPORTABLE: Final = 0x04
DISCOVERY_FLAGS: Final = REPORTABLE
#: usmStats, SNMP-USER-BASED-SM-MIB: a report's first varbind is usmStats.N.0
USM_STATS: Final = (1, 3, 6, 1, 6, 3, 15, 1, 1)
UNSUPPORTED_SEC_LEVEL: Final = 1
NOT_IN_TIME_WINDOW: Final = 2
UNKNOWN_USER_NAME: Final = 3
UNKNOWN_ENGINE_ID: Final = 4
WRONG_DIGEST: Final = 5
DECRYPTION_ERROR: Final = 6
#: the poll's words for each usmStats report (and for the same failure found on our side)
REPORT_WORDS: Final[dict[int, str]] = {
    UNSUPPORTED_SEC_LEVEL: "unsupported security level",
    NOT_IN_TIME_WINDOW: "not in time window",
    UNKNOWN_USER_NAME: "unknown SNMPv3 user",
    UNKNOWN_ENGINE_ID: "unknown engine ID (SNMPv3 discovery failed)",
    WRONG_DIGEST: "wrong auth key",
    DECRYPTION_ERROR: "wrong priv key (decryption error)",
}
#: a response that fails our own check of its digest
RESPONSE_NOT_AUTHENTIC: Final = "wrong auth key (response failed authentication)"
#: RFC 3414 2.2.3: a message more than this many seconds off the agent's clock is refused
TIME_WINDOW: Final = 150
_MAX_INT: Final = 2**31 - 1
_PASSWORD_TO_KEY_OCTETS: Final = 1_048_576


# -- the protocols --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Auth:
    hash: Callable[[], hashes.HashAlgorithm]
    digest_length: int  # octets of msgAuthenticationParameters: the truncated HMAC


_AUTH: Final = {
    AuthProtocol.MD5: _Auth(hashes.MD5, 12),
    AuthProtocol.SHA: _Auth(hashes.SHA1, 12),
    AuthProtocol.SHA224: _Auth(hashes.SHA224, 16),
    AuthProtocol.SHA256: _Auth(hashes.SHA256, 24),
    AuthProtocol.SHA384: _Auth(hashes.SHA384, 32),
    AuthProtocol.SHA512: _Auth(hashes.SHA512, 48),
}
#: key octets each privacy protocol takes from the localized privacy key (DES: key, then pre-IV)
_PRIV_KEY_OCTETS: Final = {
    PrivProtocol.DES: 16,
    PrivProtocol.AES: 16,
    PrivProtocol.AES192: 24,
    PrivProtocol.AES256: 32,
}


def _digest(algorithm: Callable[[], hashes.HashAlgorithm], *parts: bytes) -> bytes:
    h = hashes.Hash(algorithm())
    for part in parts:
        h.update(part)
    return h.finalize()


def password_to_key(auth: AuthProtocol, password: bytes) -> bytes:
    """RFC 3414 A.2.1 (and RFC 7860 for SHA-2): the password repeated over a megabyte, hashed."""
    if not password:
        raise ValueError("an SNMPv3 key may not be empty")
    repeated = password * (_PASSWORD_TO_KEY_OCTETS // len(password) + 1)
    return _digest(_AUTH[auth].hash, repeated[:_PASSWORD_TO_KEY_OCTETS])


@dataclass(frozen=True, slots=True)
class Credentials:
    """A USM user's name, protocols and master keys (the passwords are not kept)."""

    user: bytes
    auth: AuthProtocol | None = None
    priv: PrivProtocol | None = None
    auth_master: bytes = field(default=b"", repr=False)
    priv_master: bytes = field(default=b"", repr=False)

    @property
    def flags(self) -> int:
        """msgFlags of a request at this user's level (reportable, as every request is)."""
        if self.priv is not None:
            return REPORTABLE | AUTH | PRIV
        if self.auth is not None:
            return REPORTABLE | AUTH
        return REPORTABLE


def credentials(
    user: str,
    auth: AuthProtocol | None,
    auth_password: str | None,
    priv: PrivProtocol | None,
    priv_password: str | None,
) -> Credentials:
    """The master keys of one user: milliseconds of hashing, so callers keep it off the loop. No
    auth password is noAuthNoPriv; a priv password needs an auth password (authPriv)."""
    name = user.encode()
    if auth_password is None:
        if priv_password is not None:
            raise ValueError("SNMPv3 privacy needs an auth key")
        return Credentials(name)
    auth = auth or AuthProtocol.SHA
    auth_master = password_to_key(auth, auth_password.encode())
    if priv_password is None:
        return Credentials(name, auth, None, auth_master)
    # the privacy password is turned into a key with the auth protocol's hash (RFC 3826 3.1.2.1)
    priv_master = password_to_key(auth, priv_password.encode())
    return Credentials(name, auth, priv or PrivProtocol.AES, auth_master, priv_master)


@dataclass(frozen=True, slots=True, eq=False)
class LocalKeys:
    """One user's keys localized to one agent engine ID, and what protecting a message takes."""

    engine_id: bytes
    credentials: Credentials
    digest_length: int
    _mac: hmac.HMAC | None = field(repr=False)  # keyed once; every message signs a copy
    _priv_key: bytes = field(repr=False)

    def sign(self, *parts: bytes) -> bytes:
        """The truncated HMAC of the message ``parts`` joined (its digest field zeroed)."""
        assert self._mac is not None
        mac = self._mac.copy()
        for part in parts:
            mac.update(part)
        return mac.finalize()[: self.digest_length]

    # -- privacy ---------------------------------------------------------------------------------

    def encrypt(self, scoped_pdu: bytes, boots: int, engine_time: int, salt: int) -> tuple[bytes, bytes]:
        """(encryptedPDU, msgPrivacyParameters) for ``scoped_pdu``; ``salt`` a 64-bit counter."""
        priv = self.credentials.priv
        if priv is PrivProtocol.DES:
            # RFC 3414 8.1.1.1: salt = boots and a 32-bit counter, IV = pre-IV XOR salt
            salt_octets = boots.to_bytes(4, "big") + (salt & 0xFFFF_FFFF).to_bytes(4, "big")
            iv = bytes(a ^ b for a, b in zip(self._priv_key[8:16], salt_octets, strict=True))
            padded = scoped_pdu + b"\x00" * (-len(scoped_pdu) % 8)
            encryptor = Cipher(TripleDES(self._priv_key[:8] * 3), modes.CBC(iv)).encryptor()
            return encryptor.update(padded) + encryptor.finalize(), salt_octets
        # RFC 3826 3.1.2.1: IV = boots, time and the 64-bit salt, as sent
        salt_octets = (salt & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + salt_octets
        encryptor = Cipher(algorithms.AES(self._priv_key), CFB(iv)).encryptor()
        return encryptor.update(scoped_pdu) + encryptor.finalize(), salt_octets

    def decrypt(self, data: bytes, boots: int, engine_time: int, priv_parameters: bytes) -> bytes | None:
        """The plaintext scoped PDU of an encryptedPDU, or None when it cannot be decrypted."""
        if len(priv_parameters) != 8:
            return None
        if self.credentials.priv is PrivProtocol.DES:
            if len(data) % 8:
                return None
            iv = bytes(a ^ b for a, b in zip(self._priv_key[8:16], priv_parameters, strict=True))
            decryptor = Cipher(TripleDES(self._priv_key[:8] * 3), modes.CBC(iv)).decryptor()
        else:
            iv = boots.to_bytes(4, "big") + engine_time.to_bytes(4, "big") + priv_parameters
            decryptor = Cipher(algorithms.AES(self._priv_key), CFB(iv)).decryptor()
        return decryptor.update(data) + decryptor.finalize()


def localize(creds: Credentials, engine_id: bytes) -> LocalKeys:
    """RFC 3414 A.2.2: Kul = H(Ku || engineID || Ku), for the auth and the privacy key."""
    if creds.auth is None:
        return LocalKeys(engine_id, creds, 0, None, b"")
    spec = _AUTH[creds.auth]
    auth_key = _digest(spec.hash, creds.auth_master, engine_id, creds.auth_master)
    priv_key = b""
    if creds.priv is not None:
        priv_key = _digest(spec.hash, creds.priv_master, engine_id, creds.priv_master)
        wanted = _PRIV_KEY_OCTETS[creds.priv]
        # Blumenthal draft 3.1.2.1 (net-snmp's way): Kul' = Kul || H(Kul) || H(Kul || H(Kul)) ...
        while len(priv_key) < wanted:
            priv_key += _digest(spec.hash, priv_key)
        priv_key = priv_key[:wanted]
    return LocalKeys(engine_id, creds, spec.digest_length, hmac.HMAC(auth_key, spec.hash()), priv_key)


# -- an agent's engine ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class EngineState:
    """What a manager knows of one agent's SNMP engine (RFC 3414 2.3: the non-authoritative side's
    notion of the authoritative engine's boots and time). ``generation`` changes whenever the
    engine ID, boots or time are learned anew, so a request can tell a resync from a stale report."""

    engine_id: bytes | None = None
    boots: int = 0
    time: int = 0  # the agent's engine time at ``learned_at``
    learned_at: float = 0.0  # our monotonic clock
    latest_time: int = 0  # latestReceivedEngineTime
    generation: int = 0

    def clock(self, now: float) -> tuple[int, int]:
        """(boots, time) to put in a request sent at ``now``."""
        return self.boots, min(_MAX_INT, self.time + max(0, int(now - self.learned_at)))

    def learn(self, engine_id: bytes, boots: int, engine_time: int, now: float) -> None:
        """Take the engine's ID, boots and time as given: discovery, an unknownEngineID report, or
        an authenticated notInTimeWindow report."""
        self.engine_id = engine_id
        self.boots = boots
        self.time = self.latest_time = engine_time
        self.learned_at = now
        self.generation += 1

    def observe(self, boots: int, engine_time: int, now: float) -> None:
        """An authenticated message's boots and time (RFC 3414 3.2.7 b): kept when newer."""
        if boots > self.boots or (boots == self.boots and engine_time > self.latest_time):
            self.boots = boots
            self.time = self.latest_time = engine_time
            self.learned_at = now

    def forget(self) -> None:
        self.engine_id = None
        self.generation += 1


# -- messages -------------------------------------------------------------------------------------

_INT3: Final = ber.tlv(ber.INTEGER, b"\x03")
_GLOBAL_TAIL: Final = ber.tlv(ber.INTEGER, ber.int_content(MSG_MAX_SIZE))
_SECURITY_MODEL: Final = ber.tlv(ber.INTEGER, ber.int_content(SECURITY_MODEL_USM))


def _int(value: int) -> bytes:
    return ber.tlv(ber.INTEGER, ber.int_content(value))


def encode_message(
    *,
    msg_id: int,
    flags: int,
    engine_id: bytes,
    boots: int,
    engine_time: int,
    user: bytes,
    scoped_pdu: bytes,
    keys: LocalKeys | None = None,
    salt: int = 0,
) -> bytes:
    """One SNMPv3 message (RFC 3412 6) with USM security parameters (RFC 3414 2.4), signed and
    encrypted as ``flags`` ask with ``keys`` (localized to ``engine_id``)."""
    priv_parameters = b""
    if flags & PRIV:
        assert keys is not None
        encrypted, priv_parameters = keys.encrypt(scoped_pdu, boots, engine_time, salt)
        msg_data = ber.tlv(ber.OCTET_STRING, encrypted)
    else:
        msg_data = scoped_pdu
    digest_length = keys.digest_length if flags & AUTH and keys is not None else 0
    before_digest = (
        ber.tlv(ber.OCTET_STRING, engine_id)
        + _int(boots)
        + _int(engine_time)
        + ber.tlv(ber.OCTET_STRING, user)
        + bytes((ber.OCTET_STRING, digest_length))
    )
    after_digest = ber.tlv(ber.OCTET_STRING, priv_parameters)
    content = before_digest + b"\x00" * digest_length + after_digest
    params = ber.tlv(ber.SEQUENCE, content)
    header = ber.tlv(
        ber.SEQUENCE,
        _int(msg_id) + _GLOBAL_TAIL + ber.tlv(ber.OCTET_STRING, bytes((flags,))) + _SECURITY_MODEL,
    )
    wrapped_params = ber.tlv(ber.OCTET_STRING, params)
    body = _INT3 + header + wrapped_params + msg_data
    message = ber.tlv(ber.SEQUENCE, body)
    if not digest_length:
        return message
    assert keys is not None
    # the zeroed digest: past the outer header, the version, msgGlobalData, the two headers around
    # the parameters' SEQUENCE, and the fields before it
    offset = (len(message) - len(body)) + len(_INT3) + len(header)
    offset += len(wrapped_params) - len(content) + len(before_digest)
    digest = keys.sign(message)
    return message[:offset] + digest + message[offset + digest_length :]


@dataclass(frozen=True, slots=True)
class Message:
    """An SNMPv3 message read up to its msgData (which stays where it is in the datagram)."""

    msg_id: int
    flags: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_start: int  # msgAuthenticationParameters' content, as offsets into the datagram
    auth_end: int
    priv_parameters: bytes
    encrypted: bool  # msgData is an encryptedPDU (else a plaintext ScopedPDU)
    data_start: int  # the ScopedPDU element (plaintext), or the encryptedPDU's content
    data_end: int

    def authentic(self, data: bytes, keys: LocalKeys) -> bool:
        """Whether the message carries ``keys``' digest of itself (RFC 3414 6.3.2)."""
        start, end = self.auth_start, self.auth_end
        if end - start != keys.digest_length or keys.engine_id != self.engine_id:
            return False
        expected = keys.sign(data[:start], b"\x00" * (end - start), data[end:])
        return _compare.compare_digest(expected, data[start:end])

    def scoped_pdu(self, data: bytes, keys: LocalKeys | None) -> bytes | None:
        """The plaintext ScopedPDU element (decrypted with ``keys`` when it was encrypted), or None
        when it cannot be decrypted."""
        if not self.encrypted:
            return data[self.data_start : self.data_end]
        if keys is None or keys.credentials.priv is None:
            return None
        encrypted = data[self.data_start : self.data_end]
        return keys.decrypt(encrypted, self.boots, self.time, self.priv_parameters)


def is_v3(data: bytes) -> bool:
    """Whether a datagram looks like an SNMPv3 message (a SEQUENCE opening with INTEGER 3)."""
    if len(data) < 5 or data[0] != ber.SEQUENCE:
        return False
    length = data[1]
    pos = 2 + (length & 0x7F if length & 0x80 else 0)
    return data[pos : pos + 3] == b"\x02\x01\x03"


def decode_message(data: bytes) -> Message:
    """The header and USM parameters of an SNMPv3 message; raises :class:`ber.BerError`."""
    size = len(data)
    start, end = ber.expect(data, 0, ber.SEQUENCE, size)
    version, pos = ber.read_integer(data, start, end)
    if version != VERSION_3:
        raise ber.BerError(f"SNMP version {version} is not SNMPv3")
    hstart, hend = ber.expect(data, pos, ber.SEQUENCE, end)
    msg_id, p = ber.read_integer(data, hstart, hend)
    _max_size, p = ber.read_integer(data, p, hend)
    fstart, p = ber.expect(data, p, ber.OCTET_STRING, hend)
    if p - fstart != 1:
        raise ber.BerError("msgFlags is not one octet")
    flags = data[fstart]
    model, p = ber.read_integer(data, p, hend)
    if model != SECURITY_MODEL_USM:
        raise ber.BerError(f"security model {model} is not USM")
    if flags & PRIV and not flags & AUTH:
        raise ber.BerError("privacy without authentication")
    pstart, pend = ber.expect(data, hend, ber.OCTET_STRING, end)
    sstart, send = ber.expect(data, pstart, ber.SEQUENCE, pend)
    estart, p = ber.expect(data, sstart, ber.OCTET_STRING, send)
    engine_id = data[estart:p]
    boots, p = ber.read_integer(data, p, send)
    engine_time, p = ber.read_integer(data, p, send)
    if not 0 <= boots <= _MAX_INT or not 0 <= engine_time <= _MAX_INT:
        raise ber.BerError("engine boots or time out of range")
    ustart, p = ber.expect(data, p, ber.OCTET_STRING, send)
    user = data[ustart:p]
    auth_start, auth_end = ber.expect(data, p, ber.OCTET_STRING, send)
    vstart, vend = ber.expect(data, auth_end, ber.OCTET_STRING, send)
    tag, dstart, dend = ber.read_tlv(data, pend, end)
    if tag == ber.SEQUENCE:
        encrypted, dstart = False, pend  # the element itself: decoded like a decrypted one
    elif tag == ber.OCTET_STRING:
        encrypted = True
    else:
        raise ber.BerError(f"msgData of tag 0x{tag:02x}")
    return Message(
        msg_id,
        flags,
        engine_id,
        boots,
        engine_time,
        user,
        auth_start,
        auth_end,
        data[vstart:vend],
        encrypted,
        dstart,
        dend,
    )


@dataclass(frozen=True, slots=True)
class ScopedPdu:
    """A response or report PDU inside its scoped PDU; varbinds still raw (see ber.decode_varbinds)."""

    context_engine_id: bytes
    context_name: bytes
    pdu_type: int
    request_id: int
    error_status: int
    error_index: int
    varbinds_start: int  # offsets into the plaintext the PDU was read from
    varbinds_end: int


def decode_scoped_pdu(plain: bytes) -> ScopedPdu:
    """A ScopedPDU element (trailing octets, such as DES padding, ignored); raises BerError."""
    start, end = ber.expect(plain, 0, ber.SEQUENCE, len(plain))
    cstart, p = ber.expect(plain, start, ber.OCTET_STRING, end)
    context_engine_id = plain[cstart:p]
    nstart, p = ber.expect(plain, p, ber.OCTET_STRING, end)
    context_name = plain[nstart:p]
    pdu_type, pstart, pend = ber.read_tlv(plain, p, end)
    request_id, p = ber.read_integer(plain, pstart, pend)
    status, p = ber.read_integer(plain, p, pend)
    index, p = ber.read_integer(plain, p, pend)
    vstart, vend = ber.expect(plain, p, ber.SEQUENCE, pend)
    return ScopedPdu(context_engine_id, context_name, pdu_type, request_id, status, index, vstart, vend)


def scoped_pdu(context_engine_id: bytes, context_name: bytes, pdu: bytes) -> bytes:
    return ber.tlv(
        ber.SEQUENCE,
        ber.tlv(ber.OCTET_STRING, context_engine_id) + ber.tlv(ber.OCTET_STRING, context_name) + pdu,
    )


def report_number(oid: tuple[int, ...]) -> int:
    """N of a usmStats.N.0 report OID, or 0 for any other report."""
    if len(oid) == len(USM_STATS) + 2 and oid[: len(USM_STATS)] == USM_STATS and oid[-1] == 0:
        n = oid[len(USM_STATS)]
        return n if n in REPORT_WORDS else 0
    return 0
