"""What an SNMP transport answers, and the interface every transport offers. Nothing here imports
pysnmp, so a faster transport can replace it. The values themselves (:class:`Varbind`) live in
:mod:`uptimewatch.model.varbind`, where the profiles that give them meaning can reach them too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config.resolve import SnmpTarget
from ..model.observation import ProbeError
from ..model.varbind import EMPTY_TYPES, SnmpType, Varbind

__all__ = ["EMPTY_TYPES", "SnmpResponse", "SnmpTransport", "SnmpType", "Varbind"]


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
