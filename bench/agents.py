"""The benchmark's SNMP agents: N simulated power plants on loopback, served by the demo's agent.

Runs as its own process (``python bench/agents.py --devices N --port P``), pinned to a CPU of its
own when asked, so that answering costs nothing to the process being measured. Every device is a
demo ``power`` model (SNMPv2-MIB system group plus RFC 1628 UPS-MIB) on its own 127.x address,
all on one UDP port; uptimewatch and snmp_exporter poll the very same sockets.

One socket per device, and the open-file limit (20,000 here, hard) caps what one process holds:
the parent starts one process per :data:`SHARD` devices.

Protocol with the parent: one line ``ready DEVICES PORT`` on stdout once every socket is bound;
SIGTERM, SIGINT or end of stdin stop it, after which it prints one JSON line with its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys

from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import DeviceSpec, SimClock, Simulator, SiteSpec

COMMUNITY = "bench-ro"
#: 127.64.0.0 and up: clear of the demo's 127.16.0.0/12 range, so both can run at once
FIRST_OCTET = 64
PER_OCTET = 250  # host parts 1..250: no .0 or .255 anywhere
MAX_DEVICES = PER_OCTET * PER_OCTET * 16
#: devices per agent process, below the open-file limit with room for the rest
SHARD = 10_000


def device_address(index: int) -> str:
    """The loopback address of benchmark device ``index`` (0-based)."""
    if not 0 <= index < MAX_DEVICES:
        raise ValueError(f"device index {index} outside 0..{MAX_DEVICES - 1}")
    block, rest = divmod(index, PER_OCTET * PER_OCTET)
    return f"127.{FIRST_OCTET + block}.{rest // PER_OCTET + 1}.{rest % PER_OCTET + 1}"


def site_id(index: int) -> str:
    return f"s{index:06d}"


def build_simulator(first: int, devices: int) -> Simulator:
    """One site per device: the agent side needs no topology, only something to answer."""
    indexes = range(first, first + devices)
    sites = [
        SiteSpec(id=site_id(i), name=f"Bench {i}", location="bench", contact="NOC bench") for i in indexes
    ]
    specs = [
        DeviceSpec(
            site_id=site_id(i),
            device_id="power",
            model="power",
            address=device_address(i),
            community=COMMUNITY,
            name=f"{site_id(i)}-power",
        )
        for i in indexes
    ]
    return Simulator(sites, specs, load_models(), SimClock(1.0))


def _pin(cpu: int | None) -> None:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})


async def _serve(first: int, devices: int, port: int) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # the parent closing our stdin (or dying) stops us too: no orphan keeps 20,000 sockets bound
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    sim = await asyncio.to_thread(build_simulator, first, devices)
    async with SnmpAgent(sim, port) as agent:
        print(f"ready {devices} {port}", flush=True)
        await stop.wait()
        stats = agent.stats
    loop.remove_reader(stdin)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": stats.requests,
        "responses": stats.responses,
        "dropped": stats.dropped,
        "malformed": stats.malformed,
        "cpu_ms": round((usage.ru_utime + usage.ru_stime) * 1000),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=0, help="index of the first device served")
    parser.add_argument("--devices", type=int, required=True, help="how many devices, from --first")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin the agents to this CPU")
    args = parser.parse_args(argv)
    _pin(args.cpu)
    stats = asyncio.run(_serve(args.first, args.devices, args.port))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
