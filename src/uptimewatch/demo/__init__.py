"""``uptimewatch demo``: a simulated province on loopback, monitored by the daemon in-process.

What it starts, in order: an SMTP sink that keeps alert emails as ``<workdir>/mail/*.eml``,
Debian's mosquitto when installed, the province's config (``<workdir>/config.yaml``, with
alerting and notification settings pointing at both), the simulated SNMP agents (one socket per
device on 127.16.0.0 and up), the daemon (``uptimewatch.app``), and the scenario
(``<workdir>/scenario.yaml``, copied from the shipped one on first run, so it can be edited).
Ctrl-C, SIGTERM or ``--duration`` stop everything it started.

With ``--nodes N`` (``make demo-cluster``) the province is watched by N ``uptimewatch run``
processes sharing a 3-server NATS cluster on loopback instead of the in-process daemon
(:mod:`.cluster`); ``--kill-leader-at SECONDS`` kills the leader part-way through to show failover.

ICMP: every 127.x address answers pings in the kernel. As root, the demo makes its faults real to
ping as well: an nftables table of its own (``table inet uptimewatch_demo``) drops echo requests
to every device that is silent (dead, rebooting, dark, or cut off behind a cut or faded link), so
a cut hub is ``down`` and the sites behind it ``unreachable``. The table is deleted on exit, and a
stale one is deleted at start. Without root, a "dead" device still answers ping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..i18n import translator
from .agent import SnmpAgent
from .agent_process import AgentProcesses, processes_for
from .alerting import add_alerting
from .broker import BrokerError, Mosquitto
from .device_models import ModelError
from .devices import SimClock, Simulator
from .firewall import DEFAULT_TABLE, FirewallError, IcmpFirewall, unavailable_reason
from .mailsink import MailSink, install_routes
from .province import DEFAULT_SITES, FIRST_NET, DemoProvince, generate_province
from .scenario import PlannedStep, ScenarioError, default_scenario_path, run_rounds
from .world import WorldSpec, build_world

if TYPE_CHECKING:
    from .cluster import DemoCluster

__all__ = [
    "DemoOptions",
    "DemoProvince",
    "DemoRuntime",
    "MailSink",
    "SimClock",
    "Simulator",
    "SnmpAgent",
    "cli_demo",
    "generate_province",
    "run_demo",
]

log = logging.getLogger(__name__)

#: without root, port 161 cannot be bound; the demo then serves its devices here
UNPRIVILEGED_SNMP_PORT = 16161


@dataclass(frozen=True, slots=True)
class DemoOptions:
    sites: int = DEFAULT_SITES
    listen: str = "127.0.0.1:9847"
    workdir: Path = Path("var/demo")
    duration: float | None = None
    snmp_port: int | None = None  # None: 161 as root, else UNPRIVILEGED_SNMP_PORT
    scenario: Path | None = None  # None: <workdir>/scenario.yaml
    daemon: bool = True  # False: simulator and scenario only (poll them with any SNMP tool)
    districts: int | None = None  # None: 8, or all 10 for large provinces
    interval: str | None = None  # poll interval of the generated config; None: by province size
    first_net: int = FIRST_NET  # second octet of the first site's addresses: 127.16.1.x
    nft_table: str = DEFAULT_TABLE  # the nftables table the demo owns (root only)
    mqtt: bool = True  # start mosquitto when installed
    nodes: int = 1  # more than 1: that many `uptimewatch run` processes over a local NATS cluster
    kill_leader_at: float | None = None  # with nodes: kill -9 the leader after this many seconds

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoOptions:
        scenario = getattr(args, "scenario", None)
        nodes = getattr(args, "nodes", None)
        nodes = 1 if nodes is None else nodes
        if nodes < 1:
            raise ValueError("--nodes must be at least 1")
        workdir = Path("var/demo" if nodes == 1 else "var/demo-cluster")
        return cls(
            sites=args.sites or DEFAULT_SITES,
            listen=args.listen or "127.0.0.1:9847",
            workdir=Path(args.workdir) if args.workdir else workdir,
            duration=args.duration,
            snmp_port=getattr(args, "snmp_port", None),
            scenario=Path(scenario) if scenario else None,
            daemon=not getattr(args, "no_daemon", False),
            nodes=nodes,
            kill_leader_at=getattr(args, "kill_leader_at", None),
        )

    def port(self) -> int:
        if self.snmp_port is not None:
            return self.snmp_port
        return 161 if os.geteuid() == 0 else UNPRIVILEGED_SNMP_PORT


@dataclass(frozen=True, slots=True)
class DemoRuntime:
    """What a running demo is made of, handed to ``run_demo(on_start=...)`` (tests, benchmarks)."""

    province: DemoProvince
    sim: Simulator
    config_path: Path
    url: str | None  # the daemon's, None without one
    mail: MailSink | None
    broker: Mosquitto | None
    firewall: IcmpFirewall | None
    cluster: DemoCluster | None = None  # with --nodes: the NATS servers and the node processes


def cli_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(DemoOptions.from_args(args)))
    except (OSError, ScenarioError, ModelError, ValueError, RuntimeError) as exc:
        print(f"uptimewatch demo: {exc}", file=sys.stderr)
        return 1


def _prepare_scenario(opts: DemoOptions) -> Path:
    if opts.scenario is not None:
        return opts.scenario
    path = Path(opts.workdir) / "scenario.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(default_scenario_path(), path)
    return path


@contextlib.asynccontextmanager
async def _daemon(opts: DemoOptions, config_path: Path, mail: MailSink | None) -> AsyncIterator[str | None]:
    if not opts.daemon:
        yield None
        return
    # imported here: the daemon pulls in the whole service, the simulator alone needs none of it
    from aiohttp import web

    from ..app import Daemon

    class DemoDaemon(Daemon):
        """The daemon, plus the demo's own pages (the mail sink's index) on its web app."""

        def extend_app(self, app: web.Application) -> None:
            super().extend_app(app)
            if mail is not None:
                install_routes(app, mail)

    daemon = DemoDaemon(config_path, opts.listen)
    try:
        await daemon.start()
        yield str(daemon.url)
    finally:
        await daemon.stop()


@contextlib.asynccontextmanager
async def _cluster(opts: DemoOptions, config: dict[str, object]) -> AsyncIterator[DemoCluster | None]:
    if not opts.daemon or opts.nodes < 2:
        yield None
        return
    from .cluster import DemoCluster  # NATS and the node processes only for a cluster demo

    async with DemoCluster(Path(opts.workdir), config, opts.listen, opts.nodes) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def _mail_sink(opts: DemoOptions) -> AsyncIterator[MailSink | None]:
    if not opts.daemon:
        yield None
        return
    async with MailSink(Path(opts.workdir) / "mail") as sink:
        yield sink


@contextlib.asynccontextmanager
async def _broker(opts: DemoOptions, out: Callable[[str], object]) -> AsyncIterator[Mosquitto | None]:
    if not (opts.daemon and opts.mqtt):
        yield None
        return
    if not Mosquitto.available():
        out("  MQTT         skipped: /usr/sbin/mosquitto is not installed (apt-get install mosquitto)")
        yield None
        return
    broker = Mosquitto(Path(opts.workdir) / "mosquitto")
    try:
        await broker.start()
    except (BrokerError, OSError) as exc:
        out(f"  MQTT         skipped: {exc}")
        yield None
        return
    try:
        yield broker
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def _firewall(opts: DemoOptions, out: Callable[[str], object]) -> AsyncIterator[IcmpFirewall | None]:
    why = unavailable_reason()
    if why is not None:
        out(f"  ping         every device answers ICMP, even when dead or cut off ({why})")
        yield None
        return
    firewall = IcmpFirewall(opts.nft_table)
    try:
        await firewall.start()
    except FirewallError as exc:
        out(f"  ping         every device answers ICMP, even when dead or cut off ({exc})")
        yield None
        return
    try:
        yield firewall
    finally:
        await firewall.close()


async def _keep_firewall(firewall: IcmpFirewall, sim: Simulator, wake: asyncio.Event, period: float) -> None:
    """Keeps the dropped addresses equal to the silent devices: at once after each scenario step,
    and every ``period`` for what changes on its own (boot delays ending, batteries running out)."""
    while True:
        try:
            await firewall.sync(sim.silent_addresses())
        except FirewallError as exc:
            log.error("cannot update the demo's nftables table: %s", exc)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(period):
                await wake.wait()


def _address_range(province: DemoProvince) -> str:
    nets = sorted({int(d.address.split(".")[1]) for d in province.devices})
    return f"127.{nets[0]}.0.0-127.{nets[-1]}.255.255" if len(nets) > 1 else f"127.{nets[0]}.0.0/16"


async def run_demo(
    opts: DemoOptions,
    *,
    out: Callable[[str], object] = print,
    on_start: Callable[[DemoRuntime], object] | None = None,
) -> int:
    """Runs the demo until SIGINT/SIGTERM or ``opts.duration``; everything started is stopped.
    ``on_start`` is called once everything runs, just before the scenario starts."""
    loop = asyncio.get_running_loop()
    port = opts.port()
    config_path = Path(opts.workdir) / "config.yaml"
    scenario_path = await asyncio.to_thread(_prepare_scenario, opts)
    spec = WorldSpec(
        opts.sites, opts.districts, opts.interval, opts.first_net, port, opts.listen, scenario_path
    )
    origin = loop.time()  # simulation second 0, in every process
    world = await asyncio.to_thread(build_world, spec, origin=origin)
    province, scenario, steps, sim = world.province, world.scenario, world.steps, world.sim

    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    tasks: list[asyncio.Task[None]] = []
    notes: list[str] = []  # lines about what was skipped, printed with the URLs
    try:
        async with contextlib.AsyncExitStack() as stack:
            mail = await stack.enter_async_context(_mail_sink(opts))
            broker = await stack.enter_async_context(_broker(opts, notes.append))
            firewall = await stack.enter_async_context(_firewall(opts, notes.append))
            url = f"http://{opts.listen}"
            if mail is not None:
                add_alerting(
                    province.config,
                    smtp_host=mail.host,
                    smtp_port=mail.port,
                    mqtt_port=broker.port if broker is not None else None,
                    external_url=url,
                )
            await asyncio.to_thread(province.write_config, config_path)
            # a large province's agents get processes of their own: in the daemon's process
            # they would take the CPU its event loop needs, and every reply would come late
            count = processes_for(len(sim.devices))
            agent: SnmpAgent | AgentProcesses
            if count:
                agent = await stack.enter_async_context(AgentProcesses(spec, origin, count))
            else:
                agent = await stack.enter_async_context(SnmpAgent(sim, port))
            cluster = await stack.enter_async_context(_cluster(opts, province.config))
            if cluster is None:
                daemon_url = await stack.enter_async_context(_daemon(opts, config_path, mail))
            else:
                daemon_url = cluster.nodes[0].url

            t = translator(str(province.config["province"].get("language", "en")))
            out(
                t.gettext(
                    "uptimewatch demo: {sites:num0} sites, {devices:num0} simulated devices "
                    "on {addresses} port {port}; config {config}",
                    sites=len(province.sites),
                    devices=len(province.devices),
                    addresses=_address_range(province),
                    port=str(port),  # a port, not a quantity: no thousands separator
                    config=config_path,
                )
            )
            if isinstance(agent, AgentProcesses):
                pids = ", ".join(map(str, agent.pids))
                out(t.gettext("  agents       {n} processes of their own (pids {pids})", n=count, pids=pids))
            if cluster is not None:
                from .cluster import describe

                for line in describe(cluster):
                    out(line)
            elif daemon_url:
                out(
                    t.gettext(
                        "  status page  {url}/\n"
                        "  metrics      {url}/metrics\n"
                        "  API          {url}/api/v1/sites  (also /api/v1/alerts, "
                        "/api/v1/topology/outages, /api/v1/power/time-to-dark)\n"
                        "  health       {url}/healthz",
                        url=daemon_url,
                    )
                )
            if mail is not None:
                listed = f"; list at {daemon_url}/demo/mail" if cluster is None else ""
                out(f"  mail         {mail.directory}/ (*.eml; SMTP sink on {mail.host}:{mail.port}{listed})")
            if broker is not None:
                province_id = province.config["province"]["id"]
                out(
                    f"  MQTT         {broker.host}:{broker.port} "
                    f"(mosquitto; topics uptimewatch/{province_id}/#)"
                )
            if firewall is not None:
                out(f"  ping         faults drop ICMP echo requests (nftables table inet {firewall.table})")
            for note in notes:
                out(note)
            out(
                t.gettext(
                    "scenario {name} from {path} (speed x{speed}):",
                    name=repr(scenario.name),
                    path=scenario_path,
                    speed=f"{scenario.speed:g}",
                )
            )
            for p in steps:
                out(f"  T+{_clock(p.real_at)}  {p.describe(province)}")

            wake = asyncio.Event()

            def on_step(p: PlannedStep) -> None:
                out(f"[T+{_clock(p.real_at)}] {p.describe(province)}")
                wake.set()

            if on_start is not None:
                on_start(DemoRuntime(province, sim, config_path, daemon_url, mail, broker, firewall, cluster))

            def on_round(round_no: int, planned: list[PlannedStep]) -> None:
                if round_no and planned:  # the first round is listed above
                    first = planned[0]
                    when = _clock(first.real_at)
                    out(
                        f"[T+{when}] "
                        + t.gettext("scenario round {n}: the same steps on the next sites", n=round_no + 1)
                    )

            if scenario.repeat:
                every = _clock(scenario.round_length / scenario.speed)
                out(t.gettext("  then again every {every}, on the next sites", every=every))
            # every agent process plays the same rounds from the same moment
            started = loop.time()
            if isinstance(agent, AgentProcesses):
                agent.start_scenario(started)
            rounds = run_rounds(scenario, province, sim, on_step=on_step, on_round=on_round, start=started)
            tasks.append(asyncio.create_task(rounds))
            if cluster is not None and opts.kill_leader_at is not None:
                tasks.append(asyncio.create_task(cluster.kill_leader_at(opts.kill_leader_at, out)))
            if firewall is not None:
                period = max(0.5, len(province.devices) / 20_000)
                tasks.append(asyncio.create_task(_keep_firewall(firewall, sim, wake, period)))
            waiter = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({waiter}, timeout=opts.duration)
            finally:
                waiter.cancel()
                # the scenario and the firewall keeper stop before what they act on is torn down
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            answered = await agent.counters() if isinstance(agent, AgentProcesses) else agent.stats
            out(
                t.gettext(
                    "stopping: the agents answered {answered:num0} of {asked:num0} requests",
                    answered=answered.responses,
                    asked=answered.requests,
                )
            )
            if mail is not None:
                out(
                    t.gettext(
                        "  {n:num0} alert emails in {directory}/",
                        n=len(mail.messages),
                        directory=mail.directory,
                    )
                )
    finally:
        for task in tasks:
            task.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
