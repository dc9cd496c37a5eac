"""SNMP v1/v2c messages in BER, both sides: what a manager sends and reads back (the fast transport,
:mod:`uptimewatch.probing.snmp_fast`) and what an agent reads and answers (the demo's simulator).

Measured on this machine: pysnmp's message classes (pyasn1) decode and re-encode a two-varbind GET
about 3,800 times a second, and a 25-varbind GETBULK far fewer; this codec does the same work more
than ten times faster. It covers the community-based messages (SNMPv3's framing and USM are
:mod:`.usm`, on the readers and writers here) and the SNMPv2-SMI value types, nothing else of ASN.1.

Decoding is strict about structure (every length within its parent, the expected tags in order) so
that a malformed datagram raises :class:`BerError`, never anything else, and never reads past the
datagram. It is lenient where agents are known to be sloppy: unsigned values without their leading
zero octet are read as the unsigned numbers they mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "COUNTER32",
    "COUNTER64",
    "END_OF_MIB_VIEW",
    "ERROR_STATUS_NAMES",
    "GAUGE32",
    "GEN_ERR",
    "GET",
    "GETBULK",
    "GETNEXT",
    "INTEGER",
    "IPADDRESS",
    "NO_ACCESS",
    "NO_ERROR",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_NAME",
    "NO_SUCH_OBJECT",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "OPAQUE",
    "REQUEST_ID_MAX",
    "REQUEST_ID_MIN",
    "RESPONSE",
    "SEQUENCE",
    "SET",
    "TIMETICKS",
    "TOO_BIG",
    "VERSION_1",
    "VERSION_2C",
    "BerError",
    "OidTuple",
    "RawVarbind",
    "Request",
    "RequestTemplate",
    "ResponseHeader",
    "ResponseVarbind",
    "decode_oid",
    "decode_request",
    "decode_response_header",
    "decode_varbinds",
    "encode_oid",
    "encode_request",
    "encode_response",
    "encode_value",
    "encode_varbind",
    "expect",
    "format_oid",
    "int_content",
    "parse_oid",
    "pdu_template",
    "read_integer",
    "read_tlv",
    "request_template",
    "tlv",
]

OidTuple = tuple[int, ...]

# universal and application tags of the SNMPv2-SMI values
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
SEQUENCE = 0x30
IPADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
# SNMPv2 exceptions, context-specific primitives with no content
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

GET = 0xA0
GETNEXT = 0xA1
RESPONSE = 0xA2
SET = 0xA3
GETBULK = 0xA5

VERSION_1 = 0
VERSION_2C = 1

# error-status values (RFC 3416)
NO_ERROR = 0
TOO_BIG = 1
NO_SUCH_NAME = 2
GEN_ERR = 5
NO_ACCESS = 6
ERROR_STATUS_NAMES = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)

#: Request ids a manager uses: every one encodes in exactly four content octets, so a prebuilt
#: request only has its request id patched in (see :func:`request_template`).
REQUEST_ID_MIN = 0x0080_0000
REQUEST_ID_MAX = 0x7FFF_FFFF

_UNSIGNED_TAGS = frozenset({COUNTER32, GAUGE32, TIMETICKS, COUNTER64})


class BerError(ValueError):
    """The datagram is not an SNMP message this codec understands."""


# -- reading -------------------------------------------------------------------------------------


def _read_tlv(data: bytes, pos: int, limit: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at ``pos``, which must end by ``limit``."""
    if pos + 2 > limit:
        raise BerError("truncated element")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        # 0x80 is the indefinite form, which SNMP forbids; more than 4 octets is no datagram
        if n == 0 or n > 4 or pos + n > limit:
            raise BerError("unsupported length encoding")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > limit:
        raise BerError("element runs past its container")
    return tag, pos, end


def _expect(data: bytes, pos: int, tag: int, limit: int) -> tuple[int, int]:
    got, start, end = _read_tlv(data, pos, limit)
    if got != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    return start, end


def _decode_int(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    start, end = _expect(data, pos, INTEGER, limit)
    if start == end or end - start > 8:
        raise BerError("INTEGER of unsupported size")
    return int.from_bytes(data[start:end], "big", signed=True), end


#: the largest sub-identifier SNMP carries (RFC 2578, 7.1.3)
_MAX_ARC = 2**32 - 1
#: the first two arcs share one sub-identifier: 2.x is 80 + x, and x may be up to 2^32-1
_MAX_FIRST = _MAX_ARC + 80


def decode_oid(content: bytes) -> OidTuple:
    arcs: list[int] = []
    value = 0
    limit = _MAX_FIRST
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if value > limit:
            # checked while the arc grows: 60 KB of continuation octets would otherwise build one
            # 400,000-bit number, seven bits at a time (seconds of CPU for one datagram)
            raise BerError("OBJECT IDENTIFIER sub-identifier above 2^32-1")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            limit = _MAX_ARC
    if not arcs or content[-1] & 0x80:
        raise BerError("malformed OBJECT IDENTIFIER")
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


@dataclass(frozen=True, slots=True)
class Request:
    version: int
    community: bytes
    pdu_type: int
    request_id: int
    # error-status / error-index for GET and GETNEXT; non-repeaters / max-repetitions for GETBULK
    field2: int
    field3: int
    oids: tuple[OidTuple, ...]


def _message_head(data: bytes) -> tuple[int, bytes, int, int, int]:
    """(version, community, PDU tag, PDU content start, PDU content end) of a v1/v2c message."""
    size = len(data)
    start, end = _expect(data, 0, SEQUENCE, size)
    version, pos = _decode_int(data, start, end)
    if version not in (VERSION_1, VERSION_2C):
        raise BerError(f"SNMP version {version} is not handled")
    cstart, pos = _expect(data, pos, OCTET_STRING, end)
    pdu_type, pdu_start, pdu_end = _read_tlv(data, pos, end)
    return version, data[cstart:pos], pdu_type, pdu_start, pdu_end


def decode_request(data: bytes) -> Request:
    """Parses a v1/v2c GET, GETNEXT, GETBULK or SET message (an agent's side); raises :class:`BerError`
    otherwise."""
    version, community, pdu_type, pos, pdu_end = _message_head(data)
    if pdu_type not in (GET, GETNEXT, GETBULK, SET):
        raise BerError(f"PDU type 0x{pdu_type:02x} is not served")
    if pdu_type == GETBULK and version == VERSION_1:
        raise BerError("GETBULK in an SNMPv1 message")
    request_id, pos = _decode_int(data, pos, pdu_end)
    field2, pos = _decode_int(data, pos, pdu_end)
    field3, pos = _decode_int(data, pos, pdu_end)
    pos, vbl_end = _expect(data, pos, SEQUENCE, pdu_end)
    oids: list[OidTuple] = []
    while pos < vbl_end:
        vb_start, vb_end = _expect(data, pos, SEQUENCE, vbl_end)
        ostart, oend = _expect(data, vb_start, OBJECT_IDENTIFIER, vb_end)
        oids.append(decode_oid(data[ostart:oend]))
        pos = vb_end
    return Request(version, community, pdu_type, request_id, field2, field3, tuple(oids))


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """A Response PDU up to its varbind list, which :func:`decode_varbinds` reads when wanted (after
    the request id has matched a request)."""

    version: int
    community: bytes
    request_id: int
    error_status: int
    error_index: int
    varbinds_start: int
    varbinds_end: int


def decode_response_header(data: bytes) -> ResponseHeader:
    """The header of a v1/v2c Response message (a manager's side); raises :class:`BerError` for
    anything else."""
    version, community, pdu_type, pos, pdu_end = _message_head(data)
    if pdu_type != RESPONSE:
        raise BerError(f"PDU type 0x{pdu_type:02x} is not a response")
    request_id, pos = _decode_int(data, pos, pdu_end)
    status, pos = _decode_int(data, pos, pdu_end)
    index, pos = _decode_int(data, pos, pdu_end)
    start, end = _expect(data, pos, SEQUENCE, pdu_end)
    return ResponseHeader(version, community, request_id, status, index, start, end)


#: one varbind as read off the wire: the OID's content octets, the value's tag and content octets
RawVarbind = tuple[bytes, int, bytes]


def decode_varbinds(data: bytes, start: int, end: int) -> list[RawVarbind]:
    """The varbind list between ``start`` and ``end`` (from :class:`ResponseHeader`), values still
    raw: converting them is the caller's business, and only the caller knows which it needs."""
    out: list[RawVarbind] = []
    append = out.append
    pos = start
    while pos < end:
        # the short length form (< 128 octets) is nearly every varbind: read it inline
        if pos + 2 > end or data[pos] != SEQUENCE:
            raise BerError("varbind is not a SEQUENCE")
        length = data[pos + 1]
        if length & 0x80:
            vb_start, vb_end = _expect(data, pos, SEQUENCE, end)
        else:
            vb_start = pos + 2
            vb_end = vb_start + length
            if vb_end > end:
                raise BerError("varbind runs past its list")
        ostart, oend = _expect(data, vb_start, OBJECT_IDENTIFIER, vb_end)
        if ostart == oend:
            raise BerError("empty OBJECT IDENTIFIER")
        tag, vstart, vend = _read_tlv(data, oend, vb_end)
        if vend != vb_end:
            raise BerError("trailing octets in a varbind")
        append((data[ostart:oend], tag, data[vstart:vend]))
        pos = vb_end
    return out


# -- writing -------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _int_content(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def encode_oid(oid: OidTuple) -> bytes:
    """The content octets of an OBJECT IDENTIFIER; raises ValueError for an impossible OID."""
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40) or min(oid) < 0:
        raise ValueError(f"not a valid OID: {format_oid(oid)}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def encode_value(tag: int, value: int | bytes | OidTuple | None) -> bytes:
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return bytes((tag, 0))
    if tag == INTEGER or tag in _UNSIGNED_TAGS:
        assert isinstance(value, int)
        # for the unsigned types this gives the leading zero octet a set top bit needs
        return tlv(tag, _int_content(value))
    if tag == OBJECT_IDENTIFIER:
        assert isinstance(value, tuple)
        return tlv(tag, encode_oid(value))
    assert isinstance(value, bytes)
    return tlv(tag, value)


#: one varbind of a response: the OID, a tag from this module and the raw value
#: (int for the integer types, bytes for strings and IpAddress, a tuple for an OID, None for empty)
ResponseVarbind = tuple[OidTuple, int, int | bytes | OidTuple | None]


def encode_varbind(vb: ResponseVarbind) -> bytes:
    oid, tag, value = vb
    return tlv(SEQUENCE, tlv(OBJECT_IDENTIFIER, encode_oid(oid)) + encode_value(tag, value))


def _message(version: int, community: bytes, pdu_type: int, pdu: bytes) -> bytes:
    message = tlv(INTEGER, _int_content(version)) + tlv(OCTET_STRING, community) + tlv(pdu_type, pdu)
    return tlv(SEQUENCE, message)


def encode_response(
    version: int,
    community: bytes,
    request_id: int,
    varbinds: list[bytes],
    *,
    error_status: int = NO_ERROR,
    error_index: int = 0,
) -> bytes:
    """A GetResponse message around already encoded varbinds (see :func:`encode_varbind`)."""
    pdu = (
        tlv(INTEGER, _int_content(request_id))
        + tlv(INTEGER, _int_content(error_status))
        + tlv(INTEGER, _int_content(error_index))
        + tlv(SEQUENCE, b"".join(varbinds))
    )
    return _message(version, community, RESPONSE, pdu)


_NULL_VALUE = bytes((NULL, 0))


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """A request message with its four request-id octets cut out: ``head + id + tail``."""

    head: bytes
    tail: bytes

    def with_id(self, request_id: int) -> bytes:
        return self.head + request_id.to_bytes(4, "big") + self.tail


def pdu_template(
    pdu_type: int, oids: Sequence[bytes], *, field2: int = 0, field3: int = 0
) -> RequestTemplate:
    """A GET, GETNEXT or GETBULK PDU alone (the inside of an SNMPv3 scoped PDU), request id cut out
    as in :func:`request_template`."""
    varbinds = b"".join(tlv(SEQUENCE, tlv(OBJECT_IDENTIFIER, oid) + _NULL_VALUE) for oid in oids)
    after = tlv(INTEGER, _int_content(field2)) + tlv(INTEGER, _int_content(field3)) + tlv(SEQUENCE, varbinds)
    pdu = tlv(pdu_type, tlv(INTEGER, REQUEST_ID_MIN.to_bytes(4, "big")) + after)
    cut = len(pdu) - len(after) - 4
    return RequestTemplate(pdu[:cut], pdu[cut + 4 :])


def request_template(
    version: int, community: bytes, pdu_type: int, oids: Sequence[bytes], *, field2: int = 0, field3: int = 0
) -> RequestTemplate:
    """A GET, GETNEXT or GETBULK (``field2``/``field3`` = non-repeaters/max-repetitions) asking for
    ``oids`` (content octets from :func:`encode_oid`), ready for any request id between
    :data:`REQUEST_ID_MIN` and :data:`REQUEST_ID_MAX`."""
    varbinds = b"".join(tlv(SEQUENCE, tlv(OBJECT_IDENTIFIER, oid) + _NULL_VALUE) for oid in oids)
    after = tlv(INTEGER, _int_content(field2)) + tlv(INTEGER, _int_content(field3)) + tlv(SEQUENCE, varbinds)
    placeholder = REQUEST_ID_MIN.to_bytes(4, "big")
    message = _message(version, community, pdu_type, tlv(INTEGER, placeholder) + after)
    cut = len(message) - len(after) - 4
    return RequestTemplate(message[:cut], message[cut + 4 :])


def encode_request(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    oids: Sequence[bytes],
    *,
    field2: int = 0,
    field3: int = 0,
) -> bytes:
    if not REQUEST_ID_MIN <= request_id <= REQUEST_ID_MAX:
        raise ValueError(f"request id {request_id} is outside the range this codec sends")
    template = request_template(version, community, pdu_type, oids, field2=field2, field3=field3)
    return template.with_id(request_id)


#: the element readers, for the SNMPv3 framing built on this codec (:mod:`.usm`)
read_tlv = _read_tlv
expect = _expect
read_integer = _decode_int
int_content = _int_content


def parse_oid(text: str) -> OidTuple:
    return tuple(int(arc) for arc in text.strip().removeprefix(".").split("."))


def format_oid(oid: OidTuple) -> str:
    return ".".join(map(str, oid))
