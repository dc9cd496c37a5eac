"""The sd_notify protocol: readiness, reload, stop, status and watchdog messages to systemd.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: an AF_UNIX datagram socket, either a
path or, when it starts with ``@``, a name in the abstract namespace. One datagram of
newline-separated ``KEY=VALUE`` assignments is one message. This is small enough that a dependency
(``sdnotify``, ``systemd-python``) would cost more than it saves.

Notification is best effort by design: a lost message must never take the daemon down, so every
method swallows socket errors and returns ``False`` instead.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages; every method is a no-op returning ``False`` without ``$NOTIFY_SOCKET``.

    The environment is read once, at construction; pass ``environ`` to use another mapping. The
    unit sets ``NotifyAccess=main``: systemd drops messages from any process but the daemon's own.
    """

    __slots__ = ("_address", "_sock", "_watchdog_interval")

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    def ready(self) -> bool:
        """Startup (or a reload) finished: systemd marks the unit active and runs what waits on it."""
        return self.notify("READY=1")

    def reloading(self) -> bool:
        """A reload started; follow with ``ready()`` when it is done.

        ``MONOTONIC_USEC`` is what ``Type=notify-reload`` (systemd 253+) uses to match this message to
        the reload it asked for; older systemd ignores the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown started: systemd stops expecting watchdog pings and shows the unit as deactivating.

        Also releases the socket, as nothing else is expected after it; a later call reopens it.
        """
        sent = self.notify("STOPPING=1")
        self._close()
        return sent

    def status(self, text: str) -> bool:
        """One line of free text shown by ``systemctl status``."""
        # A newline would start a new assignment that systemd would try to parse as KEY=VALUE.
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Keep-alive: without one every ``WatchdogSec``, systemd kills and restarts the service."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds systemd waits between watchdog pings before acting; None when no watchdog is on.

        Ping at half this interval or more often, as systemd's documentation recommends.
        """
        return self._watchdog_interval

    def notify(self, message: str) -> bool:
        """Send one raw message; True when the datagram was handed to the kernel."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Called from the event loop: a full receive queue must drop the message, not block.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message.split("=", 1)[0], exc)
            self._close()
            return False
        return True

    def close(self) -> None:
        """Release the socket; later calls open a new one."""
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace: the leading NUL byte is the name's first byte, as in systemd's own code.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # vsock addresses (vsock:CID:PORT) are for VMs; uptimewatch never runs as a VM's init.
    log.debug("unsupported NOTIFY_SOCKET address %r; notifications disabled", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # WATCHDOG_PID names the process the watchdog is meant for: a child that merely inherited the
    # environment must not answer for its parent.
    if pid and pid != str(os.getpid()):
        return None
    return usec / 1_000_000
