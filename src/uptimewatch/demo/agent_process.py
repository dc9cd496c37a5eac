"""The demo's simulated agents in processes of their own, for large provinces.

In the demo's process, 12,000 simulated agents and the daemon share one event loop: the agents'
work delays the daemon's reads, replies wait in the sockets past their deadlines, and the status
page shows a province of false timeouts. From :data:`PROCESS_ABOVE` devices on, the demo starts
one process per :data:`DEVICES_PER_PROCESS` devices instead (as the benchmark does). Each builds the
whole world (:mod:`.world`, deterministic), serves its share of the sockets and applies the
scenario's steps at the same moments as the demo process, on the same clock.

:class:`AgentProcesses` is the parent's side. The child's protocol: it prints ``ready N`` once its
sockets are bound; a line ``start T`` on its stdin starts the scenario at monotonic time ``T``, a
line ``stats`` makes it print one JSON line with its counters; end of stdin (or SIGTERM) stops it,
and it prints that line once more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .agent import AgentStats, SnmpAgent
from .scenario import run_rounds
from .world import WorldSpec, build_world, shard

#: the demo serves its agents in its own process up to this many devices
PROCESS_ABOVE = 3_000
#: devices per agent process beyond that
DEVICES_PER_PROCESS = 5_000
READY_TIMEOUT = 300.0


def processes_for(devices: int) -> int:
    """How many agent processes a province of ``devices`` gets: 0 means in the demo's process."""
    if devices <= PROCESS_ABOVE:
        return 0
    return -(-devices // DEVICES_PER_PROCESS)


def _arguments(spec: WorldSpec, origin: float, index: int, count: int) -> list[str]:
    args = ["--sites", str(spec.sites), "--first-net", str(spec.first_net), "--port", str(spec.snmp_port)]
    args += ["--listen", spec.listen, "--scenario", str(spec.scenario), "--origin", repr(origin)]
    args += ["--shard", str(index), "--shards", str(count)]
    if spec.districts is not None:
        args += ["--districts", str(spec.districts)]
    if spec.interval is not None:
        args += ["--interval", spec.interval]
    return args


class AgentProcesses:
    """The agent processes of one demo, started and stopped together (``async with``)."""

    def __init__(self, spec: WorldSpec, origin: float, count: int) -> None:
        self.spec = spec
        self.origin = origin
        self.count = count
        self.stats = AgentStats()
        self.pids: list[int] = []
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> AgentProcesses:
        try:
            for index in range(self.count):
                cmd = [sys.executable, "-m", __name__, *_arguments(self.spec, self.origin, index, self.count)]
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
                )
                self._procs.append(proc)
                self.pids.append(proc.pid)
            for proc in self._procs:
                assert proc.stdout is not None
                async with asyncio.timeout(READY_TIMEOUT):
                    line = (await proc.stdout.readline()).decode()
                if not line.startswith("ready"):
                    raise RuntimeError(f"a demo agent process did not start (exit {await proc.wait()})")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def start_scenario(self, at: float) -> None:
        """Every process applies the scenario from monotonic time ``at``, as the demo does."""
        for proc in self._procs:
            if proc.stdin is not None and proc.returncode is None:
                proc.stdin.write(f"start {at!r}\n".encode())

    async def counters(self) -> AgentStats:
        """The counters of every process, summed (read while they run)."""
        total = AgentStats()
        for proc in self._procs:
            if proc.stdin is None or proc.stdout is None or proc.returncode is not None:
                continue
            proc.stdin.write(b"stats\n")
            with contextlib.suppress(TimeoutError, ValueError, KeyError):
                async with asyncio.timeout(10):
                    _add(total, json.loads(await proc.stdout.readline()))
        self.stats = total
        return total

    async def __aexit__(self, *exc: object) -> None:
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                async with asyncio.timeout(15):
                    await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _add(total: AgentStats, counters: dict[str, int]) -> None:
    for name in ("requests", "responses", "dropped", "malformed"):
        setattr(total, name, getattr(total, name) + int(counters[name]))


def _counters(stats: AgentStats) -> str:
    return json.dumps(
        {
            "requests": stats.requests,
            "responses": stats.responses,
            "dropped": stats.dropped,
            "malformed": stats.malformed,
        }
    )


# -- the child ------------------------------------------------------------------------------------


async def _serve(spec: WorldSpec, origin: float, index: int, count: int) -> AgentStats:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    world = await asyncio.to_thread(build_world, spec, origin=origin)
    mine = set(shard(list(world.sim.devices), index, count))
    scenario: asyncio.Task[None] | None = None
    agent = SnmpAgent(world.sim, spec.snmp_port, only=mine)
    pending = b""
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        nonlocal pending, scenario
        data = os.read(stdin, 4096)
        if not data:  # the demo ended (or died): no orphan keeps thousands of sockets bound
            stop.set()
            loop.remove_reader(stdin)
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            word, _, value = line.decode().partition(" ")
            if word == "start" and scenario is None:
                rounds = run_rounds(world.scenario, world.province, world.sim, start=float(value))
                scenario = asyncio.create_task(rounds)
            elif word == "stats":
                print(_counters(agent.stats), flush=True)

    async with agent:
        loop.add_reader(stdin, on_stdin)
        print(f"ready {len(mine)}", flush=True)
        await stop.wait()
        if scenario is not None:
            scenario.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scenario
        return agent.stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo's simulated SNMP agents, one share of them.")
    parser.add_argument("--sites", type=int, required=True)
    parser.add_argument("--districts", type=int, default=None)
    parser.add_argument("--interval", default=None)
    parser.add_argument("--first-net", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--origin", type=float, required=True, help="monotonic time of simulation second 0")
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--shards", type=int, required=True)
    args = parser.parse_args(argv)
    spec = WorldSpec(
        args.sites, args.districts, args.interval, args.first_net, args.port, args.listen, args.scenario
    )
    stats = asyncio.run(_serve(spec, args.origin, args.shard, args.shards))
    print(_counters(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
