"""A reload is all or nothing: everything that can fail is acquired first, then swapped in.

:func:`prepare` reads what the new configuration needs beyond the file itself and acquires it
beside the running configuration: the trap socket (bound while the old receiver still runs, or
handed over when the address stays), the telemetry broker's password file, the notification
channels with their CA files, the API credentials. If any of it fails, what was acquired is
given back and the running configuration is untouched. :meth:`Prepared.commit` then swaps every
component over; nothing left in it depends on the outside world.

The daemon bounds the wait for the reload lock and the preparation with
``server.reload_timeout``; a preparation cut off there is undone like a failed one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .alerts.auth import Authenticator
from .alerts.service import AlertService
from .config.loader import LoadedConfig
from .model.observation import Observation
from .notify.dispatcher import ConfiguredChannel, close_channels
from .notify.service import NotifyService
from .probing import telemetry, traps
from .profiles import ProfileCatalog
from .profiles.telemetry import TelemetryProfile
from .supervisor import Supervisor

log = logging.getLogger(__name__)


class ReloadError(Exception):
    """A reason the new configuration cannot be applied; the running one stays."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """The configuration file read, validated and resolved once, with the profiles it names."""

    config: LoadedConfig
    catalog: ProfileCatalog
    telemetry_profiles: Mapping[str, TelemetryProfile]
    profiles_dir: Path


@dataclass
class Intake:
    """The receivers of pushed data: what the daemon runs now, for :func:`prepare` to build on."""

    trap_receiver: traps.TrapReceiver | None
    telemetry_in: telemetry.TelemetrySubscriber | None
    trigger: traps.Trigger
    ingest: Callable[[Observation], None]
    supervisor: Supervisor


@dataclass
class IntakePlan:
    trap_plan: traps.ReceiverPlan
    telemetry_plan: telemetry.SubscriberPlan

    async def commit(self) -> tuple[traps.TrapReceiver | None, telemetry.TelemetrySubscriber | None]:
        return await self.trap_plan.commit(), await self.telemetry_plan.commit()

    async def abort(self) -> None:
        await self.telemetry_plan.abort()
        await self.trap_plan.abort()


async def prepare_intake(loaded: Loaded, intake: Intake) -> IntakePlan:
    """At start (nothing running yet) and at every reload. Raises ``OSError`` (a port in use, an
    unreadable password file) with everything acquired so far given back."""
    cfg = loaded.config
    trap_plan = await traps.prepare_receiver(
        intake.trap_receiver, cfg.config, cfg.devices, loaded.profiles_dir, intake.trigger
    )
    try:
        telemetry_plan = await telemetry.prepare_subscriber(
            intake.telemetry_in,
            cfg.config,
            cfg.source,
            loaded.telemetry_profiles,
            intake.ingest,
            supervisor=intake.supervisor,
        )
    except BaseException:
        await trap_plan.abort()
        raise
    return IntakePlan(trap_plan, telemetry_plan)


@dataclass
class Prepared:
    """A reload ready to be swapped in (:meth:`commit`) or given up (:meth:`abort`)."""

    loaded: Loaded
    intake: IntakePlan
    channels: dict[str, ConfiguredChannel] | None
    authenticator: Authenticator | None

    async def abort(self) -> None:
        await self.intake.abort()
        if self.channels is not None:
            await close_channels(self.channels)


async def prepare(loaded: Loaded, intake: Intake, notify: NotifyService, alerts: AlertService) -> Prepared:
    """Acquire everything ``loaded`` needs; :class:`ReloadError` with the reason when something
    cannot be had (and then nothing stays acquired)."""
    undo: list[Callable[[], Awaitable[None]]] = []
    try:
        try:
            plan = await prepare_intake(loaded, intake)
        except OSError as exc:
            raise ReloadError(str(exc)) from exc
        undo.append(plan.abort)
        try:
            channels = await notify.prepare_reload(loaded.config.config)
        except ValueError as exc:
            raise ReloadError(str(exc)) from exc
        if channels is not None:
            undo.append(lambda: close_channels(channels))
        try:
            authenticator = await alerts.prepare_auth(loaded.config)
        except ValueError as exc:
            raise ReloadError(str(exc)) from exc
    except BaseException:
        # also on a timeout's cancellation: the trap socket of a given-up reload must not linger
        for give_back in reversed(undo):
            try:
                await give_back()
            except Exception:
                log.exception("reload: giving back what a failed reload acquired")
        raise
    return Prepared(loaded, plan, channels, authenticator)
