"""SystemdNotifier against a real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from uptimewatch.systemd_notify import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_no_socket_is_a_silent_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.reloading() is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None


def test_reads_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier()
    assert notifier.ready()
    assert receive(sock) == {"READY": "1"}
    assert notifier.watchdog_interval() == 30.0
    notifier.close()


def test_every_message(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled

    assert notifier.ready()
    assert receive(sock) == {"READY": "1"}

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    msg = receive(sock)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after

    assert notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}
    assert notifier._sock is None

    assert notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}

    # A newline inside the text would smuggle in a second assignment (say READY=1).
    assert notifier.status("monitoring 12 devices\nREADY=1")
    assert receive(sock) == {"STATUS": "monitoring 12 devices READY=1"}

    assert notifier.status("Tỉnh Hòa Bình: 3 sites down")
    assert receive(sock) == {"STATUS": "Tỉnh Hòa Bình: 3 sites down"}
    notifier.close()


def test_abstract_namespace_socket() -> None:
    name = f"uptimewatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()


def test_never_raises_when_systemd_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready()
    sock.close()
    path.unlink()
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    # A socket that comes back (systemd re-executed itself) works again without a new notifier.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as again:
        again.bind(str(path))
        again.settimeout(2.0)
        assert notifier.watchdog()
        assert again.recv(4096) == b"WATCHDOG=1"
    notifier.close()


def test_full_queue_drops_instead_of_blocking(notify_socket: tuple[socket.socket, str]) -> None:
    _sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    # Nobody reads: the receive queue fills, and the notifier must then fail fast, not hang.
    results = [notifier.status("x" * 1000) for _ in range(10_000)]
    assert results[0] is True
    assert results[-1] is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent", **env}).watchdog_interval() == expected


def test_unsupported_address_disables() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert notifier.ready() is False
