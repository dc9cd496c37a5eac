"""Plain SNMP data shared by the transport (which speaks the protocol) and the profiles (which
give values their meaning). Nothing here imports pysnmp, so a faster transport can replace it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..config.resolve import SnmpTarget
from ..model.observation import ProbeError


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


@dataclass(frozen=True, slots=True)
class SnmpResponse:
    """What a GET or a walk brought back. ``error`` set means nothing usable came back."""

    varbinds: tuple[Varbind, ...] = ()
    error: ProbeError | None = None
    requests: int = 0  # PDUs sent, retries included
    truncated: bool = False  # a walk stopped at max_rows or max_requests
    problems: tuple[str, ...] = ()  # e.g. "walk of 1.3.6.1.2.1.2.2 stopped: OID did not increase"


class SnmpTransport(Protocol):
    """Speaks SNMP to devices. One instance is shared by all polls of a process."""

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse: ...

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        """All varbinds under ``root`` (GETBULK for v2c/v3, GETNEXT for v1), within the target's caps."""
        ...

    async def close(self) -> None: ...
