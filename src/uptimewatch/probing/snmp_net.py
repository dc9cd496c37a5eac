"""The UDP side every SNMP transport shares: resolving an agent's address and sizing the socket's
receive buffer for poll bursts."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from typing import Any, Final

from .. import executors
from ..model.observation import ErrorKind, ProbeError

log = logging.getLogger(__name__)

#: A poll burst of thousands of devices answers at once; the default ~200 KiB buffer drops replies.
RECEIVE_BUFFER_BYTES: Final = 4 * 1024 * 1024


def enlarge_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for a ``wanted``-byte receive buffer (replies are dropped at high concurrency
    otherwise); returns what the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    except OSError as exc:
        log.debug("cannot set the SNMP socket receive buffer: %s", exc)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if sys.platform.startswith("linux"):
        granted //= 2  # Linux reports the buffer doubled for its bookkeeping overhead
    return int(granted)


class ReceiveBuffer:
    """Enlarges the receive buffer of each socket a transport opens; remembers what the kernel
    granted the first one, and says once when the kernel capped it."""

    def __init__(self, wanted: int = RECEIVE_BUFFER_BYTES) -> None:
        self.wanted = wanted
        #: the receive buffer the kernel granted the first socket (bytes, as getsockopt reports it)
        self.granted: int | None = None
        self._logged = False

    def enlarge(self, sock: socket.socket) -> None:
        granted = enlarge_receive_buffer(sock, self.wanted)
        if self.granted is None:
            self.granted = granted
        # less than asked means the kernel capped it (net.core.rmem_max)
        if granted < self.wanted and not self._logged:
            self._logged = True
            log.debug(
                "SNMP socket receive buffer is %d bytes, %d asked: raise net.core.rmem_max for bursts",
                granted,
                self.wanted,
            )


def same_host(got: str, expected: str) -> bool:
    """Whether two spellings name one address (IPv6 has several); the common case never gets here."""
    try:
        return ipaddress.ip_address(got.partition("%")[0]) == ipaddress.ip_address(expected.partition("%")[0])
    except ValueError:
        return False


async def resolve_udp(host: str, port: int) -> tuple[int, tuple[Any, ...]] | ProbeError:
    """``(address family, socket address)`` of an agent; an IP address is taken as it is, a name
    is resolved (IPv4 first, like most agents), a name that does not resolve is data."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return socket.AF_INET6, (str(ip), port, 0, 0)
        return socket.AF_INET, (str(ip), port)
    try:
        infos = await executors.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        return ProbeError(ErrorKind.UNREACHABLE, f"cannot resolve {host}: {exc}")
    if not infos:
        return ProbeError(ErrorKind.UNREACHABLE, f"cannot resolve {host}: no address")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return family, tuple(sockaddr)
