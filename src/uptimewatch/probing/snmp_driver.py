"""The SNMP request logic every transport shares: how a GET is split into PDUs, how a walk proceeds
and when it stops, and the words its problems are reported in.

A transport only supplies ``exchange(request, attempts)``: send one PDU (resending on timeout up to
``attempts`` PDUs in all) and hand back what came of it, as a :class:`Reply` whose rows stay in the
transport's own form; a :class:`RowReader` tells the driver a row's OID and turns it into a
:class:`Varbind` once the driver keeps it. The own-codec transport (:mod:`.snmp_fast`) and the
pysnmp one (:mod:`.snmp_transport`) sit underneath, and so does any later one.

A GET response must answer the names asked, one varbind each, in order (RFC 3416): anything else
is a ``bad_reply`` error, never a poll whose fields are all null. Caps come from the target:
``max_rows`` and ``max_requests`` bound a walk (an agent that loops or never ends a table cannot
hold a poll), an OID that does not increase ends it, and every PDU sent, retries included, is
counted in :attr:`SnmpResponse.requests`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, Protocol, TypeVar

from ..config.models import SnmpVersion
from ..config.resolve import SnmpTarget
from ..model.observation import ErrorKind, ProbeError
from ..model.varbind import SnmpType, Varbind
from .ber import ERROR_STATUS_NAMES, NO_SUCH_NAME, TOO_BIG, format_oid, parse_oid
from .snmp_net import ReceiveBuffer
from .snmp_types import SnmpResponse

log = logging.getLogger(__name__)

__all__ = [
    "CLOSED",
    "MAX_VARBINDS_PER_PDU",
    "DrivenTransport",
    "Exchange",
    "Reply",
    "Request",
    "RowReader",
    "bad_reply_error",
    "closed_error",
    "get",
    "oid_key",
    "status_error",
    "timeout_error",
    "walk",
]

#: Varbinds per GET PDU: keeps responses well under a 1472-byte UDP payload for typical values,
#: and small enough for old agents with tiny PDU buffers.
MAX_VARBINDS_PER_PDU: Final = 40
#: What a request gets from a transport that was closed under it.
CLOSED: Final = "transport closed"
_ACCESS_ERRORS: Final = frozenset({6, 16})  # noAccess, authorizationError: a view or ACL says no

Row = TypeVar("Row")
Peer = TypeVar("Peer")
Row_co = TypeVar("Row_co", covariant=True)
Row_contra = TypeVar("Row_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Request:
    """One PDU to send: a GET of ``oids``, or a GETNEXT/GETBULK from the one OID in ``oids``."""

    kind: Literal["get", "next", "bulk"]
    oids: tuple[str, ...]  # dotted, without a leading dot
    repetitions: int = 0  # GETBULK max-repetitions


@dataclass(frozen=True, slots=True)
class Reply(Generic[Row_co]):
    """What one exchange came to. ``error`` or ``timed_out`` set: nothing usable came back."""

    sent: int  # PDUs sent, retries included
    status: int = 0  # the agent's error-status
    index: int = 0  # and error-index (1-based)
    rows: Sequence[Row_co] = ()
    timed_out: bool = False
    error: ProbeError | None = None  # the transport's own failure: closed, an SNMPv3 report, ...


class RowReader(Protocol[Row_contra]):
    """How the driver reads a transport's rows."""

    def oid(self, row: Row_contra) -> tuple[int, ...]: ...

    def named(self, row: Row_contra, oid: str) -> bool:
        """Whether the row's OID is ``oid`` (dotted, as in :class:`Request`), without decoding more
        of a row than that takes."""
        ...

    def ends_view(self, row: Row_contra) -> bool:
        """Whether the row is an endOfMibView exception."""
        ...

    def varbind(self, row: Row_contra) -> Varbind: ...


#: ``exchange(request, attempts)``
Exchange = Callable[[Request, int], Awaitable[Reply[Row]]]


def oid_key(oid: str) -> str:
    """``" .1.3.6.1.2.1.1.2.0"`` -> ``"1.3.6.1.2.1.1.2.0"``: the form requests and answers use."""
    return oid.strip().lstrip(".")


# -- the words problems are reported in ----------------------------------------------------------


def timeout_error(target: SnmpTarget, sent: int) -> ProbeError:
    return ProbeError(
        ErrorKind.TIMEOUT,
        f"no response from {target.host}:{target.port} after {sent} request(s) of {target.timeout:g} s",
    )


def closed_error() -> ProbeError:
    return ProbeError(ErrorKind.INTERNAL, CLOSED)


def status_error(status: int, index: int, oids: Sequence[str]) -> ProbeError:
    """An agent's error-status, naming the OID its error-index points at."""
    name = ERROR_STATUS_NAMES[status] if 0 <= status < len(ERROR_STATUS_NAMES) else f"error {status}"
    where = f" at {oids[index - 1]}" if 0 < index <= len(oids) else ""
    if status == NO_SUCH_NAME:
        kind = ErrorKind.NO_SUCH_OBJECT
    elif status in _ACCESS_ERRORS:
        kind = ErrorKind.AUTH
    else:
        kind = ErrorKind.BAD_VALUE
    return ProbeError(kind, f"agent answered {name}{where}")


def bad_reply_error(target: SnmpTarget, why: str) -> ProbeError:
    return ProbeError(ErrorKind.BAD_REPLY, f"bad reply from {target.host}:{target.port}: {why}")


def _mismatch(reply_rows: Sequence[Row], rows: RowReader[Row], asked: Sequence[str]) -> str | None:
    """Why a GET response does not answer ``asked``, or None when it does.

    RFC 3416 (4.2.1): the response holds one varbind per requested name, in the order asked,
    each with that name. Anything else answers another question: a confused or forged agent, a
    reply meant for someone else. Its fields would all be null, and the device would look fine.
    """
    if len(reply_rows) != len(asked):
        return f"{len(asked)} OID(s) asked, {len(reply_rows)} varbind(s) answered"
    named = rows.named
    for i, (row, oid) in enumerate(zip(reply_rows, asked, strict=True)):
        if not named(row, oid):
            return f"varbind {i + 1} of {len(asked)} names {_short(rows, row)}, not the {oid} asked"
    return None


def _short(rows: RowReader[Row], row: Row) -> str:
    """A hostile agent's OID in a message: at most a dozen sub-identifiers of it."""
    try:
        oid = rows.oid(row)
    except Exception:  # whatever the transport's decoder makes of it: the message is all we need
        return "an undecodable OID"
    if len(oid) <= 12:
        return format_oid(oid)
    return f"{format_oid(oid[:12])}... ({len(oid)} sub-identifiers)"


def _failure(reply: Reply[object], target: SnmpTarget) -> ProbeError | None:
    if reply.error is not None:
        return reply.error
    if reply.timed_out:
        return timeout_error(target, reply.sent)
    return None


# -- GET -----------------------------------------------------------------------------------------


async def get(
    exchange: Exchange[Row],
    rows: RowReader[Row],
    target: SnmpTarget,
    oids: Sequence[str],
    *,
    max_varbinds: int = MAX_VARBINDS_PER_PDU,
) -> SnmpResponse:
    """GET ``oids`` in PDUs of at most ``max_varbinds``, halving a PDU the agent finds tooBig. Under
    SNMPv1 an absent OID fails its whole PDU: it is asked again without it, as net-snmp does, so v1
    devices answer like v2c ones (absent OIDs typed noSuchObject, in the order asked)."""
    names = tuple(oid_key(o) for o in oids)
    queue = collections.deque(names[i : i + max_varbinds] for i in range(0, len(names), max_varbinds))
    v1 = target.version is SnmpVersion.V1
    out: list[Varbind] = []
    missing_v1: list[Varbind] = []
    requests = 0
    while queue:
        chunk = queue.popleft()
        reply = await exchange(Request("get", chunk), target.retries + 1)
        requests += reply.sent
        if (error := _failure(reply, target)) is not None:
            return SnmpResponse(error=error, requests=requests)
        status, index = reply.status, reply.index
        if status == TOO_BIG and len(chunk) > 1:
            half = len(chunk) // 2
            queue.appendleft(chunk[half:])
            queue.appendleft(chunk[:half])
            continue
        if status == NO_SUCH_NAME and v1 and 0 < index <= len(chunk):
            missing_v1.append(Varbind(chunk[index - 1], SnmpType.NO_SUCH_OBJECT, None))
            rest = chunk[: index - 1] + chunk[index:]
            if rest:
                queue.appendleft(rest)
            continue
        if status:
            return SnmpResponse(error=status_error(status, index, chunk), requests=requests)
        if (why := _mismatch(reply.rows, rows, chunk)) is not None:
            return SnmpResponse(error=bad_reply_error(target, why), requests=requests)
        convert = rows.varbind
        out.extend([convert(row) for row in reply.rows])
    if missing_v1:
        order = {name: i for i, name in enumerate(names)}
        out.extend(missing_v1)
        out.sort(key=lambda vb: order.get(vb.oid, len(order)))
    return SnmpResponse(varbinds=tuple(out), requests=requests)


# -- walk ----------------------------------------------------------------------------------------


async def walk(exchange: Exchange[Row], rows: RowReader[Row], target: SnmpTarget, root: str) -> SnmpResponse:
    """Every varbind under ``root``: GETBULK for v2c/v3, GETNEXT for v1, within the target's caps."""
    root = oid_key(root)
    root_t = parse_oid(root)
    depth = len(root_t)
    last_t = root_t
    cursor = root
    bulk = target.version is not SnmpVersion.V1
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
            request = Request("bulk", (cursor,), reps)
        else:
            request = Request("next", (cursor,))
        reply = await exchange(request, min(budget, target.retries + 1))
        requests += reply.sent
        if (error := _failure(reply, target)) is not None:
            if out:
                problems.append(f"walk of {root} failed after {len(out)} rows: {error.message}")
            return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
        status = reply.status
        if status == NO_SUCH_NAME and not bulk:
            break  # SNMPv1's end of the MIB view
        if status == TOO_BIG and bulk and repetitions > 1:
            repetitions = max(1, repetitions // 2)
            continue
        if status:
            error = status_error(status, reply.index, (cursor,))
            return SnmpResponse(tuple(out), error, requests, truncated, tuple(problems))
        if not reply.rows:
            problems.append(f"walk of {root} stopped: empty response after {len(out)} rows")
            break
        done = False
        for row in reply.rows:
            name_t = rows.oid(row)
            if name_t[:depth] != root_t or rows.ends_view(row):
                done = True
                break
            if name_t <= last_t:
                problems.append(
                    f"walk of {root} stopped: OID did not increase ({format_oid(name_t)} after {cursor})"
                )
                done = True
                break
            if len(out) >= target.max_rows:
                truncated = True
                problems.append(f"walk of {root} stopped at max_rows={target.max_rows}")
                done = True
                break
            varbind = rows.varbind(row)
            out.append(varbind)
            last_t = name_t
            cursor = varbind.oid
        if done:
            break
    return SnmpResponse(tuple(out), None, requests, truncated, tuple(problems))


def describe(target: SnmpTarget) -> str:
    """For logs and messages: never a secret, only where and how."""
    who = f"user {target.user}" if target.version is SnmpVersion.V3 else "community"
    return f"{target.host}:{target.port} (SNMPv{target.version.value}, {who})"


class DrivenTransport(abc.ABC, Generic[Row, Peer]):
    """The :class:`~.snmp_types.SnmpTransport` face every transport shares: ``get`` and ``walk``
    run the driver over the transport's ``exchange()``, and a value it cannot read or a bug
    becomes the poll's error. A transport supplies how to reach an agent (:meth:`_peer`), one
    exchange with it (:meth:`_request`), how its rows read (``rows``) and ``close``."""

    #: what the transport's decoding raises for a value it cannot read: a ``bad_value`` error
    bad_value_errors: tuple[type[Exception], ...] = ()

    def __init__(self, rows: RowReader[Row], *, max_varbinds_per_pdu: int, receive_buffer: int) -> None:
        self._rows = rows
        self._max_varbinds = max_varbinds_per_pdu
        self._buffer = ReceiveBuffer(receive_buffer)
        self._setup_lock = asyncio.Lock()
        self._closed = False

    @property
    def receive_buffer_granted(self) -> int | None:
        """The receive buffer the kernel granted the first socket (bytes, as getsockopt reports it)."""
        return self._buffer.granted

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        if not oids:
            return SnmpResponse()
        rows, step = self._rows, self._max_varbinds
        return await self._drive(
            target, "GET", lambda exchange: get(exchange, rows, target, oids, max_varbinds=step)
        )

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        rows = self._rows
        return await self._drive(target, "walk", lambda exchange: walk(exchange, rows, target, root))

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _peer(self, target: SnmpTarget) -> Peer | ProbeError:
        """What :meth:`_request` needs to reach the target's agent, or why it cannot be reached."""

    @abc.abstractmethod
    async def _request(self, peer: Peer, target: SnmpTarget, request: Request, attempts: int) -> Reply[Row]:
        """The driver's ``exchange()`` with ``peer``."""

    def _bad_value(self, target: SnmpTarget, exc: Exception) -> ProbeError:
        return ProbeError(ErrorKind.BAD_VALUE, f"SNMP response from {target.host}:{target.port}: {exc}")

    async def _drive(
        self,
        target: SnmpTarget,
        what: str,
        run: Callable[[Exchange[Row]], Awaitable[SnmpResponse]],
    ) -> SnmpResponse:
        """One GET or walk through the driver, with this transport's exchange to the target's agent."""
        try:
            peer = await self._peer(target)
            if isinstance(peer, ProbeError):
                return SnmpResponse(error=peer)
            return await run(functools.partial(self._request, peer, target))
        except self.bad_value_errors as exc:
            return SnmpResponse(error=self._bad_value(target, exc))
        except Exception:
            log.exception("SNMP %s with %s failed unexpectedly", what, describe(target))
            return SnmpResponse(error=ProbeError(ErrorKind.INTERNAL, f"unexpected error in SNMP {what}"))
