"""The composition root: builds every component from the configuration, starts and stops them in
order, and owns the one reload path shared by SIGHUP and ``POST /-/reload``.

Only this module wires components together; each of them takes plain data and small callables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import __version__, executors
from .alerts import api as alerts_api
from .alerts.service import AlertService
from .config.loader import ConfigError, LoadedConfig, SiteCache, load_config
from .config.models import Config
from .config.resolve import ResolvedDevice
from .event_loop import EventLoopError, loop_factory
from .export.metrics import HealthCollector, IntakeStats, RuntimeInfo
from .export.tasks import TaskCollector
from .gcpause import promote_every, settle_after_load
from .ledger import Ledger
from .looplag import LoopLag
from .model.health import HealthModel, HealthSnapshot, StateChange
from .model.history import RecentSamples
from .model.observation import Observation
from .notify.service import NotifyService
from .power import PowerTracker
from .probing import icmp, snmp, telemetry, traps
from .probing.registry import Registry, RegistryError, installed
from .probing.snmp_transport import create_transport
from .profiles import ProfileCatalog, default_profiles_dir, load_profiles
from .redact import redact
from .reload import Intake, Loaded, Prepared, ReloadError, prepare, prepare_intake
from .scheduler import ProbeFn, Scheduler
from .store import SqliteStore, StoreError
from .supervisor import Supervisor
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


#: seconds between two :func:`gcpause.promote` calls: the status objects polls built meanwhile
#: (1,700 devices' worth at 100,000 devices a minute) are all a collector pass walks
GC_PROMOTE_PERIOD = 1.0

#: sites whose status a scrape brings up to date per step on the event loop (~25 ms of work)
SCRAPE_STEP_SITES = 400


def _load(path: Path, protocols: Registry, cache: SiteCache | None = None) -> Loaded:
    """Blocking: config and profiles are read together, so a reload validates both or neither.
    The file is parsed and resolved once; the profiles are loaded from the directory it names.
    ``protocols`` says which ``probes:`` kinds the file may use; ``cache`` carries the sites of
    the last good load over, so a reload parses only what changed."""
    catalogs: list[ProfileCatalog] = []

    def profile_names(config: Config) -> Collection[str]:
        directory = _profiles_dir(LoadedConfig(config, (), path, ""))
        catalogs.append(load_profiles(directory))
        return catalogs[-1].names()

    loaded = load_config(path, known_profiles=profile_names, probe_models=protocols.settings(), cache=cache)
    profiles_dir = _profiles_dir(loaded)
    telemetry_profiles = telemetry.check_telemetry(loaded.config, loaded.source, profiles_dir)
    return Loaded(loaded, catalogs[-1], telemetry_profiles, profiles_dir)


@dataclass
class _ReloadState:
    successful: bool = True
    success_timestamp: float = 0.0
    last_error: str = ""
    inconsistent: bool = False  # the swap itself failed: parts may run different configurations


class Daemon:
    """One monitoring process. Use :func:`run_daemon` rather than calling start/stop directly."""

    def __init__(
        self, config_path: Path, listen: str | None = None, protocols: Registry | None = None
    ) -> None:
        self.config_path = Path(config_path)
        #: the protocols it speaks (probing/registry.py); each part below gets its share
        self.protocols = protocols if protocols is not None else installed()
        self._listen_override = listen
        self._reload_lock = asyncio.Lock()
        self._site_cache = SiteCache()  # the sites of the last good load: a reload parses what changed
        self.supervisor = Supervisor()
        self._reload_state = _ReloadState()
        self._notifier = SystemdNotifier()
        # what start() started, with how to stop it; stop() unwinds it
        self._running = contextlib.AsyncExitStack()
        self._phase: Literal["starting", "running", "stopping", "stopped"] = "starting"
        self.trap_receiver: traps.TrapReceiver | None = None
        self.telemetry_in: telemetry.TelemetrySubscriber | None = None
        self._polled_sites: set[str] = set()
        self.cluster: ClusterRuntime | None = None
        self.listen = listen or DEFAULT_LISTEN
        self.registry = CollectorRegistry(auto_describe=True)

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part in order. Each part's teardown is registered as soon as it runs, so a
        failure half-way (a port in use, a locked state store) stops what already started, in
        reverse order, before the error reaches the caller; :meth:`stop` unwinds the same list."""
        async with contextlib.AsyncExitStack() as stack:
            await self._start_parts(stack)
            self._running = stack.pop_all()
        self._phase = "running"
        self._notifier.ready()
        self._notifier.status(f"monitoring {len(self._loaded.devices)} devices")
        log.info(
            "uptimewatch %s started: %d sites, %d devices, listening on http://%s",
            __version__,
            len(self._loaded.config.sites),
            len(self._loaded.devices),
            self.listen,
        )

    async def stop(self) -> None:
        """Stop everything :meth:`start` started, the last started first. Idempotent."""
        self._notifier.stopping()
        self._phase = "stopping"
        running, self._running = self._running, contextlib.AsyncExitStack()
        await running.aclose()
        self._phase = "stopped"
        log.info("uptimewatch stopped")

    async def _start_parts(self, stack: contextlib.AsyncExitStack) -> None:
        first = await executors.CONFIG.run(_load, self.config_path, self.protocols, self._site_cache)
        loaded, catalog = first.config, first.catalog
        self._loaded = loaded
        self._catalog = catalog
        self.listen = self._listen_override or loaded.config.server.listen
        self._reload_state.success_timestamp = time.time()
        _on_stop(stack, "systemd notification socket", self._notifier.close)

        # from the start on: a busy start-up is measured too
        self.loop_lag = LoopLag(
            threshold=lambda: self._loaded.config.scheduler.overload_lag,
            clear_after=lambda: self._loaded.config.scheduler.overload_clear_after,
        )
        self.loop_lag.start()
        _on_stop(stack, "event-loop lag probe", self.loop_lag.stop)
        self.icmp = icmp.IcmpProber(await executors.CONFIG.run(icmp.detect_privilege))
        _on_stop(stack, "ICMP sockets", self.icmp.close)
        if not self.icmp.usable:
            log.error("ICMP disabled: %s; devices are judged by SNMP alone", self.icmp.privilege.message)

        self.store = SqliteStore(loaded.store_path(), exclusive=True)
        _on_stop(stack, "state store", self.store.close)  # also when open fails: its thread ends
        await self.store.open()
        self.ledger = Ledger(self.store, supervisor=self.supervisor)
        await self.ledger.start(loaded.config)
        _on_stop(stack, "ledger", self.ledger.stop)  # after the scheduler: the last changes are in
        self._transport = create_transport()
        _on_stop(stack, "SNMP transport", self._transport.close)
        self._match_cache = snmp.ProfileMatchCache()
        self.health = HealthModel(
            loaded.config, loaded.devices, self._profile_thresholds, probe_checks=self.protocols.checks()
        )
        self.power = PowerTracker(loaded.devices)
        self.samples = RecentSamples(loaded.devices)  # the site page's charts
        self.notify = NotifyService(
            self.store,
            loaded.config,
            get_site=self.health.site,
            supervisor=self.supervisor,
        )
        if loaded.config.cluster is not None:
            # several nodes: only the alert leader sends (until the cluster has started: nobody)
            self.notify.dispatcher.sending = lambda: self.cluster is not None and self.cluster.leading()
        await self.notify.start()
        _on_stop(stack, "notifications", self.notify.stop)
        self.outbox = self.notify.outbox  # the alert engine hands its notices over here
        self.alerts = AlertService(
            self.store, loaded, self.snapshot, sink=self.outbox, supervisor=self.supervisor
        )
        # TimeToDarkSoon reads the estimates as plain data at each evaluation; reloads carry it over
        self.alerts.set_power_view(self.power)
        self.alerts.set_monitor_view(self.loop_lag)  # MonitorOverloaded
        self.cluster = self._build_cluster(loaded)  # before the engine runs: it steps only when leading
        await self.alerts.start()
        _on_stop(stack, "alert engine", self.alerts.stop)
        if self.cluster is not None:
            _on_stop(stack, "cluster", self.cluster.stop)
            await self.cluster.start()
        # the probes built from parts the daemon owns; the registry gives the others. These two
        # stay by name: their probes close over what this daemon starts and stops in its own
        # lifecycle (the SNMP transport, the profile catalog a reload swaps, the ICMP sockets,
        # left out when the privilege is missing), which a registry entry, shared by every
        # daemon in the process, cannot hold.
        own: dict[str, ProbeFn] = {"snmp": self._poll_snmp}
        if self.icmp.usable:
            own["icmp"] = self.icmp.probe
        self.scheduler = Scheduler(
            self.protocols.probes(own),
            self._ingest if self.cluster is None else self.cluster.observe,
            max_concurrency=self.protocols.concurrency(loaded.config.scheduler),
            applies=self.protocols.applies(),
            overload=self.loop_lag,
        )
        health = HealthCollector(
            self.snapshot if self.cluster is None else self.cluster.exported(self.snapshot),
            self.scheduler.stats,
            self._runtime,
            registry=self.registry if self.cluster is None else None,
            get_outbox_stats=self.notify.stats,
            get_alert_stats=self.alerts.stats,
            get_time_to_dark=lambda: self.power.time_to_dark(time.time()),
            get_intake_stats=self._intake_stats,
            get_full_detail=lambda: self._loaded.config.server.metrics_detail == "full",
            probe_series=self.protocols.series(),
        )
        tasks = TaskCollector(self.supervisor.stats, self.ledger.stats)
        if self.cluster is None:
            self.registry.register(tasks)
        else:  # only the sites this node owns, and its own series labelled with its id
            self.cluster.register_metrics(self.registry, [health, tasks])

        runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await runner.setup()
        _on_stop(stack, "web server", runner.cleanup)
        host, _, port = self.listen.rpartition(":")
        await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()

        await self.scheduler.start()
        _on_stop(stack, "scheduler", self.scheduler.stop)
        self.scheduler.reconcile(self._polled(loaded.devices))
        plan = await prepare_intake(first, self._intake())
        _on_stop(stack, "trap receiver and telemetry", self._stop_intake)
        try:
            self.trap_receiver, self.telemetry_in = await plan.commit()
        except BaseException:  # not expected (a commit swaps, it acquires nothing); give back the ports
            await plan.abort()
            raise
        settle_after_load()  # config and model objects live for the whole run: out of GC passes
        promoting = asyncio.create_task(promote_every(GC_PROMOTE_PERIOD), name="uptimewatch-gc")
        _on_stop(stack, "cycle-collector policy", lambda: _cancel(promoting))
        if (interval := self._notifier.watchdog_interval()) is not None:
            watchdog = asyncio.create_task(self._watchdog(interval / 2), name="uptimewatch-watchdog")
            _on_stop(stack, "watchdog", lambda: _cancel(watchdog))

    async def _stop_intake(self) -> None:
        # a reload may have swapped them: stop the ones running now
        receiver, subscriber = self.trap_receiver, self.telemetry_in
        self.trap_receiver = self.telemetry_in = None
        for intake in (receiver, subscriber):
            if intake is not None:
                await intake.stop()

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    # -- the one reload path -----------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Validate the file fully and acquire what it needs, then swap in one step; on any error
        keep the running config whole. Never raises: the answer says what happened."""
        timeout = self._loaded.config.server.reload_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._reload_lock.acquire()
        except TimeoutError:
            return self._reload_failed(f"another reload is still running after {timeout:g} s")
        try:
            return await self._reload_locked(timeout)
        except Exception as exc:  # a bug in the swap: the parts may disagree now, say so loudly
            log.exception("configuration reload failed while swapping in; restart the daemon")
            self._reload_state = _ReloadState(False, self._reload_state.success_timestamp, str(exc), True)
            return ReloadResult(False, f"reload failed half-way ({type(exc).__name__}: {exc}); restart")
        finally:
            self._reload_lock.release()

    async def _reload_locked(self, timeout: float) -> ReloadResult:
        self._notifier.reloading()
        try:
            async with asyncio.timeout(timeout):
                new = await executors.CONFIG.run(_load, self.config_path, self.protocols, self._site_cache)
                prepared = await prepare(new, self._intake(), self.notify, self.alerts)
        except ConfigError as exc:
            return self._reload_failed("\n".join(str(i) for i in exc.issues))
        except ReloadError as exc:
            return self._reload_failed(str(exc))
        except TimeoutError:
            return self._reload_failed(
                f"reading and preparing {self.config_path} took more than {timeout:g} s"
                " (server.reload_timeout); is it on a hung file system?"
            )
        except Exception as exc:  # unreadable profiles, I/O errors: same outcome, keep running
            log.exception("reload failed")
            return self._reload_failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._notifier.ready()
        return await self._commit(prepared)

    async def _commit(self, prepared: Prepared) -> ReloadResult:
        """Swap every part over to the prepared configuration; nothing here can be refused."""
        loaded = prepared.loaded.config
        self._loaded = loaded
        self._catalog = prepared.loaded.catalog
        self._match_cache.clear()
        self.ledger.record(self.health.reconfigure(loaded.config, loaded.devices))
        self.ledger.reconfigure(loaded.config)
        self.power.reconfigure(loaded.devices)
        self.samples.reconfigure(loaded.devices)
        if self.cluster is not None:
            self.cluster.reconfigure(loaded)
        self.scheduler.reconcile(self._polled(loaded.devices))
        self.trap_receiver, self.telemetry_in = await prepared.intake.commit()
        self._recheck()
        await self.notify.commit_reload(loaded.config, prepared.channels)
        await self.alerts.reconfigure(loaded, prepared.authenticator)
        self._reload_state = _ReloadState(True, time.time(), "")
        settle_after_load()
        new_listen = self._listen_override or loaded.config.server.listen
        if new_listen != self.listen:
            log.warning("server.listen changed to %s: takes effect after a restart", new_listen)
        message = f"reloaded {self.config_path}: {len(loaded.devices)} devices"
        log.info(message)
        return ReloadResult(True, message)

    def _reload_failed(self, why: str) -> ReloadResult:
        self._reload_state.successful = False
        self._reload_state.last_error = redact(why)
        self._notifier.status(f"last reload failed; monitoring {len(self._loaded.devices)} devices")
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

    def _build_cluster(self, loaded: LoadedConfig) -> ClusterRuntime | None:
        if loaded.config.cluster is None:
            return None
        from .cluster.runtime import ClusterRuntime  # NATS is imported only by clustered daemons

        return ClusterRuntime(
            loaded,
            url=f"http://{self.listen}",
            ingest=self._ingest,
            on_assignment=self._reassigned,
            ping=self.icmp.answers,
            alerts=self.alerts,
            outbox=self.outbox,
        )

    def site_pollers(self, site_id: str) -> tuple[str, ...]:
        """The nodes that poll ``site_id``, best first (the first owns it); () when alone."""
        return () if self.cluster is None else self.cluster.node.pollers(site_id)

    def _polled(self, devices: Sequence[ResolvedDevice]) -> Sequence[ResolvedDevice]:
        polled = devices if self.cluster is None else self.cluster.polled(devices)
        self._polled_sites = {d.site_id for d in polled}
        return polled

    def _reassigned(self) -> None:
        """This node's share of the sites changed: poll the new ones at once, drop the others."""
        if self._phase != "running":
            return  # start() reconciles once the cluster has its first view
        before = self._polled_sites
        polled = self._polled(self._loaded.devices)
        self.scheduler.reconcile(polled)
        for device in polled:
            if device.site_id not in before:
                self.scheduler.trigger(device.site_id, device.device_id)

    def _intake(self) -> Intake:
        """Traps re-poll through the scheduler; telemetry observations go where polls' go."""
        return Intake(
            self.trap_receiver,
            self.telemetry_in,
            self.scheduler.trigger,
            self._ingest,
            self.supervisor,
        )

    def _intake_stats(self) -> IntakeStats:
        receiver, subscriber = self.trap_receiver, self.telemetry_in
        return IntakeStats(receiver.counts() if receiver else {}, subscriber.counts() if subscriber else {})

    def snapshot(self) -> HealthSnapshot:
        return self.health.snapshot()

    def prepare_scrape(self) -> bool:
        """One bounded step of the snapshot a scrape is about to take (see exposition.scrape)."""
        return self.health.refresh(SCRAPE_STEP_SITES)

    def trusted_origins(self) -> list[str]:
        return self._loaded.config.server.trusted_origins

    def readiness(self) -> tuple[bool, str]:
        if self._phase != "running":
            return False, self._phase
        if self._reload_state.inconsistent:
            return False, "a reload failed half-way; restart the daemon"
        if down := self.supervisor.vital_down():
            return False, "background task down: " + ", ".join(f"{t.name} ({t.last_error})" for t in down)
        if not self._reload_state.successful:
            return True, "running; last configuration reload failed"
        return True, "ready"

    def _runtime(self) -> RuntimeInfo:
        return RuntimeInfo(
            config_last_reload_successful=self._reload_state.successful,
            config_last_reload_success_timestamp=self._reload_state.success_timestamp,
            icmp_usable=self.icmp.usable,
            version=__version__,
            icmp_malformed_packets=self.icmp.malformed_packets,
            event_loop_lag=self.loop_lag.recent(),
        )

    @property
    def config(self) -> Config:
        """The running configuration (the web side reads names and coordinates from it)."""
        return self._loaded.config

    @property
    def devices(self) -> tuple[ResolvedDevice, ...]:
        return self._loaded.devices

    def _ingest(self, obs: Observation) -> None:
        changes = self.health.ingest(obs)
        self.power.ingest(obs)
        self.samples.ingest(obs)
        # verdicts that wait for another site's next result (an upstream, the sites behind a hub)
        for site_id, device_id in self.health.take_polls():
            self.scheduler.trigger(site_id, device_id)
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


def _on_stop(
    stack: contextlib.AsyncExitStack, part: str, close: Callable[[], Awaitable[None] | None]
) -> None:
    """Register ``close`` on ``stack``; a part that fails to stop is logged and the others still
    stop, and the error that made a start fail is the one its caller sees."""

    async def run() -> None:
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("stopping the %s failed", part)

    stack.push_async_callback(run)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def run_daemon(
    config_path: Path, listen: str | None = None, protocols: Registry | None = None
) -> AsyncIterator[Daemon]:
    """Start the whole service; stop it on exit. Used by ``run``, the demo and end-to-end tests.
    ``protocols``: the protocols it speaks; the shipped and installed ones
    (:func:`probing.registry.installed`) when None."""
    daemon = Daemon(Path(config_path), listen, protocols)
    await daemon.start()  # a failed start has stopped what it started
    try:
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
        _name, factory = loop_factory()
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_serve(args))
    except EventLoopError as exc:
        print(f"uptimewatch: cannot start: {exc}", file=sys.stderr)
        return 1
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
    except RegistryError as exc:
        print(f"uptimewatch: cannot start: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # a disk that fills up while the components prepare their tables
        print(f"uptimewatch: cannot start: the state store (storage.path) failed: {exc}", file=sys.stderr)
        return 1
