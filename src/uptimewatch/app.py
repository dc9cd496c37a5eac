"""The composition root: builds every component from the configuration, starts and stops them in
order, and owns the one reload path shared by SIGHUP and ``POST /-/reload``.

Only this module wires components together; each of them takes plain data and small callables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import __version__
from .alerts import api as alerts_api
from .alerts.service import AlertService
from .config.loader import ConfigError, LoadedConfig, load_config
from .config.resolve import ResolvedDevice
from .export.metrics import HealthCollector, IntakeStats, RuntimeInfo
from .ledger import Ledger
from .model.health import HealthModel, HealthSnapshot, StateChange
from .model.observation import Observation
from .notify.service import NotifyService
from .power import PowerTracker
from .probing import icmp, snmp, telemetry, traps
from .probing.snmp_transport import create_transport
from .profiles import ProfileCatalog, default_profiles_dir, load_profiles
from .scheduler import ProbeFn, Scheduler
from .store import SqliteStore, StoreError
from .systemd_notify import SystemdNotifier
from .web.app import ReloadResult, build_app

if TYPE_CHECKING:
    from .cluster.runtime import ClusterRuntime

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9847"


def _profiles_dir(loaded: LoadedConfig) -> Path:
    configured = loaded.config.profiles_dir
    if configured is None:
        return default_profiles_dir()
    path = Path(configured)
    return path if path.is_absolute() else loaded.source.parent / path


def _load(path: Path) -> tuple[LoadedConfig, ProfileCatalog]:
    """Blocking: config and profiles are read together, so a reload validates both or neither."""
    loaded = load_config(path)
    catalog = load_profiles(_profiles_dir(loaded))
    loaded = load_config(path, known_profiles=catalog.names())
    telemetry.check_telemetry(loaded.config, loaded.source, _profiles_dir(loaded))
    return loaded, catalog


@dataclass
class _ReloadState:
    successful: bool = True
    success_timestamp: float = 0.0
    last_error: str = ""


class Daemon:
    """One monitoring process. Use :func:`run_daemon` rather than calling start/stop directly."""

    def __init__(self, config_path: Path, listen: str | None = None) -> None:
        self.config_path = Path(config_path)
        self._listen_override = listen
        self._reload_lock = asyncio.Lock()
        self._reload_state = _ReloadState()
        self._notifier = SystemdNotifier()
        self._runner: web.AppRunner | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._started = False
        self._polled_sites: set[str] = set()
        self.cluster: ClusterRuntime | None = None
        self.listen = listen or DEFAULT_LISTEN
        self.registry = CollectorRegistry(auto_describe=True)

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        loaded, catalog = await asyncio.to_thread(_load, self.config_path)
        self._loaded = loaded
        self._catalog = catalog
        self.listen = self._listen_override or loaded.config.server.listen
        self._reload_state.success_timestamp = time.time()

        privilege = await asyncio.to_thread(icmp.icmp_privilege)
        self._icmp_usable = privilege.usable
        if not privilege.usable:
            log.error("ICMP disabled: %s; devices are judged by SNMP alone", privilege.message)

        self.store = SqliteStore(loaded.store_path())
        await self.store.open()
        self.ledger = Ledger(self.store)
        await self.ledger.start(loaded.config)
        self._transport = create_transport()
        self._match_cache = snmp.ProfileMatchCache()
        self.health = HealthModel(loaded.config, loaded.devices, self._profile_thresholds)
        self.power = PowerTracker(loaded.devices)
        self.notify = NotifyService(self.store, loaded.config, get_site=lambda sid: self.snapshot().site(sid))
        await self.notify.start()
        self.outbox = self.notify.outbox  # the alert engine hands its notices over here
        self.alerts = AlertService(self.store, loaded, self.snapshot, sink=self.outbox)
        # TimeToDarkSoon reads the estimates as plain data at each evaluation; reloads carry it over
        self.alerts.set_power_view(self.power)
        await self.alerts.start()
        self.cluster = await self._start_cluster(loaded)
        probes: dict[str, ProbeFn] = {"snmp": self._poll_snmp}
        if self._icmp_usable:
            probes["icmp"] = icmp.probe
        sched = loaded.config.scheduler
        self.scheduler = Scheduler(
            probes,
            self._ingest if self.cluster is None else self.cluster.observe,
            max_concurrency={"snmp": sched.max_concurrency, "icmp": sched.icmp_max_concurrency},
        )
        HealthCollector(
            self.snapshot,
            self.scheduler.stats,
            self._runtime,
            registry=self.registry,
            get_outbox_stats=self.notify.stats,
            get_alert_stats=self.alerts.stats,
            get_time_to_dark=lambda: self.power.time_to_dark(time.time()),
            get_intake_stats=self._intake_stats,
        )

        app = build_app(self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, _, port = self.listen.rpartition(":")
        await web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port)).start()

        await self.scheduler.start()
        self.scheduler.reconcile(self._polled(loaded.devices))
        await self._reconcile_intake(loaded, first=True)
        gc.freeze()  # config and model objects live for the whole run: keep them out of GC passes
        self._started = True
        self._notifier.ready()
        self._notifier.status(f"monitoring {len(loaded.devices)} devices")
        if (interval := self._notifier.watchdog_interval()) is not None:
            self._watchdog_task = asyncio.create_task(self._watchdog(interval / 2))
        log.info(
            "uptimewatch %s started: %d sites, %d devices, listening on http://%s",
            __version__,
            len(loaded.config.sites),
            len(loaded.devices),
            self.listen,
        )

    async def stop(self) -> None:
        self._notifier.stopping()
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog_task
        for intake in (getattr(self, "trap_receiver", None), getattr(self, "telemetry_in", None)):
            if intake is not None:
                await intake.stop()
        if self._started:
            await self.scheduler.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if hasattr(self, "_transport"):
            await self._transport.close()
        if hasattr(self, "alerts"):
            await self.alerts.stop()
        if hasattr(self, "ledger"):
            await self.ledger.stop()  # after the scheduler: the last changes are in
        if hasattr(self, "notify"):
            await self.notify.stop()
        if hasattr(self, "store"):
            await self.store.close()
        self._started = False
        log.info("uptimewatch stopped")

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    # -- the one reload path -----------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Validate the file fully, then swap in one step; on any error keep the running config."""
        async with self._reload_lock:
            self._notifier.reloading()
            try:
                loaded, catalog = await asyncio.to_thread(_load, self.config_path)
            except ConfigError as exc:
                return self._reload_failed("\n".join(str(i) for i in exc.issues))
            except Exception as exc:  # unreadable profiles, I/O errors: same outcome, keep running
                log.exception("reload failed")
                return self._reload_failed(f"{type(exc).__name__}: {exc}")
            finally:
                self._notifier.ready()
            self._loaded = loaded
            self._catalog = catalog
            self._match_cache.clear()
            self.ledger.record(self.health.reconfigure(loaded.config, loaded.devices))
            self.ledger.reconfigure(loaded.config)
            self.power.reconfigure(loaded.devices)
            if self.cluster is not None:
                self.cluster.reconfigure(loaded)
            self.scheduler.reconcile(self._polled(loaded.devices))
            await self._reconcile_intake(loaded)
            self._recheck()
            await self.notify.reload(loaded.config)
            await self.alerts.reconfigure(loaded)
            self._reload_state = _ReloadState(True, time.time(), "")
            gc.freeze()
            new_listen = self._listen_override or loaded.config.server.listen
            if new_listen != self.listen:
                log.warning("server.listen changed to %s: takes effect after a restart", new_listen)
            message = f"reloaded {self.config_path}: {len(loaded.devices)} devices"
            log.info(message)
            return ReloadResult(True, message)

    def _reload_failed(self, why: str) -> ReloadResult:
        self._reload_state.successful = False
        self._reload_state.last_error = why
        log.error("configuration reload failed, keeping the running configuration:\n%s", why)
        return ReloadResult(False, why)

    # -- what the other parts read ------------------------------------------------------------

    async def _poll_snmp(self, device: ResolvedDevice) -> Observation:
        # reads the catalog at call time, so a reload's new profiles apply from the next poll
        return await snmp.probe(device, self._catalog, self._transport, self._match_cache)

    def _profile_thresholds(self, profile: str | None):  # type: ignore[no-untyped-def]
        return self._catalog.thresholds_for(profile)

    def extend_app(self, app: web.Application) -> None:
        alerts_api.install(app, self.alerts)
        if self.cluster is not None:
            from .cluster import api as cluster_api

            cluster_api.install(app, self.cluster.node)

    # -- several nodes (docs/cluster.md): the only places the cluster touches the daemon ---------

    async def _start_cluster(self, loaded: LoadedConfig) -> ClusterRuntime | None:
        if loaded.config.cluster is None:
            return None
        from .cluster.runtime import ClusterRuntime  # NATS is imported only by clustered daemons

        runtime = ClusterRuntime(
            loaded, url=f"http://{self.listen}", ingest=self._ingest, on_assignment=self._reassigned
        )
        await runtime.start()
        return runtime

    def _polled(self, devices: Sequence[ResolvedDevice]) -> Sequence[ResolvedDevice]:
        polled = devices if self.cluster is None else self.cluster.polled(devices)
        self._polled_sites = {d.site_id for d in polled}
        return polled

    def _reassigned(self) -> None:
        """This node's share of the sites changed: poll the new ones at once, drop the others."""
        if not self._started:
            return
        before = self._polled_sites
        polled = self._polled(self._loaded.devices)
        self.scheduler.reconcile(polled)
        for device in polled:
            if device.site_id not in before:
                self.scheduler.trigger(device.site_id, device.device_id)

    async def _reconcile_intake(self, loaded: LoadedConfig, *, first: bool = False) -> None:
        """Traps re-poll through the scheduler; telemetry observations go where polls' go."""
        profiles = await asyncio.to_thread(_profiles_dir, loaded)  # the default one is found by listing
        self.trap_receiver: traps.TrapReceiver | None = await traps.reconcile_receiver(
            None if first else self.trap_receiver,
            loaded.config,
            loaded.devices,
            profiles,
            self.scheduler.trigger,
        )
        self.telemetry_in: telemetry.TelemetrySubscriber | None = await telemetry.reconcile_subscriber(
            None if first else self.telemetry_in, loaded.config, loaded.source, profiles, self._ingest
        )

    def _intake_stats(self) -> IntakeStats:
        receiver = getattr(self, "trap_receiver", None)  # absent until start got that far
        subscriber = getattr(self, "telemetry_in", None)
        return IntakeStats(receiver.counts() if receiver else {}, subscriber.counts() if subscriber else {})

    def snapshot(self) -> HealthSnapshot:
        return self.health.snapshot()

    def readiness(self) -> tuple[bool, str]:
        if not self._started:
            return False, "starting"
        if not self._reload_state.successful:
            return True, "running; last configuration reload failed"
        return True, "ready"

    def _runtime(self) -> RuntimeInfo:
        return RuntimeInfo(
            config_last_reload_successful=self._reload_state.successful,
            config_last_reload_success_timestamp=self._reload_state.success_timestamp,
            icmp_usable=self._icmp_usable,
            version=__version__,
        )

    @property
    def devices(self) -> tuple[ResolvedDevice, ...]:
        return self._loaded.devices

    def _ingest(self, obs: Observation) -> None:
        changes = self.health.ingest(obs)
        self.power.ingest(obs)
        if changes:
            self._recheck()
        for change in changes:
            self._log_change(change)
            if change.kind == "site":
                self.notify.site_changed(change.site_id)
        if changes:
            self.ledger.record(changes)
            self.alerts.notice(changes)

    def _recheck(self) -> None:
        """Poll at once the sites whose upstream came back: they stay unreachable until then."""
        sites = self.health.take_rechecks()
        if not sites:
            return
        snap = self.health.snapshot()
        for site_id in sites:
            status = snap.site(site_id)
            for device in status.devices if status is not None else ():
                self.scheduler.trigger(site_id, device.device_id)
        log.info("upstream recovered: re-checking %d sites (%s)", len(sites), ", ".join(sites[:10]))

    @staticmethod
    def _log_change(change: StateChange) -> None:
        if change.kind not in ("site", "device"):
            return
        old, new = (getattr(v, "name", v) for v in (change.old, change.new))
        old, new = str(old).lower(), str(new).lower()
        # the first judgement after a start or a reload is not news: keep it out of INFO
        level = logging.DEBUG if old == "unknown" else logging.INFO
        if change.kind == "site":
            log.log(level, "site %s: %s -> %s (%s)", change.site_id, old, new, change.reason)
        else:
            log.log(
                level,
                "site %s device %s: %s -> %s (%s)",
                change.site_id,
                change.device_id,
                old,
                new,
                change.reason,
            )

    async def _watchdog(self, period: float) -> None:
        """Ping systemd's watchdog only while polls keep finishing: a stuck scheduler gets restarted."""
        last = -1
        while True:
            await asyncio.sleep(period)
            stats = self.scheduler.stats()
            done = sum(stats.polls.values())
            if done != last or not stats.targets:
                self._notifier.watchdog()
            else:
                log.warning("no poll finished in %.0f s; not petting the watchdog", period)
            last = done


@contextlib.asynccontextmanager
async def run_daemon(config_path: Path, listen: str | None = None) -> AsyncIterator[Daemon]:
    """Start the whole service; stop it on exit. Used by ``run``, the demo and end-to-end tests."""
    daemon = Daemon(Path(config_path), listen)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with run_daemon(Path(args.config), args.listen) as daemon:
        reloads: set[asyncio.Task[ReloadResult]] = set()

        def on_hup() -> None:
            task = loop.create_task(daemon.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"uptimewatch listening on {daemon.url} (/metrics, /api/v1/sites)", flush=True)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return 0


def cli_run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"uptimewatch: cannot start: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"uptimewatch: cannot start: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # a disk that fills up while the components prepare their tables
        print(f"uptimewatch: cannot start: the state store (storage.path) failed: {exc}", file=sys.stderr)
        return 1
