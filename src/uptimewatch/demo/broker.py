"""The demo's MQTT broker: Debian's mosquitto on a free 127.0.0.1 port, if it is installed.

Anonymous and loopback-only, with its config and persistence file in ``<workdir>/mosquitto/``;
stopped (SIGTERM, then SIGKILL after a few seconds) when the demo ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class BrokerError(RuntimeError):
    """mosquitto did not start."""


class Mosquitto:
    """``async with Mosquitto(directory) as broker``: listening on ``broker.host:broker.port``."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_tcp_port(host)
        self._proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return MOSQUITTO.exists()

    def _write_config(self) -> Path:
        """Blocking."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.directory.chmod(0o777)  # mosquitto started as root drops to its own user
        config = self.directory / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    "# written by `uptimewatch demo` at each start",
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.directory}/",
                    f"log_dest file {self.directory}/mosquitto.log",
                    "log_type error",
                    "log_type warning",
                    "user root" if os.geteuid() == 0 else "",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return config

    async def start(self, timeout: float = 10.0) -> None:
        config = await asyncio.to_thread(self._write_config)
        self._proc = await asyncio.create_subprocess_exec(
            str(MOSQUITTO),
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode} (see {self.directory})")
            try:
                _reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout:g} s")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
        except asyncio.CancelledError:
            proc.kill()  # interrupted while waiting: no broker may outlive the demo
            raise

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
