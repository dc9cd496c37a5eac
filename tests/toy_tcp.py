"""A TCP-connect protocol, kept outside the package: the proof that a protocol is one file plus
one registry line (``registry.register(toy_tcp.PROTOCOL)``). See docs/extending.md.

It answers "does the site gateway accept a connection on this port, and how fast": the check
``tcp.reachable`` says whether the device answers (ranked between ping and SNMP), and
``tcp.connect_time`` turns warning when the connection takes longer than its threshold.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from uptimewatch.config.models import ProbeSettings, Thresholds
from uptimewatch.config.resolve import ResolvedDevice
from uptimewatch.export.site_series import ProbeSeries
from uptimewatch.model.checks import CheckState, ProbeChecks, Result
from uptimewatch.model.observation import ErrorKind, Observation, ProbeError
from uptimewatch.primitives import Duration
from uptimewatch.probing.protocol import Protocol

KIND = "tcp"
CONNECT_SECONDS = "tcp.connect_seconds"
REACHABLE = "tcp.reachable"
CONNECT_TIME = "tcp.connect_time"


class TcpSettings(ProbeSettings):
    """``probes: {tcp: {...}}``: connect to one TCP port of the device."""

    kind: Literal["tcp"] = "tcp"
    port: int | None = Field(default=None, ge=1, le=65535, description="TCP port to connect to.")
    timeout: Duration | None = Field(default=None, description="Wait for the connection this long.")
    connect_seconds_warning: float | None = Field(
        default=None, ge=0, description="Warning when connecting takes this long (default 0.5 s)."
    )

    def target(self, address: str) -> TcpTarget | None:
        if self.port is None:
            return None  # a block of defaults without a port: nothing to connect to here
        return TcpTarget(
            host=address,
            port=self.port,
            timeout=self.timeout if self.timeout is not None else 2.0,
            connect_seconds_warning=(
                self.connect_seconds_warning if self.connect_seconds_warning is not None else 0.5
            ),
        )


@dataclass(frozen=True, slots=True)
class TcpTarget:
    host: str
    port: int
    timeout: float
    connect_seconds_warning: float


async def probe(device: ResolvedDevice) -> Observation:
    target = device.target(KIND)
    assert isinstance(target, TcpTarget)
    started_at, start = time.time(), time.monotonic()
    error: ProbeError | None = None
    fields: dict[str, float] = {}
    try:
        async with asyncio.timeout(target.timeout):
            _reader, writer = await asyncio.open_connection(target.host, target.port)
        fields[CONNECT_SECONDS] = time.monotonic() - start
        writer.close()
        await writer.wait_closed()
    except TimeoutError:
        error = ProbeError(
            ErrorKind.TIMEOUT, f"no connection to port {target.port} within {target.timeout:g} s"
        )
    except ConnectionRefusedError:
        error = ProbeError(ErrorKind.UNREACHABLE, f"port {target.port} refused the connection")
    except OSError as exc:
        error = ProbeError(ErrorKind.UNREACHABLE, f"cannot connect to port {target.port}: {exc.strerror}")
    return Observation(
        site_id=device.site_id,
        device_id=device.device_id,
        probe=KIND,
        started_at=started_at,
        duration_s=time.monotonic() - start,
        fields=fields,
        error=error,
    )


def judge(obs: Observation, _thresholds: Thresholds, device: ResolvedDevice) -> list[tuple[str, Result]]:
    target = device.target(KIND)
    if obs.error is not None:
        return [(REACHABLE, (CheckState.CRITICAL, obs.error.message, False))]
    seconds = obs.fields.get(CONNECT_SECONDS)
    assert isinstance(seconds, float)
    slow = isinstance(target, TcpTarget) and seconds >= target.connect_seconds_warning
    return [
        (REACHABLE, (CheckState.OK, "port accepts connections", True)),
        (
            CONNECT_TIME,
            (CheckState.WARNING if slow else CheckState.OK, f"connected in {seconds:.3f} s", seconds),
        ),
    ]


PROTOCOL = Protocol(
    KIND,
    ProbeChecks(KIND, judge, reachability=REACHABLE, rank=10),
    settings=TcpSettings,
    probe=probe,
    series=(
        ProbeSeries(
            KIND,
            "uptimewatch_tcp_connect_seconds",
            "Time the last TCP connect to the device took, in seconds (absent while it fails).",
            CONNECT_SECONDS,
        ),
    ),
)
