"""What one protocol declares to the rest of the daemon: a registry entry.

A protocol is one module that builds one :class:`Protocol`: its config model (a
:class:`~uptimewatch.config.models.ProbeSettings` with ``kind: Literal[...]``), its ``probe``
coroutine, the checks its observations yield (with their default thresholds, which live in the
config model), and the series it exports. :mod:`.registry` lists the protocols; the composition
root hands each consumer its part (the loader the config models, the scheduler the probes and
which devices they poll, the health model the checks, the exporter the series).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config.models import ProbeSettings, SchedulerSettings
from ..config.resolve import ResolvedDevice
from ..export.site_series import ProbeSeries
from ..model.checks import ProbeChecks
from ..model.observation import Observation

ProbeFn = Callable[[ResolvedDevice], Awaitable[Observation]]


def _max_concurrency(settings: SchedulerSettings) -> int:
    return settings.max_concurrency


@dataclass(frozen=True, slots=True)
class Protocol:
    """One protocol's registry entry.

    ``settings``: its config model, written under ``probes: {<kind>: ...}``; None for SNMP and
    ICMP, whose blocks (``snmp:``, ``icmp:``) the configuration has always had.
    ``probe``: polls one device under the scheduler's deadline and returns an Observation (errors
    as data); None when the daemon builds it from parts it owns (SNMP's transport, ICMP's sockets)
    or when the protocol is not polled at all (telemetry is pushed).
    ``scheduled``: whether the scheduler polls it; ``concurrency``: its cap on polls in flight.
    ``silent``: whether an observation without an error still says the device did not answer (a
    ping burst that lost every reply); an error of the silent kinds (timeout, unreachable) always
    does. The vantage points' quorum votes with it (cluster/quorum.py).
    """

    kind: str
    checks: ProbeChecks
    settings: type[ProbeSettings] | None = None
    probe: ProbeFn | None = None
    series: tuple[ProbeSeries, ...] = ()
    scheduled: bool = True
    concurrency: Callable[[SchedulerSettings], int] = _max_concurrency
    silent: Callable[[Observation], bool] | None = None

    def __post_init__(self) -> None:
        if self.checks.kind != self.kind:
            raise ValueError(f"protocol {self.kind}: its checks are declared for {self.checks.kind!r}")
        for series in self.series:
            if series.kind != self.kind:
                raise ValueError(
                    f"protocol {self.kind}: series {series.name} is declared for {series.kind!r}"
                )
