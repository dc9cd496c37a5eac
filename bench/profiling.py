"""Profiles of what is left: py-spy sampling a benchmark process from outside during a measured
window, and the top functions of what it saw (by own time and by cumulative time).

py-spy runs as its own process with ``--nonblocking`` (it reads the target's memory without
stopping it), at a modest rate (:data:`RATE`), pinned where the caller says (the benchmark puts it
on its own CPU: a CPU-second figure counts only the measured process, and the agents' CPU stays
theirs). Its own CPU over the recording is kept with the profile. Where it cannot attach
(no ptrace permission, not installed), :meth:`Recorder.stop` says why instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE = 100  # samples per second
TOP_SELF = 12
TOP_CUMULATIVE = 8

#: innermost frames of a thread that waits (py-spy's own idle check misses some with --nonblocking):
#: the event loop's poll, a worker thread waiting for work, a lock or a sleep
_IDLE = re.compile(
    r"^(\w+\.)?select \(selectors\.py\)$|^_worker \(concurrent/futures/thread\.py\)$"
    r"|^(Condition\.)?wait \(threading\.py\)$|^(Event\.)?wait \(threading\.py\)$"
)
_PROJECT = "uptimewatch/"  # cumulative lists show the project's own functions

# py-spy's raw format: frames "function (file:line)" joined by ";", then a space and the count
_FRAME_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the ``bench`` extra), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("py-spy")


def _frame(raw: str) -> str:
    """A frame without its line number: ``_tick (icmp.py:512)`` -> ``_tick (icmp.py)``."""
    return _FRAME_LINE.sub(")", raw)


@dataclass
class Profile:
    """What one recording holds: samples, and the top functions by own and cumulative share."""

    file: str
    samples: int  # on the CPU; waiting samples (see _IDLE) are left out
    idle: int = 0
    self_top: list[tuple[str, float]] = field(default_factory=list)
    cumulative_top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    spy_cpu_s: float | None = None  # py-spy's own CPU over the recording

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "samples": self.samples,
            "idle_samples": self.idle,
            "rate_hz": RATE,
            "self": [[name, share] for name, share in self.self_top],
            "cumulative": [[name, share] for name, share in self.cumulative_top],
            "error": self.error,
            "spy_cpu_s": self.spy_cpu_s,
        }

    @classmethod
    def failed(cls, file: str, error: str) -> Profile:
        return cls(file, 0, 0, error=error)


def summarize(path: Path, *, top_self: int = TOP_SELF, top_cumulative: int = TOP_CUMULATIVE) -> Profile:
    """The top functions of a py-spy raw (collapsed stacks) file. Own time: the innermost frame of
    each sample; cumulative: every function of the project on the stack, once per sample (recursion
    counts once)."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        if _IDLE.match(frames[-1]):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if _PROJECT in name:  # the harness and the loop's frames hold every sample: no news
                cumulative[name] += count
    if not total:
        return Profile(str(path), 0, idle, error="no samples on the CPU (idle, or py-spy saw nothing)")
    return Profile(
        str(path),
        total,
        idle,
        [(name, n / total) for name, n in own.most_common(top_self)],
        [(name, n / total) for name, n in cumulative.most_common(top_cumulative)],
    )


class Recorder:
    """``py-spy record --pid PID --format raw`` from :meth:`start` to :meth:`stop` (SIGINT, on
    which py-spy writes what it sampled)."""

    def __init__(self, pid: int, path: Path, *, cpu: int | None = None, rate: int = RATE) -> None:
        self.pid = pid
        self.path = path
        self.cpu = cpu
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        self._log = path.with_suffix(".log")

    def start(self) -> Recorder:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed (pip install -e '.[bench]')"
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        cmd = [exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate)]
        cmd += ["--nonblocking", "--function", "--output", str(self.path)]
        if self.cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]  # exec's py-spy: same pid
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> Profile:
        if self.proc is None:
            return Profile.failed(str(self.path), self.error or "not started")
        spy_cpu = _cpu_seconds(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        log = self._log.read_text(encoding="utf-8", errors="replace") if self._log.exists() else ""
        if not self.path.exists():
            lines = [line.strip() for line in log.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("Error")]
            why = (errors or lines[-1:] or [f"exit {self.proc.returncode}"])[0]
            return Profile.failed(str(self.path), f"py-spy could not attach: {why}")
        profile = summarize(self.path)
        profile.spy_cpu_s = spy_cpu
        return profile


def _cpu_seconds(pid: int) -> float | None:
    """user + system CPU of a running process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


ATTACH_S = 0.3  # py-spy attaches and starts sampling within this; start it that long before a window


@contextlib.contextmanager
def recording(path: Path | None, *, cpu: int | None = None) -> Iterator[list[Profile]]:
    """This process recorded around a block (nothing when ``path`` is None); the profile is in
    the yielded list once the block ends. For synchronous code: it sleeps :data:`ATTACH_S`."""
    holder: list[Profile] = []
    if path is None:
        yield holder
        return
    rec = Recorder(os.getpid(), path, cpu=cpu).start()
    time.sleep(ATTACH_S)
    try:
        yield holder
    finally:
        holder.append(rec.stop())


def section(key: str, measured: str, goal: str, result: str, profile: dict[str, Any] | None) -> str:
    """The printed section of one missed goal: the figure against the goal, the top functions."""
    lines = [f"### {key}: {measured} (goal {goal}; {result})"]
    if profile is None:
        lines.append("no profile taken for this goal's phase")
        return "\n".join(lines)
    if profile.get("error"):
        lines.append(f"profile: {profile['error']}")
        return "\n".join(lines)
    if "tracemalloc" in profile:
        lines.append(f"tracemalloc, {profile['tracemalloc']}: top allocation sites of the live heap")
        for name, size, share in profile["sites"]:
            lines.append(f"  {share:6.1%} {size / 2**20:9.1f} MiB  {name}")
        return "\n".join(lines)
    spy = profile.get("spy_cpu_s")
    lines.append(
        f"py-spy {profile['file']}: {profile['samples']:,} samples on the CPU at {profile['rate_hz']} Hz"
        f" ({profile.get('idle_samples', 0):,} waiting, left out"
        + (f"; py-spy itself used {spy:.2f} s of CPU)" if spy is not None else ")")
    )
    lines.append("  own time:")
    lines.extend(f"  {share:6.1%}  {name}" for name, share in profile["self"])
    lines.append("  cumulative:")
    lines.extend(f"  {share:6.1%}  {name}" for name, share in profile["cumulative"])
    return "\n".join(lines)


class ProfileSet:
    """The profiles of one benchmark run, one per goal, saved under ``directory``; ``path`` is None
    for every goal when profiling is off."""

    def __init__(self, directory: Path, *, enabled: bool) -> None:
        self.directory = directory
        self.enabled = enabled
        self.by_goal: dict[str, dict[str, Any]] = {}

    def path(self, goal: str, label: str) -> Path | None:
        del goal  # one file per phase; the goal is named when the profile is added
        if not self.enabled:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{label}.raw"

    def add(self, goal: str, profile: Profile | dict[str, Any] | None) -> None:
        if profile is None:
            return
        self.by_goal[goal] = profile.to_dict() if isinstance(profile, Profile) else profile
