"""The ICMP engine against fping, engine to engine, and the kernel's own floor (run as a child of
``poll_bench.py``'s icmp phase; prints one JSON object).

* ``engine``: the daemon's :class:`uptimewatch.probing.icmp.Pinger`, as ``IcmpProber.probe`` calls
  it (``burst(address, 3, 0.02, 1.0)``), on the event loop the daemon runs on
  (:func:`uptimewatch.event_loop.loop_factory`: uvloop where installed): every round one burst to
  each target at once (``asyncio.gather``), rounds back to back, so the core is saturated; each
  burst gives its per-target result (sent, round trips), as fping ``-C`` does.
* ``floor``: the least a pinger can do from Python: one raw socket, the kernel's ICMP type filter,
  ``sendto`` of one echo request per target, then ``recv_into`` of the replies, rounds back to
  back. On loopback the kernel builds and delivers the echo reply inside the sender's system call,
  so its system time per ping is what any user-space pinger pays here, fping included.

CPU is split into user and system time from ``getrusage``. Only 127.0.0.0/8 is addressed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agents import device_address
from profiling import recording

from uptimewatch.event_loop import loop_factory
from uptimewatch.probing.icmp import IcmpProber, _echo_request, detect_privilege

BURST = (3, 0.02, 1.0)  # count, interval, timeout: the daemon's shape, fping's -p 20
PAYLOAD = 56  # fping's default data size, and ours


def _usage() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime


def _figures(pings: int, replies: int, wall: float, user: float, system: float) -> dict[str, Any]:
    cpu = user + system
    return {
        "pings_sent": pings,
        "replies": replies,
        "lost": pings - replies,
        "wall_s": wall,
        "cpu_s": cpu,
        "user_s": user,
        "system_s": system,
        "cpu_utilization": cpu / wall if wall else 0.0,
        "pings_per_cpu_s": pings / cpu if cpu > 0 else float("nan"),
        "user_us_per_ping": user / pings * 1e6 if pings else float("nan"),
        "system_us_per_ping": system / pings * 1e6 if pings else float("nan"),
    }


def engine(
    targets: Sequence[str],
    *,
    rounds: int,
    loop: str | None,
    profile: Path | None = None,
    spy_cpu: int | None = None,
) -> dict[str, Any]:
    """``rounds`` rounds of one burst to every target, after one round of warm-up."""
    name, factory = loop_factory(loop)
    prober = IcmpProber(detect_privilege())
    pinger = prober.pinger
    count, interval, timeout = BURST

    async def one_round() -> tuple[int, int]:
        results = await asyncio.gather(*(pinger.burst(t, count, interval, timeout, PAYLOAD) for t in targets))
        return sum(r.sent for r in results), sum(r.received for r in results)

    async def run() -> dict[str, Any]:
        await one_round()  # the socket, its buffers, the caches
        gc.collect()
        sent = received = 0
        u0, s0 = _usage()
        wall0 = time.monotonic()
        for _ in range(rounds):
            a, b = await one_round()
            sent += a
            received += b
        wall = time.monotonic() - wall0
        u1, s1 = _usage()
        prober.close()
        return _figures(sent, received, wall, u1 - u0, s1 - s0)

    with recording(profile, cpu=spy_cpu) as got, asyncio.Runner(loop_factory=factory) as runner:
        out = runner.run(run())
    out.update({"loop": name, "burst": list(BURST), "rounds": rounds, "targets": len(targets)})
    if got:
        out["profile"] = got[0].to_dict()
    return out


def floor(targets: Sequence[str], *, rounds: int) -> dict[str, Any]:
    """The minimal raw-socket loop: send to every target, read every reply, ``rounds`` times."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        # only echo replies reach us (the loopback's echo requests are dropped by the kernel)
        sock.setsockopt(255, 1, struct.pack("=I", ~1 & 0xFFFFFFFF))
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 16 * 1024 * 1024)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
        sock.setblocking(False)
        packet = _echo_request(socket.AF_INET, True, os.getpid() & 0xFFFF, 1, PAYLOAD)
        addresses = [(t, 0) for t in targets]
        buf = bytearray(2048)
        sendto, recv_into = sock.sendto, sock.recv_into
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)

        def one_round() -> tuple[int, int]:
            for address in addresses:
                sendto(packet, address)
            got = 0
            want = len(addresses)
            deadline = time.monotonic() + 1.0
            while got < want:
                try:
                    recv_into(buf)
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break  # lost: counted, not waited for
                    poller.poll(100)
                    continue
                got += 1
            return want, got

        one_round()
        sent = received = 0
        u0, s0 = _usage()
        wall0 = time.monotonic()
        for _ in range(rounds):
            a, b = one_round()
            sent += a
            received += b
        wall = time.monotonic() - wall0
        u1, s1 = _usage()
    finally:
        sock.close()
    out = _figures(sent, received, wall, u1 - u0, s1 - s0)
    out.update({"rounds": rounds, "targets": len(targets)})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--targets", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=10, help="engine rounds of one 3-ping burst per target")
    p.add_argument("--floor-rounds", type=int, default=30, help="floor rounds of one ping per target")
    p.add_argument("--loops", default="auto", help="comma-separated: auto (the daemon's), asyncio, uvloop")
    p.add_argument("--profile", type=Path, help="py-spy raw file of one more run on the daemon's loop")
    p.add_argument("--spy-cpu", type=int)
    args = p.parse_args(argv)
    targets = [device_address(i) for i in range(args.targets)]
    out: dict[str, Any] = {"engine": {}}
    for k, loop in enumerate(args.loops.split(",")):
        name = loop_factory(loop)[0]
        if name in out["engine"]:
            continue  # "auto" was asyncio's own already (no uvloop here)
        out["engine"][name] = engine(targets, rounds=args.rounds, loop=loop)
        if k == 0:
            out["daemon_loop"] = name
        gc.collect()
    if args.profile is not None:
        # once more on the daemon's loop with py-spy recording: the figures above stay clean of
        # it, and the two runs side by side give its overhead
        out["engine_profiled"] = engine(
            targets, rounds=args.rounds, loop=out["daemon_loop"], profile=args.profile, spy_cpu=args.spy_cpu
        )
    out["floor"] = floor(targets, rounds=args.floor_rounds)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
