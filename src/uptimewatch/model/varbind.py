"""Plain SNMP values: one OID, its type and its value, as a transport brings them back.

Shared by the transports (which speak the protocol) and the device profiles (which give values
their meaning), so neither package has to import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SnmpType(StrEnum):
    INTEGER = "INTEGER"
    OCTET_STRING = "OCTET STRING"
    OID = "OBJECT IDENTIFIER"
    IPADDRESS = "IpAddress"
    COUNTER32 = "Counter32"
    GAUGE32 = "Gauge32"
    TIMETICKS = "TimeTicks"
    COUNTER64 = "Counter64"
    OPAQUE = "Opaque"
    NULL = "NULL"
    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


#: the types that carry no value: the agent holds nothing at that OID
EMPTY_TYPES = frozenset(
    {SnmpType.NULL, SnmpType.NO_SUCH_OBJECT, SnmpType.NO_SUCH_INSTANCE, SnmpType.END_OF_MIB_VIEW}
)


@dataclass(frozen=True, slots=True)
class Varbind:
    """One OID and its value.

    ``oid`` is dotted numeric without a leading dot. ``value`` is ``int`` for the integer types,
    ``bytes`` for OCTET STRING and Opaque, ``str`` for OBJECT IDENTIFIER (dotted) and IpAddress,
    ``None`` for the empty types.
    """

    oid: str
    type: SnmpType
    value: int | bytes | str | None

    @property
    def empty(self) -> bool:
        return self.type in EMPTY_TYPES
