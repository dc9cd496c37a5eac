"""The simulator's SNMP agent: one UDP socket per simulated device, each on its own 127.x address.

Linux answers on all of 127.0.0.0/8 without configuration, so every device can use the same port
on its own address. Each address is bound explicitly (never the wildcard), so nothing outside
loopback can reach the simulator. Like a real agent, a wrong community, a dead device or an
unparsable datagram gets no reply at all.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import resource
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

from ..probing import ber
from .device_models import ObjectSpec, convert
from .devices import VARIABLES, SimDevice, Simulator

log = logging.getLogger(__name__)

#: GETBULK answers stop growing past this many bytes (a manager retries with fewer repetitions)
MAX_RESPONSE_BYTES = 16_000
MAX_BULK_VARBINDS = 500


@dataclass(slots=True)
class AgentStats:
    requests: int = 0
    responses: int = 0
    dropped: int = 0  # dead, unreachable or wrong community: silence, as a real agent
    malformed: int = 0


class _DeviceProtocol(asyncio.DatagramProtocol):
    __slots__ = ("agent", "device", "transport")

    def __init__(self, agent: SnmpAgent, device: SimDevice) -> None:
        self.agent = agent
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport, but is one
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        reply = self.agent.handle(self.device, data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("device %s: socket error %s", self.device.key, exc)


def _value(dev: SimDevice, spec: ObjectSpec, now: float) -> ber.ResponseVarbind:
    if spec.var is None:
        return (spec.oid, spec.tag, spec.const)
    raw = VARIABLES[spec.var](dev, now, spec.index)
    return (spec.oid, spec.tag, convert(spec.tag, raw, spec.scale))


def _present(dev: SimDevice, spec: ObjectSpec, now: float) -> bool:
    return spec.present is None or bool(VARIABLES[spec.present](dev, now, spec.index))


def _encode(dev: SimDevice, spec: ObjectSpec, now: float) -> bytes:
    if spec.encoded is not None:
        return spec.encoded
    return ber.encode_varbind(_value(dev, spec, now))


def _next(dev: SimDevice, oid: ber.OidTuple, now: float, v1: bool) -> ObjectSpec | None:
    model = dev.model
    i = bisect.bisect_right(model.oids, oid)
    objects = model.objects
    while i < len(objects):
        spec = objects[i]
        # SNMPv1 has no Counter64: v1 agents skip those objects when walking (RFC 3584 4.2.2.1)
        if _present(dev, spec, now) and not (v1 and spec.tag == ber.COUNTER64):
            return spec
        i += 1
    return None


def respond(dev: SimDevice, req: ber.Request, now: float) -> bytes:
    """The encoded response to ``req`` as ``dev`` would give it at sim time ``now``."""
    v1 = req.version == ber.VERSION_1
    out: list[bytes] = []
    model = dev.model
    if req.pdu_type == ber.SET:
        status = ber.NO_SUCH_NAME if v1 else ber.NO_ACCESS
        vbs = [ber.encode_varbind((oid, ber.NULL, None)) for oid in req.oids]
        return ber.encode_response(
            req.version, req.community, req.request_id, vbs, error_status=status, error_index=1
        )
    if req.pdu_type == ber.GET:
        for n, oid in enumerate(req.oids, 1):
            spec = model.by_oid.get(oid)
            if spec is not None and _present(dev, spec, now) and not (v1 and spec.tag == ber.COUNTER64):
                out.append(_encode(dev, spec, now))
            elif v1:
                return _v1_error(req, n)
            else:
                out.append(ber.encode_varbind((oid, _missing(model.oids, oid), None)))
        return ber.encode_response(req.version, req.community, req.request_id, out)
    if req.pdu_type == ber.GETNEXT:
        for n, oid in enumerate(req.oids, 1):
            found = _next(dev, oid, now, v1)
            if found is not None:
                out.append(_encode(dev, found, now))
            elif v1:
                return _v1_error(req, n)
            else:
                out.append(ber.encode_varbind((oid, ber.END_OF_MIB_VIEW, None)))
        return ber.encode_response(req.version, req.community, req.request_id, out)
    return _bulk(dev, req, now)


def _missing(oids: tuple[ber.OidTuple, ...], oid: ber.OidTuple) -> int:
    """noSuchInstance when the object (the OID less its last arc) is served, else noSuchObject."""
    parent = oid[:-1]
    i = bisect.bisect_right(oids, parent)
    if i < len(oids) and oids[i][: len(parent)] == parent:
        return ber.NO_SUCH_INSTANCE
    return ber.NO_SUCH_OBJECT


def _v1_error(req: ber.Request, index: int) -> bytes:
    vbs = [ber.encode_varbind((oid, ber.NULL, None)) for oid in req.oids]
    return ber.encode_response(
        req.version, req.community, req.request_id, vbs, error_status=ber.NO_SUCH_NAME, error_index=index
    )


def _bulk(dev: SimDevice, req: ber.Request, now: float) -> bytes:
    non_repeaters = max(0, min(req.field2, len(req.oids)))
    repetitions = max(0, req.field3)
    out: list[bytes] = []
    size = 0

    def add(oid: ber.OidTuple, found: ObjectSpec | None) -> None:
        nonlocal size
        vb = _encode(dev, found, now) if found else ber.encode_varbind((oid, ber.END_OF_MIB_VIEW, None))
        out.append(vb)
        size += len(vb)

    for oid in req.oids[:non_repeaters]:
        add(oid, _next(dev, oid, now, False))
    cursors = list(req.oids[non_repeaters:])
    for _ in range(repetitions):
        if not cursors or size > MAX_RESPONSE_BYTES or len(out) >= MAX_BULK_VARBINDS:
            break
        exhausted = True
        for j, oid in enumerate(cursors):
            found = _next(dev, oid, now, False)
            add(oid, found)
            if found is not None:
                cursors[j] = found.oid
                exhausted = False
        if exhausted:
            break
    return ber.encode_response(req.version, req.community, req.request_id, out)


class SnmpAgent:
    """Serves every device of a :class:`Simulator` on ``(device address, port)``, or only those
    whose keys are in ``only`` (one agent process's share of a large province: the simulator
    still holds them all, since a site's reachability depends on its upstream's state).

    Use as ``async with SnmpAgent(sim, port):`` or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, simulator: Simulator, port: int = 161, only: Collection[str] | None = None) -> None:
        self.simulator = simulator
        self.port = port
        self.only = only
        self.stats = AgentStats()
        self._transports: list[asyncio.DatagramTransport] = []

    def handle(self, dev: SimDevice, data: bytes) -> bytes | None:
        stats = self.stats
        stats.requests += 1
        try:
            req = ber.decode_request(data)
        except ber.BerError:
            stats.malformed += 1
            return None
        if req.community != dev.community:
            stats.dropped += 1
            return None
        now = self.simulator.now()
        if not self.simulator.answering(dev, now):
            stats.dropped += 1
            return None
        try:
            reply = respond(dev, req, now)
        except Exception:  # a bug in a model or variable must not stop the other devices
            log.exception("device %s: could not answer", dev.key)
            return ber.encode_response(
                req.version, req.community, req.request_id, [], error_status=ber.GEN_ERR
            )
        stats.responses += 1
        return reply

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        only = self.only
        devices = [d for key, d in self.simulator.devices.items() if only is None or key in only]
        ensure_fd_limit(len(devices) + 256)
        try:
            for dev in devices:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.bind((dev.spec.address, self.port))
                except OSError as exc:
                    sock.close()
                    raise OSError(
                        exc.errno, f"cannot bind {dev.spec.address}:{self.port} for {dev.key}: {exc.strerror}"
                    ) from exc
                transport, _ = await loop.create_datagram_endpoint(
                    lambda dev=dev: _DeviceProtocol(self, dev),  # type: ignore[misc]
                    sock=sock,
                )
                self._transports.append(transport)
        except BaseException:
            await self.stop()
            raise
        log.info("simulated SNMP agent: %d devices on port %d", len(devices), self.port)

    async def stop(self) -> None:
        transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()
        # let the loop run the close callbacks, so the sockets are really gone when this returns
        await asyncio.sleep(0)

    async def __aenter__(self) -> SnmpAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def ensure_fd_limit(needed: int) -> None:
    """Raises the open-file limit to ``needed`` sockets; root may also raise the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
    except (ValueError, OSError) as exc:
        raise OSError(
            f"{needed} sockets are needed but the open-file limit is {soft} (hard {hard}): "
            "raise it with ulimit -n, or simulate fewer sites"
        ) from exc
