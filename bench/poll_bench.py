"""uptimewatch polling benchmark (``make bench``): how many devices one core polls, against the
bars of issue 2 ("Speed"), and against Prometheus's snmp_exporter on the same agents.

Phases, each on real parts:

* ``poll``     N devices, each a GET of 10 OIDs (``bench/probes/bench-ups10.yaml``) plus a 3-packet
               ICMP burst, driven by the real Scheduler, SNMP probe, ICMP probe and HealthModel,
               offered more than one core can do: devices per CPU-second of this process.
* ``snmp``     the same, SNMP alone: GETs per CPU-second (the figure snmp_exporter is compared on).
* ``icmp``     the same, ICMP alone: pings per second and per CPU-second; then the ICMP engine
               alone (``icmp_engine.py``), the kernel-floor loop and fping on the same targets:
               ``icmp_vs_fping`` is the engine's pings per CPU-second over fping's.
* ``lag``      20,000 devices at 60 s (20,000 devices a minute), SNMP and ICMP: the scheduler's
               own lag histogram, p50 and p99.
* ``exporter`` snmp_exporter scraped for the same targets by a concurrent HTTP client; its CPU
               (from /proc) gives targets per CPU-second, and the ratio.
* ``memory``   a child process loads N devices into config + health model + scheduler and ingests
               one SNMP and one ICMP observation per device: bytes per device.
* ``render``   a child process renders /metrics as the daemon does (HealthCollector, per-site
               text cache, gzip) for 20,000 and 100,000 devices: after a full cycle of changes
               and after 1% of the sites changed.

The agents (the demo's simulated SNMP devices, one 127.x address each) run in their own processes
pinned to the last CPU; this process runs on the first, so their work is not counted as ours.
Only 127.0.0.0/8 is ever addressed. Results: a markdown table on stdout and ``var/bench/latest.json``,
then the profile of each goal missed (``profiling.py``; raw files in ``var/bench/profiles/``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.fixtures.snmpd (the v3 phase)

from agents import COMMUNITY, SHARD, device_address
from profiling import ATTACH_S, Profile, ProfileSet, Recorder, recording, section

from uptimewatch import __version__
from uptimewatch.config.loader import LoadedConfig, load_config
from uptimewatch.config.resolve import ResolvedDevice
from uptimewatch.export.metrics import RuntimeInfo, build_registry
from uptimewatch.model.health import HealthModel
from uptimewatch.model.observation import Observation
from uptimewatch.model.stats import LAG_BUCKETS, SchedulerStats
from uptimewatch.probing import icmp, snmp
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.profiles import ProfileCatalog, load_profiles
from uptimewatch.scheduler import ProbeFn, Scheduler

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROFILES = BENCH / "probes"
PROFILE = "bench-ups10"
EXPORTER_CONFIG = BENCH / "snmp_exporter.yml"
EXPORTER_MODULE = "bench_ups10"
EXPORTER_BIN = "/usr/bin/prometheus-snmp-exporter"
DEVICES_PER_SITE = 3
ROLES = (("power", "power"), ("router", "router"), ("bts", "bts"))
PHASES = ("poll", "snmp", "icmp", "lag", "exporter", "v3", "memory", "render")

FPING_BIN = "/usr/bin/fping"
WRK_BIN = "/usr/bin/wrk"
WRK_SCRIPT = BENCH / "wrk_exporter.lua"


@dataclass(frozen=True)
class Goal:
    """One goal of issue 13, keyed as in the summary of ``latest.json``."""

    target: float
    higher_is_better: bool
    text: str

    def distance(self, value: float | None) -> str:
        """How far ``value`` is from the goal, in words for the table's ``result`` column."""
        if value is None or math.isnan(value):
            return "not measured"
        if self.higher_is_better:
            if value >= self.target:
                return f"met: {value / self.target:.2f}x the goal"
            if value <= 0:
                return "missed: nothing measured"
            return f"missed: {value / self.target:.0%} of the goal ({self.target / value:.2f}x short)"
        if value < self.target:
            return f"met: {value / self.target:.0%} of the limit"
        if math.isinf(value):
            return "missed: unbounded"
        return f"missed: {value / self.target:.2f}x the limit"


#: the goals of issue 13; the summary object carries exactly these keys
GOALS: dict[str, Goal] = {
    "devices_per_cpu_s": Goal(5000.0, True, "≥ 5,000"),
    "snmp_vs_snmp_exporter": Goal(5.0, True, "≥ 5x"),
    "icmp_vs_fping": Goal(1.5, True, "≥ 1.5x"),
    "metrics_100k_cpu_s": Goal(0.3, False, "< 0.3 s"),
    "metrics_100k_full_cpu_s": Goal(1.0, False, "< 1 s"),
    "metrics_100k_loop_max_s": Goal(0.05, False, "< 50 ms"),
    "lag_p99_s_250k_per_min": Goal(1.0, False, "< 1 s"),
    "rss_gib_300k": Goal(2.0, False, "< 2 GiB"),
    "reload_300k_cpu_s": Goal(10.0, False, "< 10 s"),
    "snmpv3_vs_v2c": Goal(0.5, True, "≥ 0.5"),
}


# -- processes and CPUs ------------------------------------------------------------------------


def _cpus() -> tuple[int | None, int | None]:
    """(ours, the agents'): the first and the last CPU we may run on; None when there is one."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[-1]


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cpu})


def _cpu_seconds_of(pid: int) -> float:
    """user + system CPU of another process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command name: state is field 3 of stat(5), utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((device_address(0), 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agents:
    """The agent processes (one per :data:`SHARD` devices), started and stopped together."""

    def __init__(self, devices: int, port: int, cpu: int | None) -> None:
        self.devices = devices
        self.port = port
        self.cpu = cpu
        self.procs: list[subprocess.Popen[str]] = []
        self.stats: dict[str, int] = {}

    def __enter__(self) -> Agents:
        try:
            for first in range(0, self.devices, SHARD):
                count = min(SHARD, self.devices - first)
                cmd = [sys.executable, str(BENCH / "agents.py"), "--first", str(first)]
                cmd += ["--devices", str(count), "--port", str(self.port)]
                if self.cpu is not None:
                    cmd += ["--cpu", str(self.cpu)]
                self.procs.append(
                    subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
                )
            for proc in self.procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line.startswith("ready"):
                    raise RuntimeError(f"benchmark agents did not start (exit {proc.wait(5)})")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        totals: Counter[str] = Counter()
        for proc in self.procs:
            try:
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            last = out.strip().splitlines()[-1:] if out else []
            with contextlib.suppress(ValueError, IndexError):
                totals.update(json.loads(last[0]))
        self.procs.clear()
        self.stats = dict(totals)


# -- configurations ----------------------------------------------------------------------------


def write_config(
    path: Path,
    devices: int,
    *,
    port: int,
    interval: float,
    snmp_on: bool = True,
    icmp_on: bool = True,
    max_concurrency: int = 2000,
    icmp_max_concurrency: int = 2000,
) -> Path:
    """A province of ``devices`` devices, three to a site, over ten districts."""
    districts = [
        {
            "id": f"d{d}",
            "name": f"Huyện {d}",
            "communes": [{"id": f"c{c}", "name": f"Xã {d}.{c}"} for c in range(10)],
        }
        for d in range(10)
    ]
    sites: list[dict[str, Any]] = []
    for k in range((devices + DEVICES_PER_SITE - 1) // DEVICES_PER_SITE):
        members = []
        for j, (dev_id, role) in enumerate(ROLES):
            index = k * DEVICES_PER_SITE + j
            if index >= devices:
                break
            entry: dict[str, Any] = {
                "id": dev_id,
                "role": role,
                "address": device_address(index),
                "profile": PROFILE,
            }
            if not snmp_on:
                entry["snmp_enabled"] = False
            members.append(entry)
        sites.append(
            {
                "id": f"site-{k:06d}",
                "name": f"Trạm {k}",
                "district": f"d{k % 10}",
                "commune": f"c{(k // 10) % 10}",
                "carrier": "vnpt" if k % 3 else "viettel",
                "devices": members,
            }
        )
    config = {
        "province": {"id": "bench", "name": "Tỉnh Benchmark"},
        "server": {"listen": "127.0.0.1:9847"},
        "scheduler": {"max_concurrency": max_concurrency, "icmp_max_concurrency": icmp_max_concurrency},
        "profiles_dir": str(PROFILES),
        "defaults": {
            "interval": interval,
            "timeout": "10s",
            "hard_after": 2,
            "snmp": {"version": "2c", "port": port, "community": COMMUNITY, "timeout": "2s", "retries": 1},
            "icmp": {"enabled": icmp_on, "count": 3, "interval": "50ms", "timeout": "1s"},
        },
        "carriers": [{"id": "vnpt", "name": "VNPT"}, {"id": "viettel", "name": "Viettel"}],
        "districts": districts,
        "sites": sites,
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(config, Dumper=dumper, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load(path: Path) -> tuple[LoadedConfig, ProfileCatalog]:
    catalog = load_profiles(PROFILES)
    return load_config(path, known_profiles=catalog.names()), catalog


# -- the daemon's polling pipeline, as app.Daemon composes it ----------------------------------


@dataclass
class Tally:
    """What the observation sink saw."""

    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    pings_sent: int = 0
    pings_received: int = 0
    samples: dict[str, Observation] = field(default_factory=dict)

    def add(self, obs: Observation) -> None:
        if obs.error is None:
            self.ok[obs.probe] += 1
            if obs.probe not in self.samples:
                self.samples[obs.probe] = obs
        else:
            self.errors[obs.probe] += 1
            self.error_kinds[f"{obs.probe}:{obs.error.kind.value}"] += 1
        if obs.probe == "icmp":
            sent = obs.fields.get("icmp.sent")
            received = obs.fields.get("icmp.received")
            self.pings_sent += sent if isinstance(sent, int) else 0
            self.pings_received += received if isinstance(received, int) else 0

    def copy(self) -> Tally:
        return Tally(
            Counter(self.ok),
            Counter(self.errors),
            Counter(self.error_kinds),
            self.pings_sent,
            self.pings_received,
            dict(self.samples),
        )


@dataclass
class Pipeline:
    loaded: LoadedConfig
    catalog: ProfileCatalog
    health: HealthModel
    scheduler: Scheduler
    tally: Tally
    close: Callable[[], Any]


def build_pipeline(loaded: LoadedConfig, catalog: ProfileCatalog, *, force_pysnmp: bool = False) -> Pipeline:
    """Scheduler -> SNMP/ICMP probes -> HealthModel, wired as ``uptimewatch.app.Daemon`` wires them
    (``force_pysnmp``: v1/v2c through pysnmp too, for the comparison row)."""
    transport = create_transport(force_pysnmp=force_pysnmp)
    cache = snmp.ProfileMatchCache()
    health = HealthModel(loaded.config, loaded.devices, catalog.thresholds_for)
    tally = Tally()

    async def poll_snmp(device: ResolvedDevice) -> Observation:
        return await snmp.probe(device, catalog, transport, cache)

    def sink(obs: Observation) -> None:
        tally.add(obs)
        health.ingest(obs)

    probes: dict[str, ProbeFn] = {}
    if any(d.snmp is not None for d in loaded.devices):
        probes["snmp"] = poll_snmp
    prober = icmp.IcmpProber(icmp.detect_privilege())
    if any(d.icmp is not None for d in loaded.devices):
        probes["icmp"] = prober.probe
    sched = loaded.config.scheduler
    scheduler = Scheduler(
        probes,
        sink,
        max_concurrency={"snmp": sched.max_concurrency, "icmp": sched.icmp_max_concurrency},
    )

    async def close() -> None:
        prober.close()
        await transport.close()

    return Pipeline(loaded, catalog, health, scheduler, tally, close)


@dataclass
class Window:
    """One measured stretch of a polling phase."""

    wall_s: float
    cpu_s: float
    tally: Tally
    stats: SchedulerStats
    stats_before: SchedulerStats
    profile: Profile | None = None


def _diff(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


async def run_polling(
    config: Path,
    *,
    warmup: float,
    duration: float,
    force_pysnmp: bool = False,
    profile: Path | None = None,
    spy_cpu: int | None = None,
) -> Window:
    """``profile``: py-spy records this process (from ``spy_cpu``) over the measured window."""
    loaded, catalog = await asyncio.to_thread(load, config)
    pipe = build_pipeline(loaded, catalog, force_pysnmp=force_pysnmp)
    await pipe.scheduler.start()
    pipe.scheduler.reconcile(loaded.devices)
    gc.freeze()  # as the daemon does after a (re)load
    recorder = None
    try:
        if profile is not None:
            await asyncio.sleep(max(0.0, warmup - ATTACH_S))
            # started from the warm-up's end: py-spy's attach falls before the window
            recorder = Recorder(os.getpid(), profile, cpu=spy_cpu).start()
            await asyncio.sleep(min(warmup, ATTACH_S))
        else:
            await asyncio.sleep(warmup)
        before, stats0 = pipe.tally.copy(), pipe.scheduler.stats()
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(duration)
        cpu1, wall1 = time.process_time(), time.monotonic()
        after, stats1 = pipe.tally.copy(), pipe.scheduler.stats()
        recorded = await asyncio.to_thread(recorder.stop) if recorder is not None else None
    finally:
        await pipe.scheduler.stop(grace=3.0)
        await pipe.close()
        gc.unfreeze()
    delta = Tally(
        Counter(_diff(after.ok, before.ok)),
        Counter(_diff(after.errors, before.errors)),
        Counter(_diff(after.error_kinds, before.error_kinds)),
        after.pings_sent - before.pings_sent,
        after.pings_received - before.pings_received,
        after.samples,
    )
    del pipe
    gc.collect()
    return Window(wall1 - wall0, cpu1 - cpu0, delta, stats1, stats0, recorded)


def lag_quantile(counts: Sequence[int], q: float) -> float:
    """Upper bound (s) of the lag bucket holding quantile ``q``; inf past the last bucket."""
    total = sum(counts)
    if not total:
        return float("nan")
    rank = q * total
    running = 0
    for bound, count in zip((*LAG_BUCKETS, float("inf")), counts, strict=True):
        running += count
        if running >= rank:
            return bound
    return float("inf")


# -- snmp_exporter -----------------------------------------------------------------------------


def _start_exporter(port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    # GOMAXPROCS=1 and one CPU of its own: one core's worth, like the figures it is compared with
    cmd = [
        EXPORTER_BIN,
        f"--config.file={EXPORTER_CONFIG}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=error",
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GOMAXPROCS": "1"},
    )


def _wrk(
    base: str, targets_file: Path, *, seconds: float, connections: int, cpu: int | None
) -> dict[str, int]:
    """wrk (C, one thread) against the exporter, pinned to ``cpu``; its own CPU is not counted."""
    cmd = [WRK_BIN, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += ["-s", str(WRK_SCRIPT), f"{base}/snmp", "--", str(targets_file)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("UWBENCH "):
            return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    raise RuntimeError(f"wrk gave no result (exit {out.returncode}): {out.stderr[-500:]}")


def run_exporter(
    targets: Sequence[str],
    workdir: Path,
    *,
    duration: float,
    connections: int,
    exporter_cpu: int | None,
    client_cpu: int | None,
) -> dict[str, Any]:
    """snmp_exporter saturated by wrk: the exporter alone on our CPU (this process only waits),
    wrk on the agents' CPU. Only answers holding the values count (an unanswered target still gets
    a 200 with snmp_error)."""
    import urllib.error
    import urllib.request

    port = free_tcp_port()
    proc = _start_exporter(port, exporter_cpu)
    base = f"http://127.0.0.1:{port}"
    targets_file = workdir / "exporter-targets.txt"
    targets_file.write_text("\n".join(targets) + "\n", encoding="ascii")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{base}/metrics", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("snmp_exporter did not start")
            time.sleep(0.05)
        # warm-up: connections, the Go runtime, the agents' caches
        _wrk(base, targets_file, seconds=2, connections=connections, cpu=client_cpu)
        cpu0, wall0 = _cpu_seconds_of(proc.pid), time.monotonic()
        got = _wrk(base, targets_file, seconds=duration, connections=connections, cpu=client_cpu)
        cpu1, wall1 = _cpu_seconds_of(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    cpu_s, wall_s = cpu1 - cpu0, wall1 - wall0
    ok = got["ok"]
    return {
        "targets_ok": ok,
        "targets_failed": got["bad"],
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "targets_per_s": ok / wall_s,
        "targets_per_cpu_s": ok / cpu_s if cpu_s > 0 else float("nan"),
        "connections": connections,
        "client": "wrk -t1 (not counted)",
        "load_1min": os.getloadavg()[0],
    }


# -- fping and the ICMP engine -----------------------------------------------------------------

# -C 30 -p 20: 30 pings a target, 20 ms apart, a result per target (fping's start-up, reading
# and sorting the targets, is under 10% of such a run); the engine sends the same 30 pings a
# target in 10 rounds of the daemon's 3-ping bursts 20 ms apart (bench/icmp_engine.py)
FPING_COUNT = 30
FPING_PERIOD_MS = 20
FPING_RUNS = 3
ENGINE_BURST = 3


def run_fping(targets: Sequence[str], cpu: int | None, *, count: int = FPING_COUNT) -> dict[str, Any]:
    """Debian's fping over the same loopback targets, pinned to our CPU (this process only waits),
    :data:`FPING_RUNS` runs back to back; its user and system CPU from the rusage wait4 returns.
    ``-i 0``: no pause between targets, as fast as it goes."""
    args = ["-C", str(count), "-p", str(FPING_PERIOD_MS), "-q", "-i", "0"]
    cmd = [FPING_BIN, *args]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    replies = lost = 0
    wall = user = system = 0.0
    exits = []
    for _ in range(FPING_RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        # fping reads its targets from stdin; -C -q prints one line per target on stderr at the end
        _out, err = proc.communicate("\n".join(targets) + "\n")
        wall += time.monotonic() - wall0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only fping was reaped in between
        user += after.ru_utime - before.ru_utime
        system += after.ru_stime - before.ru_stime
        exits.append(proc.returncode)
        for line in err.splitlines():
            _host, sep, rtts = line.partition(" : ")
            if not sep:
                continue
            for rtt in rtts.split():
                if rtt == "-":
                    lost += 1
                else:
                    replies += 1
    sent = replies + lost
    cpu_s = user + system
    return {
        "args": args,
        "runs": FPING_RUNS,
        "targets": len(targets),
        "pings_sent": sent,
        "replies": replies,
        "lost": lost,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "user_s": user,
        "system_s": system,
        "user_us_per_ping": user / sent * 1e6 if sent else float("nan"),
        "system_us_per_ping": system / sent * 1e6 if sent else float("nan"),
        "pings_per_cpu_s": sent / cpu_s if cpu_s > 0 else float("nan"),
        "exit": exits,
        "load_1min": os.getloadavg()[0],
    }


def run_engine(
    targets: int, *, rounds: int, floor_rounds: int, profile: Path | None, spy_cpu: int | None
) -> dict[str, Any]:
    """``bench/icmp_engine.py`` in a child on our CPU: the daemon's Pinger on the daemon's event
    loop (and on asyncio's own, when that is another), then the kernel-floor loop."""
    cmd = [sys.executable, str(BENCH / "icmp_engine.py"), "--targets", str(targets)]
    cmd += ["--rounds", str(rounds), "--floor-rounds", str(floor_rounds), "--loops", "auto,asyncio"]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    if spy_cpu is not None:
        cmd += ["--spy-cpu", str(spy_cpu)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"ICMP engine child failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- SNMPv3 against snmpd ------------------------------------------------------------------------

#: ten scalars snmpd answers: the system group and the SNMP engine group
SNMPD_OIDS = (
    "1.3.6.1.2.1.1.1.0",
    "1.3.6.1.2.1.1.2.0",
    "1.3.6.1.2.1.1.3.0",
    "1.3.6.1.2.1.1.4.0",
    "1.3.6.1.2.1.1.5.0",
    "1.3.6.1.2.1.1.6.0",
    "1.3.6.1.2.1.1.7.0",
    "1.3.6.1.2.1.1.8.0",
    "1.3.6.1.6.3.10.2.1.2.0",
    "1.3.6.1.6.3.10.2.1.3.0",
)
V3_BENCH_HOSTS = 64  # snmpd listens on this many 127.72.0.x addresses: one agent state each


async def _gets_per_cpu(
    transport: Any,
    targets: Sequence[Any],
    *,
    duration: float,
    concurrency: int,
    profile: Path | None = None,
    spy_cpu: int | None = None,
) -> dict[str, Any]:
    """``concurrency`` workers GET :data:`SNMPD_OIDS` round the targets: GETs per CPU-second
    (``profile``: py-spy records the measured window, started in the warm-up's last moment)."""
    ok = failed = 0
    errors: Counter[str] = Counter()
    stop_at = 0.0
    cycle = itertools.cycle(targets)

    async def worker() -> None:
        nonlocal ok, failed
        while time.monotonic() < stop_at:
            resp = await transport.get(next(cycle), SNMPD_OIDS)
            if resp.error is None and len(resp.varbinds) == len(SNMPD_OIDS):
                ok += 1
            else:
                failed += 1
                errors[resp.error.message if resp.error else "short answer"] += 1

    warm = min(2.0, duration / 4)
    stop_at = time.monotonic() + warm  # warm-up: discovery, keys, sockets
    recorder = Recorder(os.getpid(), profile, cpu=spy_cpu) if profile is not None else None
    if recorder is not None:
        asyncio.get_running_loop().call_later(max(0.0, warm - ATTACH_S), recorder.start)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ok = failed = 0
    errors.clear()
    cpu0, wall0 = time.process_time(), time.monotonic()
    stop_at = wall0 + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu1, wall1 = time.process_time(), time.monotonic()
    cpu_s, wall_s = cpu1 - cpu0, wall1 - wall0
    recorded = await asyncio.to_thread(recorder.stop) if recorder is not None else None
    return {
        "profile": recorded.to_dict() if recorded is not None else None,
        "ok": ok,
        "failed": failed,
        "errors": dict(errors.most_common(5)),
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_utilization": cpu_s / wall_s,
        "gets_per_cpu_s": ok / cpu_s if cpu_s > 0 else float("nan"),
        "gets_per_s": ok / wall_s,
        "load_1min": os.getloadavg()[0],
    }


async def run_v3(
    workdir: Path,
    devices: int,
    *,
    duration: float,
    concurrency: int,
    agent_cpu: int | None,
    profile: Path | None = None,
    spy_cpu: int | None = None,
) -> dict[str, Any]:
    """v2c and SNMPv3 authPriv (SHA/AES-128) GETs of the same 10 scalars from the same snmpd, through
    the daemon's transport (and v3 through pysnmp for reference): GETs per CPU-second each."""
    from pydantic import SecretStr
    from tests.fixtures.snmpd import COMMUNITY as SNMPD_COMMUNITY
    from tests.fixtures.snmpd import Snmpd, V3User

    from uptimewatch.config.models import AuthProtocol, PrivProtocol, SnmpVersion
    from uptimewatch.config.resolve import SnmpTarget

    if not os.access("/usr/sbin/snmpd", os.X_OK):
        return {"skipped": "snmpd not installed"}
    user = V3User("bench", AuthProtocol.SHA, "bench-auth-key", PrivProtocol.AES, "bench-priv-key")
    hosts = [f"127.72.0.{i + 1}" for i in range(V3_BENCH_HOSTS)]

    def target(host: str, port: int, version: SnmpVersion) -> SnmpTarget:
        v3 = version is SnmpVersion.V3
        return SnmpTarget(
            host=host,
            port=port,
            version=version,
            community=None if v3 else SecretStr(SNMPD_COMMUNITY),
            user=user.name if v3 else None,
            auth_protocol=user.auth if v3 else None,
            auth_key=SecretStr(user.auth_key or "") if v3 else None,
            priv_protocol=user.priv if v3 else None,
            priv_key=SecretStr(user.priv_key or "") if v3 else None,
            context="",
            timeout=2.0,
            retries=1,
            max_repetitions=25,
            max_rows=10_000,
            max_requests=1_000,
        )

    out: dict[str, Any] = {"oids": len(SNMPD_OIDS), "agent_addresses": len(hosts), "devices": devices}
    with Snmpd([user], hosts=hosts, cpu=agent_cpu) as agent:
        for name, version, force in (
            ("v2c", SnmpVersion.V2C, False),
            ("v3", SnmpVersion.V3, False),
            ("v3_pysnmp", SnmpVersion.V3, True),
        ):
            targets = [target(hosts[i % len(hosts)], agent.port, version) for i in range(devices)]
            transport = create_transport(force_pysnmp=force)
            try:
                out[name] = await _gets_per_cpu(
                    transport,
                    targets,
                    duration=duration,
                    concurrency=concurrency,
                    profile=profile if name == "v3" else None,
                    spy_cpu=spy_cpu,
                )
            finally:
                await transport.close()
            gc.collect()
    return out


# -- memory and /metrics render (run in a child process, on a fresh heap) ----------------------


def _observations(device: ResolvedDevice, i: int, samples: dict[str, Observation]) -> Iterator[Observation]:
    """One SNMP and one ICMP observation of ``device``, shaped like real ones, values varied."""
    now = time.time()
    for probe, fallback in (
        ("snmp", {"power.battery_minutes_remaining": 180, "power.battery_voltage_volts": 54.5}),
        ("icmp", icmp.burst_fields(3, [0.0001, 0.00012, 0.00011])),
    ):
        if (probe == "snmp" and device.snmp is None) or (probe == "icmp" and device.icmp is None):
            continue
        sample = samples.get(probe)
        fields = dict(sample.fields) if sample is not None else dict(fallback)
        for key, value in fields.items():
            if isinstance(value, float):
                fields[key] = value + (i % 97) * 1e-6  # distinct objects, as real readings are
            elif isinstance(value, int) and not isinstance(value, bool) and key != "icmp.sent":
                fields[key] = value + i % 3 if key != "icmp.received" else value
        yield Observation(
            site_id=device.site_id,
            device_id=device.device_id,
            probe=probe,
            started_at=now,
            duration_s=0.004,
            fields=fields,
            profile=sample.profile if sample is not None else None,
        )


def _load_model(
    config: Path, samples: dict[str, Observation], cache: Any = None
) -> tuple[HealthModel, Scheduler, int]:
    from uptimewatch import app
    from uptimewatch.probing.registry import builtin

    first = app._load(config, builtin(), cache)
    pipe = build_pipeline(first.config, first.catalog)
    pipe.scheduler.reconcile(first.config.devices)
    for i, device in enumerate(first.config.devices):
        for obs in _observations(device, i, samples):
            pipe.health.ingest(obs)
    return pipe.health, pipe.scheduler, len(first.config.devices)


def edit_sites(path: Path, share: float) -> int:
    """Rename ``share`` of the sites in ``path`` (every 1/share-th), as an operator's edit does;
    returns how many."""
    step = max(1, round(1 / share))
    count = itertools.count()
    edited = 0

    def rename(m: re.Match[str]) -> str:
        nonlocal edited
        if next(count) % step:
            return m.group(0)
        edited += 1
        return f"{m.group(0)} (sửa)"

    text = re.sub(r"(?m)^  name: Trạm \d+$", rename, path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    return edited


def _heap_sites(snapshot: tracemalloc.Snapshot, top: int = 12) -> list[tuple[str, int, float]]:
    """The largest allocation sites of a tracemalloc snapshot: (file:line, bytes, share)."""
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats) or 1
    out = []
    for stat in stats[:top]:
        frame = stat.traceback[0]
        name = frame.filename
        for marker in ("/site-packages/", "/src/", "/lib/python3"):
            if marker in name:
                name = name.rpartition(marker)[2]
                break
        out.append((f"{name}:{frame.lineno}", stat.size, stat.size / total))
    return out


def child_memory(
    config: Path, samples: dict[str, Observation], profile: Path | None = None, spy_cpu: int | None = None
) -> dict[str, Any]:
    """Heap and RSS of config + health model + scheduler with one observation of each probe per
    device; then two reloads as ``Daemon.reload`` does them (``app._load`` with the daemon's
    :class:`SiteCache` in a worker thread, the model and the scheduler reconfigured on the loop):
    one after 1% of the sites were edited, one of the unchanged file, and one without the cache
    (what a reload cost before it, and costs when every site changed). CPU and loop time of each."""
    from uptimewatch import app
    from uptimewatch.config.loader import SiteCache
    from uptimewatch.gcpause import settle_after_load
    from uptimewatch.probing.registry import builtin

    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    cache = SiteCache()
    health, scheduler, n = _load_model(config, samples, cache)
    health.snapshot()
    gc.collect()
    heap, _peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot()
    sites = _heap_sites(snapshot)
    del snapshot
    tracemalloc.stop()
    rss_unsettled = _rss_bytes()
    settle_after_load()  # as the daemon does after a (re)load
    rss1 = _rss_bytes()

    reloads: dict[str, dict[str, float]] = {}
    reload_profile: dict[str, Any] | None = None
    registry = builtin()
    for label in ("one_percent", "unchanged", "uncached"):
        edited = edit_sites(config, 0.01) if label == "one_percent" else 0
        with recording(profile if label == "one_percent" else None, cpu=spy_cpu) as got:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            # uncached: as a reload of a file whose every site changed (and as every reload was before)
            loaded = app._load(
                config, registry, cache if label != "uncached" else SiteCache()
            ).config  # the daemon runs this in a worker thread
            cpu1, wall1 = time.process_time(), time.perf_counter()
            health.reconfigure(loaded.config, loaded.devices)
            wall_h = time.perf_counter()
            scheduler.reconcile(loaded.devices)
            cpu2, wall2 = time.process_time(), time.perf_counter()
            settle_after_load()
            cpu3 = time.process_time()
        if got:
            reload_profile = got[0].to_dict()
        reloads[label] = {
            "sites_edited": edited,
            "cpu_s": cpu3 - cpu0,
            "parse_cpu_s": cpu1 - cpu0,
            "thread_wall_s": wall1 - wall0,
            "loop_s": wall2 - wall1,
            "loop_health_s": wall_h - wall1,
            "loop_scheduler_s": wall2 - wall_h,
            "loop_cpu_s": cpu2 - cpu1,
        }
    return {
        "devices": n,
        "heap_bytes_per_device": heap / n,
        "rss_bytes_per_device": (rss1 - rss0) / n,
        "rss_bytes": rss1,
        "rss_bytes_before_settling": rss_unsettled,
        "rss_bytes_after_reload": _rss_bytes(),
        "reload": reloads["one_percent"],
        "reload_unchanged": reloads["unchanged"],
        "reload_uncached": reloads["uncached"],
        "reload_profile": reload_profile,
        "heap_sites": sites,
        "kept": bool(health and scheduler),
    }


class GcPauses:
    """A gc callback: the time the cycle collector ran, in all and its longest pass."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        self.total += spent
        self.longest = max(self.longest, spent)


def child_render(
    config: Path, samples: dict[str, Observation], profile: Path | None = None, spy_cpu: int | None = None
) -> dict[str, Any]:
    """/metrics as the daemon serves Prometheus (``export.exposition.scrape``, gzip), step by step:
    the snapshot and collecting run on the event loop, the text and gzip in a worker thread. The
    first scrape (every site rendered), one after a full cycle of changes (every site changed),
    three after 1% of the sites changed (median), and one with nothing changed."""
    from uptimewatch.app import GC_PROMOTE_PERIOD, SCRAPE_STEP_SITES
    from uptimewatch.export.exposition import render, render_body
    from uptimewatch.gcpause import promote

    # devices a daemon polling 100,000 devices a minute ingests between two promote ticks
    promote_every_devices = round(100_000 / 60 * GC_PROMOTE_PERIOD)

    t0 = time.perf_counter()
    loaded, catalog = load(config)
    pipe = build_pipeline(loaded, catalog)
    pipe.scheduler.reconcile(loaded.devices)
    health = pipe.health
    by_site: dict[str, list[tuple[int, ResolvedDevice]]] = {}
    for i, device in enumerate(loaded.devices):
        by_site.setdefault(device.site_id, []).append((i, device))
        for obs in _observations(device, i, samples):
            health.ingest(obs)
    load_s = time.perf_counter() - t0
    n = len(loaded.devices)
    runtime = RuntimeInfo(True, time.time(), True, __version__)
    registry = build_registry(health.snapshot, pipe.scheduler.stats, lambda: runtime)
    gc.freeze()
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)

    promotes: list[float] = []  # the daemon's once-a-second gcpause.promote, each a loop piece

    def change(site_ids: Sequence[str]) -> None:
        # ingested at the 100,000-devices-a-minute rate's pace of promote ticks: once a second
        # the daemon collects and freezes what polls built (gcpause.promote_every)
        since = 0
        for site_id in site_ids:
            for i, device in by_site[site_id]:
                for obs in _observations(device, i, samples):
                    health.ingest(obs)
                since += 1
            if since >= promote_every_devices:
                since = 0
                p0 = time.perf_counter()
                promote()
                promotes.append(time.perf_counter() - p0)
        p0 = time.perf_counter()
        promote()  # the tick before the scrape
        promotes.append(time.perf_counter() - p0)

    def timed_scrape(keep: bool = False) -> dict[str, Any]:
        # as a Prometheus scrape is served (export.exposition.scrape): the snapshot brought up to
        # date in steps on the loop (each step one piece of loop time), the last step and the
        # collecting as one piece, then text + gzip in a thread
        c0, t0 = time.process_time(), time.perf_counter()
        pieces = []  # (wall, of it in cycle-collector passes)
        more = True
        while more:
            s0, g0 = time.perf_counter(), gc_pauses.total
            more = health.refresh(SCRAPE_STEP_SITES)
            pieces.append((time.perf_counter() - s0, gc_pauses.total - g0))
        s0, g0 = time.perf_counter(), gc_pauses.total
        health.snapshot()
        t1 = time.perf_counter()
        metrics = list(registry.collect())
        c2, t2 = time.process_time(), time.perf_counter()
        pieces.append((t2 - s0, gc_pauses.total - g0))
        packed = render_body(metrics, gzip=True)
        c3, t3 = time.process_time(), time.perf_counter()
        body = render(metrics) if keep else b""  # the same text unpacked (series cached: untimed)
        return {
            "snapshot_s": t1 - t0,
            "collect_s": t2 - t1,
            "loop_s": t2 - t0,
            "loop_steps": len(pieces),
            "loop_max_s": max(wall for wall, _gc in pieces),
            # the longest piece without the cycle collector's passes that fell into it: those
            # walk the whole young heap, whoever allocates last (see bench/README.md)
            "loop_max_no_gc_s": max(wall - in_gc for wall, in_gc in pieces),
            "gc_s": sum(in_gc for _wall, in_gc in pieces),
            "thread_s": t3 - t2,
            "cpu_s": c3 - c0,
            "loop_cpu_s": c2 - c0,
            "gzip_bytes": len(packed),
            "body": body,
        }

    first = timed_scrape(keep=True)
    site_ids = list(by_site)
    change(site_ids)
    with recording(profile, cpu=spy_cpu) as got:  # the full-cycle scrape (its own clock inside)
        full = timed_scrape()
    step = max(1, len(site_ids) // 100)
    some = []
    for k in range(3):
        change(site_ids[k::step])
        some.append(timed_scrape())
    some.sort(key=lambda r: r["loop_s"] + r["thread_s"])
    same = timed_scrape()
    body = first.pop("body")
    for r in (full, *some, same):
        del r["body"]
    return {
        "devices": n,
        "load_s": load_s,
        "first": first,
        "full_cycle": full,
        "one_percent": some[1],
        "unchanged": same,
        # the figures of the table (and of earlier runs): the full-cycle and the 1% scrape
        "first_render_s": full["loop_s"] + full["thread_s"],
        "render_s": some[1]["loop_s"] + some[1]["thread_s"],
        # the longest piece a scrape holds the loop for (one snapshot step, or the last step
        # with the collecting)
        "loop_max_s": max(r["loop_max_s"] for r in (first, full, *some, same)),
        "promote_max_s": max(promotes),
        "promotes": len(promotes),
        "loop_max_no_gc_s": max(r["loop_max_no_gc_s"] for r in (first, full, *some, same)),
        "gc_max_s": gc_pauses.longest,
        "bytes": len(body),
        "gzip_bytes": first["gzip_bytes"],
        "series": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "full_cycle_profile": got[0].to_dict() if got else None,
    }


def run_child(
    mode: str, config: Path, samples: Path | None, profile: Path | None = None, spy_cpu: int | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--config", str(config)]
    if samples is not None:
        cmd += ["--samples", str(samples)]
    if profile is not None:
        cmd += ["--profile-to", str(profile)]
    if spy_cpu is not None:
        cmd += ["--spy-cpu", str(spy_cpu)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- the report --------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: str
    goal: str = "-"
    result: str = "info"
    load: str = ""  # the 1-minute load average when the figure was taken: the machine is shared
    key: str = ""  # the summary key of a goal row


def _fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _lag(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "> 30 s" if value == float("inf") else f"≤ {value:g} s"


def _us(figures: dict[str, Any]) -> str:
    """User + system µs a ping."""
    return f"{figures['user_us_per_ping']:.1f} + {figures['system_us_per_ping']:.1f} µs"


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def table(rows: Sequence[Row]) -> str:
    head = ("measure", "value", "goal (issue 13)", "result", "load")
    cells = [head, *((r.measure, r.value, r.goal, r.result, r.load) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(head))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


class Report:
    """The table's rows and the summary object, filled phase by phase."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.summary: dict[str, float | None] = dict.fromkeys(GOALS)

    def info(self, measure: str, value: str) -> None:
        self.rows.append(Row(measure, value, load=_load()))

    def goal(self, key: str, measure: str, value: float, text: str) -> None:
        goal = GOALS[key]
        self.summary[key] = None if math.isnan(value) else value
        self.rows.append(Row(measure, text, goal.text, goal.distance(value), _load(), key))

    def missed(self) -> list[tuple[Row, str]]:
        """The goal rows whose goal was missed, with their keys, in table order."""
        return [(r, r.key) for r in self.rows if r.key and not r.result.startswith("met")]


# -- main --------------------------------------------------------------------------------------


def _window_summary(w: Window) -> dict[str, Any]:
    return {
        "wall_s": w.wall_s,
        "cpu_s": w.cpu_s,
        "cpu_utilization": w.cpu_s / w.wall_s if w.wall_s else 0.0,
        "ok": dict(w.tally.ok),
        "errors": dict(w.tally.errors),
        "error_kinds": dict(w.tally.error_kinds),
        "pings_sent": w.tally.pings_sent,
        "pings_received": w.tally.pings_received,
        "missed_cycles": _diff(Counter(w.stats.missed_cycles), Counter(w.stats_before.missed_cycles)),
        "load_1min": os.getloadavg()[0],
    }


async def bench(args: argparse.Namespace, workdir: Path) -> tuple[Report, dict[str, Any]]:
    phases = set(args.phases.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    ours, theirs = _cpus()
    _pin(0, ours)
    n, dur = args.devices, args.duration
    pysnmp = args.transport == "pysnmp"
    agent_devices = max(n, args.lag_devices if "lag" in phases else 0, args.exporter_targets)
    port = free_udp_port()
    report = Report()
    res: dict[str, Any] = {
        "devices": n,
        "duration_s": dur,
        "transport": args.transport,
        "loop": args.loop,
        "cpus": {"ours": ours, "agents": theirs, "online": os.cpu_count()},
        "load_at_start": list(os.getloadavg()),
    }
    samples: dict[str, Observation] = {}
    profiles = ProfileSet(args.out.parent / "profiles", enabled=args.profile == "on")

    with Agents(agent_devices, port, theirs) as agents:
        if "poll" in phases:
            interval = n / args.offered
            cfg = write_config(
                workdir / "poll.yaml",
                n,
                port=port,
                interval=interval,
                max_concurrency=args.concurrency,
                # a burst waits 100 ms by design (3 requests 50 ms apart): 256 in flight would cap
                # ICMP at ~2,500 bursts/s whatever the CPU; the daemon's default is 2,000
                icmp_max_concurrency=max(args.concurrency, 2000),
            )
            w = await run_polling(
                cfg,
                warmup=min(interval, 3.0) + 0.5,
                duration=dur,
                force_pysnmp=pysnmp,
                profile=profiles.path("devices_per_cpu_s", "poll"),
                spy_cpu=ours,
            )
            profiles.add("devices_per_cpu_s", w.profile)
            samples.update(w.tally.samples)
            snmp_ok, icmp_ok = w.tally.ok["snmp"], w.tally.ok["icmp"]
            per_cpu = min(snmp_ok, icmp_ok) / w.cpu_s
            res["poll"] = {
                **_window_summary(w),
                "offered_devices_per_s": args.offered,
                "devices_per_cpu_s": per_cpu,
            }
            report.goal(
                "devices_per_cpu_s",
                f"devices per CPU-second (10-OID GET + 3-ping burst + ingest, {args.offered:,.0f}/s offered)",
                per_cpu,
                _fmt(per_cpu),
            )
            errors = sum(w.tally.errors.values())
            report.info(
                "  same run: devices/s (wall), CPU busy, failed polls",
                f"{min(snmp_ok, icmp_ok) / w.wall_s:,.0f}/s, {w.cpu_s / w.wall_s:.0%}, "
                f"{errors} of {errors + snmp_ok + icmp_ok}",
            )
        if "snmp" in phases:
            cfg = write_config(
                workdir / "snmp.yaml",
                n,
                port=port,
                interval=n / args.offered,
                icmp_on=False,
                max_concurrency=args.concurrency,
            )
            warmup = min(n / args.offered, 3.0) + 0.5
            w = await run_polling(
                cfg,
                warmup=warmup,
                duration=dur,
                force_pysnmp=pysnmp,
                profile=profiles.path("snmp_vs_snmp_exporter", "snmp"),
                spy_cpu=ours,
            )
            profiles.add("snmp_vs_snmp_exporter", w.profile)
            samples.update(w.tally.samples)
            gets = w.tally.ok["snmp"] / w.cpu_s
            res["snmp"] = {
                **_window_summary(w),
                "transport": args.transport,
                "gets_per_cpu_s": gets,
                "gets_per_s": w.tally.ok["snmp"] / w.wall_s,
            }
            report.info(
                "SNMP GETs per CPU-second (SNMP alone), CPU busy",
                f"{_fmt(gets)}, {w.cpu_s / w.wall_s:.0%}",
            )
            if not pysnmp:
                # the same phase once more with v1/v2c through pysnmp: the codec's gain, same agents
                other = await run_polling(cfg, warmup=warmup, duration=dur, force_pysnmp=True)
                theirs_gets = other.tally.ok["snmp"] / other.cpu_s
                res["snmp_pysnmp"] = {**_window_summary(other), "gets_per_cpu_s": theirs_gets}
                report.info(
                    "  same phase through pysnmp: GETs per CPU-second, ratio fast/pysnmp",
                    f"{_fmt(theirs_gets)}, {gets / theirs_gets:.2f}" if theirs_gets else "n/a",
                )
        if "icmp" in phases:
            bursts_per_s = args.offered_pings / 3
            cfg = write_config(
                workdir / "icmp.yaml",
                n,
                port=port,
                interval=n / bursts_per_s,
                snmp_on=False,
                icmp_max_concurrency=max(args.concurrency, 2000),
            )
            w = await run_polling(cfg, warmup=min(n / bursts_per_s, 3.0) + 0.5, duration=dur)
            pings = w.tally.pings_sent / w.wall_s
            ours_per_cpu = w.tally.pings_sent / w.cpu_s
            res["icmp"] = {
                **_window_summary(w),
                "pings_per_s": pings,
                "pings_per_cpu_s": ours_per_cpu,
                "offered_pings_per_s": args.offered_pings,
            }
            lost = w.tally.pings_sent - w.tally.pings_received
            report.info(
                "pings per CPU-second (ICMP alone), pings/s, CPU busy, lost",
                f"{_fmt(ours_per_cpu)}, {_fmt(pings)}/s, {w.cpu_s / w.wall_s:.0%}, "
                f"{lost} of {w.tally.pings_sent}",
            )
            # the engine alone, then the kernel's floor, in a child on our CPU (bench/icmp_engine.py)
            # at least fping's pings a target; a few seconds of CPU, so the profile has samples
            rounds = max(args.fping_count // ENGINE_BURST, round(2 * dur))
            eng = await asyncio.to_thread(
                run_engine,
                n,
                rounds=rounds,
                floor_rounds=3 * rounds,
                profile=profiles.path("icmp_vs_fping", "icmp-engine"),
                spy_cpu=ours,
            )
            res["icmp_engine"] = eng
            profiled = eng.get("engine_profiled")
            if profiled is not None:
                profiles.add("icmp_vs_fping", profiled.pop("profile", None))
            ours_e = eng["engine"][eng["daemon_loop"]]
            floor = eng["floor"]
            report.info(
                f"ICMP engine alone (Pinger.burst to {n:,} targets at once, {ENGINE_BURST} pings 20 ms"
                f" apart, {rounds} rounds, {eng['daemon_loop']}): pings/CPU-s, user + sys µs a ping, lost",
                f"{_fmt(ours_e['pings_per_cpu_s'])}, {_us(ours_e)},"
                f" {ours_e['lost']} of {ours_e['pings_sent']}",
            )
            for name, other in eng["engine"].items():
                if name != eng["daemon_loop"]:
                    report.info(
                        f"  same engine on {name}'s loop",
                        f"{_fmt(other['pings_per_cpu_s'])}, {_us(other)}",
                    )
            if profiled is not None:
                report.info(
                    "  same engine again, py-spy recording it (not counted; its overhead)",
                    f"{_fmt(profiled['pings_per_cpu_s'])}, {_us(profiled)}",
                )
            report.info(
                f"kernel floor (one raw socket: sendto {n:,} targets, recv_into the replies,"
                f" {floor['rounds']} rounds): pings/CPU-s, user + sys µs a ping",
                f"{_fmt(floor['pings_per_cpu_s'])}, {_us(floor)}",
            )
            if not os.access(FPING_BIN, os.X_OK):
                report.info("fping pings per CPU-second", "fping not installed")
            else:
                targets = [device_address(i) for i in range(n)]
                fp = await asyncio.to_thread(run_fping, targets, ours, count=args.fping_count)
                res["fping"] = fp
                report.info(
                    f"  fping {' '.join(fp['args'])} (x{fp['runs']}): pings/CPU-s, user + sys µs a ping,"
                    " lost",
                    f"{_fmt(fp['pings_per_cpu_s'])}, {_us(fp)}, {fp['lost']} of {fp['pings_sent']}",
                )
                fping_us = fp["cpu_s"] / fp["pings_sent"] * 1e6 if fp["pings_sent"] else math.nan
                best = fping_us / floor["system_us_per_ping"] if floor["system_us_per_ping"] else math.nan
                res["icmp_floor_vs_fping"] = best
                report.info(
                    "  best any engine can do ÷ fping here: fping's µs a ping ÷ the floor's system µs",
                    f"{best:.2f}",
                )
                theirs_per_cpu = fp["pings_per_cpu_s"]
                ratio = ours_e["pings_per_cpu_s"] / theirs_per_cpu if theirs_per_cpu else math.nan
                report.goal(
                    "icmp_vs_fping",
                    f"ICMP engine ÷ fping: pings/CPU-s, engine to engine ({eng['daemon_loop']};"
                    f" {ENGINE_BURST}-ping bursts against fping -C {args.fping_count}, same targets and run)",
                    ratio,
                    f"{ratio:.2f}",
                )
                pipeline = ours_per_cpu / fp["pings_per_cpu_s"] if fp["pings_per_cpu_s"] else math.nan
                res["icmp_pipeline_vs_fping"] = pipeline
                report.info(
                    f"  ICMP pipeline (scheduler + probe + Observation + ingest, {args.loop}) ÷ fping",
                    f"{pipeline:.2f}",
                )
        if "lag" in phases:
            m = args.lag_devices
            lag_interval = m * 60.0 / args.lag_rate
            cfg = write_config(workdir / "lag.yaml", m, port=port, interval=lag_interval)
            w = await run_polling(
                cfg,
                warmup=0.0,
                duration=max(dur, 2 * lag_interval),
                profile=profiles.path("lag_p99_s_250k_per_min", "lag"),
                spy_cpu=ours,
            )
            profiles.add("lag_p99_s_250k_per_min", w.profile)
            counts = [a - b for a, b in zip(w.stats.lag_counts, w.stats_before.lag_counts, strict=True)]
            p50, p99 = lag_quantile(counts, 0.5), lag_quantile(counts, 0.99)
            res["lag"] = {
                **_window_summary(w),
                "devices": m,
                "interval_s": lag_interval,
                "devices_per_min": args.lag_rate,
                "lag_counts": counts,
                "lag_buckets": list(LAG_BUCKETS),
                "p50_s": p50,
                "p99_s": p99,
                "polls": sum(counts),
            }
            label = f"{args.lag_rate:,.0f} devices/min ({m:,} every {lag_interval:g} s)"
            report.info(f"scheduler lag p50 at {label}", _lag(p50))
            if args.lag_rate >= 250_000:
                value = p99 if sum(counts) else math.nan
                report.goal("lag_p99_s_250k_per_min", f"scheduler lag p99 at {label}", value, _lag(p99))
            else:
                report.info(f"scheduler lag p99 at {label} (goal is for 250,000/min)", _lag(p99))
            report.info(
                "  same run: polls, CPU busy",
                f"{sum(counts):,} in {w.wall_s:.0f} s, {w.cpu_s / w.wall_s:.0%}",
            )
        if "exporter" in phases:
            missing = [b for b in (EXPORTER_BIN, WRK_BIN) if not os.access(b, os.X_OK)]
            if missing:
                report.info("snmp_exporter targets per CPU-second", f"not installed: {', '.join(missing)}")
            else:
                targets = [f"{device_address(i)}:{port}" for i in range(args.exporter_targets)]
                ex = await asyncio.to_thread(
                    run_exporter,
                    targets,
                    workdir,
                    duration=dur,
                    connections=args.exporter_concurrency,
                    exporter_cpu=ours,
                    client_cpu=theirs,
                )
                res["exporter"] = ex
                report.info(
                    "snmp_exporter targets per CPU-second (GOMAXPROCS=1, own core; wrk on the other)",
                    f"{_fmt(ex['targets_per_cpu_s'])}, CPU busy {ex['cpu_s'] / ex['wall_s']:.0%}, "
                    f"{ex['targets_failed']} failed",
                )
                if "snmp" in res:
                    ratio = res["snmp"]["gets_per_cpu_s"] / ex["targets_per_cpu_s"]
                    res["ratio_uptimewatch_over_exporter"] = ratio
                    report.goal(
                        "snmp_vs_snmp_exporter",
                        "SNMP GETs per CPU-second ÷ snmp_exporter's targets per CPU-second",
                        ratio,
                        f"{ratio:.2f}",
                    )
                    if "snmp_pysnmp" in res:
                        pr = res["snmp_pysnmp"]["gets_per_cpu_s"] / ex["targets_per_cpu_s"]
                        report.info("  same through pysnmp ÷ snmp_exporter", f"{pr:.2f}")
    res["agents"] = agents.stats

    if "v3" in phases:
        v3 = await run_v3(
            workdir,
            n,
            duration=dur,
            concurrency=args.concurrency,
            agent_cpu=theirs,
            profile=profiles.path("snmpv3_vs_v2c", "v3"),
            spy_cpu=ours,
        )
        res["v3"] = v3
        if "v3" in v3:
            profiles.add("snmpv3_vs_v2c", v3["v3"].pop("profile", None))
        if v3.get("skipped"):
            report.info("SNMPv3 authPriv GETs per CPU-second", v3["skipped"])
        else:
            report.info(
                "SNMP GETs per CPU-second against snmpd: v2c, v3 authPriv SHA/AES",
                f"{_fmt(v3['v2c']['gets_per_cpu_s'])}, {_fmt(v3['v3']['gets_per_cpu_s'])}",
            )
            ratio = v3["v3"]["gets_per_cpu_s"] / v3["v2c"]["gets_per_cpu_s"]
            report.goal(
                "snmpv3_vs_v2c",
                "SNMPv3 authPriv (SHA/AES) GETs per CPU-second ÷ v2c's",
                ratio,
                f"{ratio:.2f}",
            )

    samples_path = workdir / "samples.json"
    samples_path.write_text(json.dumps({k: v.to_dict() for k, v in samples.items()}), encoding="utf-8")
    if "memory" in phases:
        cfg = write_config(workdir / "memory.yaml", args.memory_devices, port=port, interval=60.0)
        mem = await asyncio.to_thread(
            run_child, "memory", cfg, samples_path, profiles.path("reload_300k_cpu_s", "reload"), ours
        )
        res["memory"] = mem
        profiles.add("reload_300k_cpu_s", mem.pop("reload_profile", None))
        if profiles.enabled:
            profiles.add(
                "rss_gib_300k",
                {"tracemalloc": f"{mem['devices']:,} devices loaded", "sites": mem["heap_sites"]},
            )
        m = mem["devices"]
        report.info(
            f"memory per device ({m:,} devices): Python heap, RSS growth",
            f"{mem['heap_bytes_per_device'] / 1024:.1f} KiB, {mem['rss_bytes_per_device'] / 1024:.1f} KiB",
        )
        rss_gib = mem["rss_bytes"] / 2**30
        reload_cpu = mem["reload"]["cpu_s"]
        reload_text = (
            f"{reload_cpu:.1f} s (loop {mem['reload']['loop_s']:.2f} s;"
            f" unchanged file {mem['reload_unchanged']['cpu_s']:.1f} s;"
            f" without the cache {mem['reload_uncached']['cpu_s']:.1f} s)"
        )
        if m >= 300_000:
            report.goal(
                "rss_gib_300k",
                f"RSS at {m:,} devices (config, model, scheduler)",
                rss_gib,
                f"{rss_gib:.2f} GiB",
            )
            report.goal(
                "reload_300k_cpu_s",
                f"reload at {m:,} devices, 1% of the sites edited: CPU (parse + resolve + model + scheduler)",
                reload_cpu,
                reload_text,
            )
        else:
            report.info(f"RSS at {m:,} devices", f"{rss_gib:.2f} GiB")
            report.info(
                f"reload at {m:,} devices, 1% of the sites edited: CPU",
                reload_text,
            )
    if "render" in phases:
        res["render"] = []
        for m in args.render_devices:
            cfg = write_config(workdir / f"render-{m}.yaml", m, port=port, interval=60.0)
            label = f"render-{m}-full"
            prof = profiles.path("metrics_100k_full_cpu_s", label) if m == max(args.render_devices) else None
            r = await asyncio.to_thread(run_child, "render", cfg, samples_path, prof, ours)
            full_profile = r.pop("full_cycle_profile", None)
            if m == 100_000:
                profiles.add("metrics_100k_full_cpu_s", full_profile)
                profiles.add("metrics_100k_loop_max_s", full_profile)
            res["render"].append(r)
            one, full = r["one_percent"], r["full_cycle"]
            report.info(
                f"/metrics render, {r['devices']:,} devices",
                f"{r['series']:,} series ({r['series'] / r['devices']:.1f} per device), "
                f"{r['bytes'] / 1e6:.1f} MB, gzip {r['gzip_bytes'] / 1e6:.1f} MB",
            )
            if m == 100_000:
                report.goal(
                    "metrics_100k_cpu_s",
                    "  CPU after a 1% change cycle",
                    one["cpu_s"],
                    f"{one['cpu_s']:.3f} s",
                )
                report.goal(
                    "metrics_100k_full_cpu_s",
                    "  CPU after a full change cycle",
                    full["cpu_s"],
                    f"{full['cpu_s']:.3f} s",
                )
                block = max(r["loop_max_s"], r["promote_max_s"])
                report.goal(
                    "metrics_100k_loop_max_s",
                    "  longest event-loop block: a scrape's piece, or a gc promote tick",
                    block,
                    f"{block * 1000:,.0f} ms (scrape {r['loop_max_s'] * 1000:,.0f} ms,"
                    f" tick {r['promote_max_s'] * 1000:,.0f} ms)",
                )
                report.info(
                    "  scrape without the cycle collector's passes in it; its longest pass",
                    f"{r['loop_max_no_gc_s'] * 1000:,.0f} ms; {r['gc_max_s'] * 1000:,.0f} ms",
                )
            else:
                report.info(
                    "  CPU after a 1% / a full change cycle, longest loop block (scrape, gc tick)",
                    f"{one['cpu_s']:.3f} s / {full['cpu_s']:.3f} s, {r['loop_max_s'] * 1000:,.0f} ms,"
                    f" {r['promote_max_s'] * 1000:,.0f} ms",
                )
    res["summary"] = report.summary
    res["profiles"] = profiles.by_goal
    return report, res


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="uptimewatch polling benchmark (the goals of issue 13)")
    p.add_argument("--devices", type=int, default=2000, help="devices of the throughput phases")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per polling phase")
    p.add_argument(
        "--offered",
        type=float,
        default=8000.0,
        help="devices per second offered in the throughput phases (above what one core does)",
    )
    p.add_argument(
        "--offered-pings",
        type=float,
        default=60_000.0,
        help="pings per second offered (ICMP; above one core)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=256,
        help="SNMP (and ICMP) polls in flight: a saturated core queues the rest in the scheduler",
    )
    p.add_argument(
        "--lag-devices", type=int, default=25_000, help="devices of the lag phase, polled at --lag-rate"
    )
    p.add_argument(
        "--lag-rate",
        type=float,
        default=250_000.0,
        help="devices per minute in the lag phase (the goal's rate)",
    )
    p.add_argument("--exporter-targets", type=int, default=2000)
    p.add_argument("--exporter-concurrency", type=int, default=64)
    p.add_argument(
        "--memory-devices",
        type=int,
        default=300_000,
        help="devices of the memory and reload phase (goal: 300,000)",
    )
    p.add_argument(
        "--render-devices", type=lambda s: [int(x) for x in s.split(",")], default=[20_000, 100_000]
    )
    p.add_argument(
        "--transport",
        choices=("fast", "pysnmp"),
        default="fast",
        help="SNMP v1/v2c transport: the daemon's own codec (default) or pysnmp",
    )
    p.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the polling phases: asyncio's own (default) or uvloop (if installed)",
    )
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "latest.json")
    p.add_argument(
        "--profile",
        choices=("on", "off"),
        default="on",
        help="py-spy (tracemalloc for memory) over each measured phase: raw files beside --out in"
        " profiles/, and the top functions of each missed goal after the table",
    )
    p.add_argument(
        "--fping-count",
        type=int,
        default=FPING_COUNT,
        help="fping -C: pings a target per run (the engine sends as many, in 3-ping bursts)",
    )
    p.add_argument("--child", choices=("memory", "render"), help=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--spy-cpu", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _child(args: argparse.Namespace) -> int:
    samples: dict[str, Observation] = {}
    if args.samples is not None and args.samples.exists():
        raw = json.loads(args.samples.read_text(encoding="utf-8"))
        samples = {k: Observation.from_dict(v) for k, v in raw.items()}
    fn = child_memory if args.child == "memory" else child_render
    print(json.dumps(fn(args.config, samples, args.profile_to, args.spy_cpu)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return _child(args)
    workdir = args.out.parent / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        report, res = runner.run(bench(args, workdir))
    shutil.rmtree(workdir, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    res = {"summary": res.pop("summary"), **res}
    res.update(
        {
            "version": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "kernel": platform.release(),
            "started_at": started,
            "elapsed_s": time.time() - started,
            "max_rss_kib": usage.ru_maxrss,
            "load_at_end": list(os.getloadavg()),
            "rows": [r.__dict__ for r in report.rows],
        }
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"uptimewatch {__version__} polling benchmark: {res['devices']:,} devices, "
        f"{res['duration_s']:g} s per phase, {time.time() - started:.0f} s in all"
    )
    print(table(report.rows))
    missed = report.missed()
    if missed:
        print("\n## What is left: the profile of each goal missed\n")
        for row, key in missed:
            print(section(key, row.value, row.goal, row.result, res["profiles"].get(key)) + "\n")
    print("\nsummary: " + json.dumps(res["summary"]))
    print(f"results: {args.out}")
    return 0  # a benchmark reports; the table says what passed


if __name__ == "__main__":
    sys.exit(main())
