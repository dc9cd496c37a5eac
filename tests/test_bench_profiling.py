"""bench/profiling.py reads py-spy's raw (collapsed stacks) output into the top lists the
benchmark prints for a missed goal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from profiling import Profile, Recorder, py_spy, section, summarize

RAW = """\
<module> (poll_bench.py:1);run (uptimewatch/scheduler.py:10);_send (uptimewatch/probing/icmp.py:500) 6
<module> (poll_bench.py:1);run (uptimewatch/scheduler.py:12);_send (uptimewatch/probing/icmp.py:502) 2
<module> (poll_bench.py:1);run (uptimewatch/scheduler.py:10);ingest (uptimewatch/model/health.py:7) 1
<module> (poll_bench.py:1);f (uptimewatch/x.py:1);f (uptimewatch/x.py:2) 1
not a sample line
"""


def test_summarize_gives_own_and_cumulative_shares(tmp_path: Path) -> None:
    path = tmp_path / "poll.raw"
    path.write_text(RAW, encoding="utf-8")
    profile = summarize(path)
    assert profile.samples == 10
    # line numbers are folded into the function; own time is the innermost frame
    assert profile.self_top[0] == ("_send (uptimewatch/probing/icmp.py)", pytest.approx(0.8))
    assert dict(profile.self_top)["ingest (uptimewatch/model/health.py)"] == pytest.approx(0.1)
    cumulative = dict(profile.cumulative_top)
    # the harness's frames are left out of the cumulative list; recursion counts once a sample
    assert "<module> (poll_bench.py)" not in cumulative
    assert cumulative["run (uptimewatch/scheduler.py)"] == pytest.approx(0.9)
    assert cumulative["f (uptimewatch/x.py)"] == pytest.approx(0.1)


def test_an_empty_recording_says_so(tmp_path: Path) -> None:
    path = tmp_path / "idle.raw"
    path.write_text("", encoding="utf-8")
    profile = summarize(path)
    assert profile.samples == 0
    assert profile.error is not None
    text = section("icmp_vs_fping", "0.68", "≥ 1.5x", "missed", profile.to_dict())
    assert text.splitlines()[1] == f"profile: {profile.error}"


def test_section_lists_the_top_functions(tmp_path: Path) -> None:
    path = tmp_path / "poll.raw"
    path.write_text(RAW, encoding="utf-8")
    text = section("devices_per_cpu_s", "2,497", "≥ 5,000", "missed", summarize(path).to_dict())
    lines = text.splitlines()
    assert lines[0] == "### devices_per_cpu_s: 2,497 (goal ≥ 5,000; missed)"
    assert "   80.0%  _send (uptimewatch/probing/icmp.py)" in lines
    assert section("x", "1", "2", "missed", None).endswith("no profile taken for this goal's phase")
    failed = Profile.failed("p.raw", "py-spy could not attach: Permission denied").to_dict()
    assert section("x", "1", "2", "missed", failed).endswith("py-spy could not attach: Permission denied")


def test_waiting_samples_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "lag.raw"
    path.write_text(
        "<module> (poll_bench.py:1);run_forever (asyncio/base_events.py:600);"
        "_run_once (asyncio/base_events.py:1900);EpollSelector.select (selectors.py:468) 30\n"
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 5\n"
        "<module> (poll_bench.py:1);_poll (uptimewatch/scheduler.py:3) 10\n",
        encoding="utf-8",
    )
    profile = summarize(path)
    assert (profile.samples, profile.idle) == (10, 35)
    assert profile.self_top == [("_poll (uptimewatch/scheduler.py)", 1.0)]


def test_a_recorder_that_cannot_attach_says_why(tmp_path: Path) -> None:
    """py-spy is in the bench extra; without it, the recorder says that instead."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    recorder = Recorder(gone.pid, tmp_path / "gone.raw").start()
    if recorder.proc is not None:
        recorder.proc.wait(30)  # py-spy gives up on its own
    profile = recorder.stop()
    assert profile.samples == 0
    assert profile.error is not None
    if py_spy() is None:
        assert profile.error.startswith("py-spy not installed")
    else:
        assert profile.error.startswith("py-spy could not attach: Error"), profile.error
