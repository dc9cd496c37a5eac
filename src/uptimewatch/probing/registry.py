"""The protocols the daemon speaks, by kind: the one list the loader, the scheduler, the health
model and the exporter read (each gets its part from the composition root, ``app.py``).

Adding a protocol is one module that builds a :class:`~.protocol.Protocol` plus one line: in
:data:`BUILTIN` for a shipped one; for one kept in a package of its own, an entry point in that
package's metadata (group ``uptimewatch.protocols``, ``tcp = gateway_checks.tcp:PROTOCOL``), which
:func:`installed` reads, or a :meth:`Registry.register` call. See docs/extending.md.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Iterator, Mapping

from ..config.models import ProbeSettings, SchedulerSettings
from ..config.resolve import ResolvedDevice
from ..export.site_series import ProbeSeries
from ..model.checks import ProbeChecks
from . import icmp, snmp, telemetry
from .protocol import ProbeFn, Protocol

__all__ = ["BUILTIN", "ENTRY_POINTS", "Protocol", "Registry", "RegistryError", "builtin", "installed"]

#: the entry-point group installed packages declare their protocols in
ENTRY_POINTS = "uptimewatch.protocols"


class RegistryError(ValueError):
    """A protocol cannot be registered (twice the same kind, a broken entry point...)."""


#: the protocols shipped with the daemon, in the order their reachability is listed
BUILTIN: tuple[Protocol, ...] = (
    icmp.PROTOCOL,
    snmp.PROTOCOL,
    telemetry.PROTOCOL,
)

#: kinds whose blocks are not under ``probes:`` (the configuration has always had them)
_OWN_KEYS = frozenset({"snmp", "icmp", "telemetry"})


class Registry:
    """An ordered set of protocols, one per kind."""

    def __init__(self, protocols: Iterable[Protocol] = ()) -> None:
        self._by_kind: dict[str, Protocol] = {}
        for protocol in protocols:
            self.register(protocol)

    def register(self, protocol: Protocol) -> None:
        """Add ``protocol``; a kind registered twice is a mistake, refused."""
        if protocol.kind in self._by_kind:
            raise RegistryError(f"protocol {protocol.kind!r} is registered already")
        if protocol.settings is None and protocol.kind not in _OWN_KEYS:
            raise RegistryError(f"protocol {protocol.kind!r} needs a config model (settings)")
        if protocol.scheduled and protocol.probe is None and protocol.kind not in _OWN_KEYS:
            raise RegistryError(f"protocol {protocol.kind!r} is scheduled but has no probe")
        self._by_kind[protocol.kind] = protocol

    def __iter__(self) -> Iterator[Protocol]:
        return iter(self._by_kind.values())

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __getitem__(self, kind: str) -> Protocol:
        return self._by_kind[kind]

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)

    # -- each consumer's part -------------------------------------------------------------------

    def settings(self) -> dict[str, type[ProbeSettings]]:
        """For the loader and the resolver: the config model of each ``probes:`` kind."""
        return {p.kind: p.settings for p in self if p.settings is not None}

    def checks(self) -> tuple[ProbeChecks, ...]:
        """For the health model: what each protocol's observations yield."""
        return tuple(p.checks for p in self)

    def series(self) -> tuple[ProbeSeries, ...]:
        """For the exporter: the per-device series of each protocol, in registry order."""
        return tuple(s for p in self for s in p.series)

    def scheduled(self) -> tuple[str, ...]:
        return tuple(p.kind for p in self if p.scheduled)

    def probes(self, provided: Mapping[str, ProbeFn]) -> dict[str, ProbeFn]:
        """For the scheduler: the probe of each polled protocol. ``provided`` holds those the
        daemon builds from parts it owns; a kind it leaves out (ICMP without privileges) is not
        polled."""
        out: dict[str, ProbeFn] = {}
        for p in self:
            if not p.scheduled:
                continue
            probe = provided.get(p.kind, p.probe)
            if probe is not None:
                out[p.kind] = probe
        return out

    def concurrency(self, settings: SchedulerSettings) -> dict[str, int]:
        return {p.kind: p.concurrency(settings) for p in self if p.scheduled}

    def applies(self) -> dict[str, Callable[[ResolvedDevice], bool]]:
        """For the scheduler: a protocol polls the devices that have a target of its kind."""
        return {kind: _polled_by(kind) for kind in self.scheduled()}


def _polled_by(kind: str) -> Callable[[ResolvedDevice], bool]:
    return lambda device: device.polls(kind)


def builtin() -> Registry:
    """A fresh registry of the shipped protocols (register more on it: it is not shared)."""
    return Registry(BUILTIN)


def installed() -> Registry:
    """The shipped protocols and those the installed packages declare as entry points (group
    :data:`ENTRY_POINTS`, the entry point named as the protocol's kind), in name order. What the
    daemon and ``check-config`` speak unless they are handed a registry. A broken entry point is
    a :class:`RegistryError` that names it: the daemon does not start without a protocol the
    configuration may rely on."""
    registry = builtin()
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        where = f"protocol entry point {entry.name} = {entry.value}"
        try:
            protocol = entry.load()
        except Exception as exc:  # whatever a broken package raises on import, say which one
            raise RegistryError(f"{where}: cannot load it: {type(exc).__name__}: {exc}") from exc
        if not isinstance(protocol, Protocol):
            raise RegistryError(f"{where}: is a {type(protocol).__name__}, not a Protocol")
        if protocol.kind != entry.name:
            raise RegistryError(f"{where}: declares kind {protocol.kind!r}; name the entry point after it")
        try:
            registry.register(protocol)
        except RegistryError as exc:
            raise RegistryError(f"{where}: {exc}") from None
    return registry
