"""A NATS cluster with JetStream on loopback: Debian's ``nats-server``, N processes in one directory.

Used by ``uptimewatch demo --nodes N`` and by the cluster tests; production runs NATS under its own
units (``deploy/nats/``). Each server has a client port, a cluster (route) port and a monitoring
port on 127.0.0.1, and its JetStream store in ``<directory>/<name>/``, so a server can be stopped,
killed and started again on the same ports with its data.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = (Path("/usr/sbin/nats-server"), Path("/usr/bin/nats-server"))


class NatsServerError(RuntimeError):
    """nats-server is missing, or did not start."""


def nats_server_binary() -> Path:
    for path in CANDIDATES:
        if path.exists():
            return path
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install Debian's 'nats-server' package")
    return Path(found)


def _free_ports(count: int) -> list[int]:
    """Ports the kernel handed out just now; all held open together, so they are distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsServer:
    name: str
    client_port: int
    cluster_port: int
    http_port: int
    directory: Path
    host: str = "127.0.0.1"  # where clients connect; routes and monitoring stay on loopback
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class LocalNatsCluster:
    """``with LocalNatsCluster(directory, size=3) as nats``: servers up, JetStream meta leader elected.

    ``client_host`` is the local address the servers take clients on (default loopback; a test
    gives an address that a network namespace reaches too)."""

    def __init__(
        self,
        directory: Path,
        size: int = 3,
        *,
        cluster_name: str = "uptimewatch",
        client_host: str = "127.0.0.1",
    ) -> None:
        if size < 1:
            raise ValueError("a NATS cluster needs at least one server")
        self.binary = nats_server_binary()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cluster_name = cluster_name
        ports = _free_ports(3 * size)
        self.servers = [
            NatsServer(
                f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], self.directory, client_host
            )
            for i in range(size)
        ]
        for server in self.servers:
            server.config_path.write_text(self._config(server), encoding="utf-8")

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def _config(self, server: NatsServer) -> str:
        store = self.directory / server.name
        lines = [
            f"server_name: {server.name}",
            f"listen: {server.host}:{server.client_port}",
            f"http: 127.0.0.1:{server.http_port}",
            "jetstream {",
            f'  store_dir: "{store}"',
            "  max_memory_store: 64MB",
            "  max_file_store: 512MB",
            "}",
        ]
        if len(self.servers) > 1:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{s.cluster_port}" for s in self.servers if s is not server
            )
            lines += [
                "cluster {",
                f"  name: {self.cluster_name}",
                f"  listen: 127.0.0.1:{server.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    # -- one server ---------------------------------------------------------------------------

    def start_server(self, server: NatsServer) -> None:
        if server.running:
            return
        log = server.log_path.open("ab")
        try:
            server.proc = subprocess.Popen(
                [str(self.binary), "-c", str(server.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the demo's terminal is the demo's to handle
            )
        finally:
            log.close()

    def stop_server(self, server: NatsServer, *, kill: bool = False, timeout: float = 10.0) -> None:
        proc, server.proc = server.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart_server(self, server: NatsServer, *, kill: bool = False, timeout: float = 30.0) -> None:
        self.stop_server(server, kill=kill)
        self.start_server(server)
        self.wait_server(server, timeout)

    def wait_server(self, server: NatsServer, timeout: float = 30.0) -> None:
        """Until the server answers its health check (JetStream included) or ``timeout`` passes.

        After half the timeout, a server whose JetStream is up and in the meta group is taken as
        back even if one of its stream replicas is still catching up: a bucket written every second
        can keep a restarted replica "not current" for longer on a busy machine, and the server
        serves its clients meanwhile."""
        started = time.monotonic()
        deadline = started + timeout
        url = f"http://127.0.0.1:{server.http_port}/healthz"
        while True:
            if time.monotonic() > started + timeout / 2:
                url = f"http://127.0.0.1:{server.http_port}/healthz?js-server-only=true"
            if server.proc is not None and server.proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server {server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server {server.name} not healthy within {timeout:.0f} s:\n{server.log_tail()}"
                )
            time.sleep(0.1)

    # -- all of them --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        for server in self.servers:
            self.start_server(server)
        for server in self.servers:
            self.wait_server(server, timeout)

    def stop(self, *, kill: bool = False) -> None:
        for server in self.servers:
            self.stop_server(server, kill=kill)

    def restart(self, timeout: float = 30.0) -> None:
        """All servers down, then all up again (a whole-cluster outage with the data kept)."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> LocalNatsCluster:
        try:
            self.start()
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pids(self) -> dict[str, int]:
        return {s.name: s.proc.pid for s in self.servers if s.proc is not None and s.running}


__all__ = ["LocalNatsCluster", "NatsServer", "NatsServerError", "nats_server_binary"]
