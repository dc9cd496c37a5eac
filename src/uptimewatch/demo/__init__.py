"""``uptimewatch demo``: a simulated province on loopback, monitored by the daemon in-process.

What it starts, in order: the province's config (``<workdir>/config.yaml``), the simulated SNMP
agents (one socket per device on 127.16.0.0 and up), the daemon (``uptimewatch.app.run_daemon``),
and the scenario (``<workdir>/scenario.yaml``, copied from the shipped one on first run, so it can
be edited). Ctrl-C, SIGTERM or ``--duration`` stop everything it started.

ICMP: every 127.x address answers pings, so a device the scenario makes "dead" (or cuts off, or
powers down) is dead to SNMP only and the daemon sees "answers ping, SNMP silent". Making such
devices dead to ICMP too needs them behind a network namespace with a link that can be cut (root
only); that is not done in this version and nothing here creates namespaces.
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

from .agent import SnmpAgent
from .device_models import ModelError, load_models
from .devices import SimClock, Simulator
from .province import DEFAULT_SITES, DemoProvince, generate_province
from .scenario import PlannedStep, ScenarioError, default_scenario_path, load_scenario, plan, run_scenario

__all__ = [
    "DemoOptions",
    "DemoProvince",
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoOptions:
        scenario = getattr(args, "scenario", None)
        return cls(
            sites=args.sites or DEFAULT_SITES,
            listen=args.listen or "127.0.0.1:9847",
            workdir=Path(args.workdir) if args.workdir else Path("var/demo"),
            duration=args.duration,
            snmp_port=getattr(args, "snmp_port", None),
            scenario=Path(scenario) if scenario else None,
            daemon=not getattr(args, "no_daemon", False),
        )

    def port(self) -> int:
        if self.snmp_port is not None:
            return self.snmp_port
        return 161 if os.geteuid() == 0 else UNPRIVILEGED_SNMP_PORT


def cli_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(DemoOptions.from_args(args)))
    except (OSError, ScenarioError, ModelError, ValueError) as exc:
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
async def _daemon(opts: DemoOptions, config_path: Path) -> AsyncIterator[str | None]:
    if not opts.daemon:
        yield None
        return
    # imported here: the daemon pulls in the whole service, the simulator alone needs none of it
    from ..app import run_daemon

    async with run_daemon(config_path, opts.listen) as daemon:
        yield str(daemon.url)


async def run_demo(opts: DemoOptions, *, out: Callable[[str], object] = print) -> int:
    """Runs the demo until SIGINT/SIGTERM or ``opts.duration``; everything started is stopped."""
    loop = asyncio.get_running_loop()
    port = opts.port()
    province = await asyncio.to_thread(generate_province, opts.sites, snmp_port=port, listen=opts.listen)
    config_path = Path(opts.workdir) / "config.yaml"
    await asyncio.to_thread(province.write_config, config_path)
    scenario_path = await asyncio.to_thread(_prepare_scenario, opts)
    scenario = await asyncio.to_thread(load_scenario, scenario_path)
    steps = plan(scenario, province, strict=False)
    models = await asyncio.to_thread(load_models)
    sim = Simulator(province.sites, province.devices, models, SimClock(scenario.speed))

    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    scenario_task: asyncio.Task[None] | None = None
    try:
        async with SnmpAgent(sim, port) as agent, _daemon(opts, config_path) as url:
            out(
                f"uptimewatch demo: {len(province.sites)} sites, {len(province.devices)} simulated devices "
                f"on 127.16.0.0/12 port {port}; config {config_path}"
            )
            if url:
                out(f"  metrics  {url}/metrics\n  sites    {url}/api/v1/sites\n  health   {url}/healthz")
            out(f"scenario {scenario.name!r} from {scenario_path} (speed x{scenario.speed:g}):")
            for p in steps:
                out(f"  T+{_clock(p.real_at)}  {p.describe(province)}")

            def on_step(p: PlannedStep) -> None:
                out(f"[T+{_clock(p.real_at)}] {p.describe(province)}")

            scenario_task = asyncio.create_task(run_scenario(steps, sim, on_step=on_step))
            waiter = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({waiter}, timeout=opts.duration)
            finally:
                waiter.cancel()
            out(f"stopping: the agents answered {agent.stats.responses} of {agent.stats.requests} requests")
    finally:
        if scenario_task is not None:
            scenario_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scenario_task
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"
