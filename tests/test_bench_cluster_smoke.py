"""The cluster benchmark runs end to end at a tiny scale (30 devices, 2 s a scenario): a real
NATS cluster, real ``uptimewatch run`` nodes and agents, and its JSON holds every figure.

The figures themselves come from ``make bench-cluster``; nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from uptimewatch.cluster.local_nats import NatsServerError, nats_server_binary

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "cluster_bench.py"

SUMMARY_KEYS = {
    "ratio_wall",
    "ratio_per_node_core",
    "ratio_per_node_core_without_cluster",
    "ratio_per_node_core_paced",
    "devices_per_node_cpu_s_1n_paced",
    "devices_per_node_cpu_s_2n_paced",
    "devices_per_node_cpu_s_1n_vp1",
    "devices_per_node_cpu_s_2n_vp1",
    "devices_per_node_cpu_s_2n_vp2",
    "devices_per_node_cpu_s_2n_alone",
    "publish_us_per_observation",
    "consume_us_per_observation",
    "consume_us_per_observation_without_ingest",
    "stream_bytes_per_observation",
    "payload_bytes_per_observation",
    "nats_cpu_us_per_observation",
}


def _nats_missing() -> bool:
    try:
        nats_server_binary()
    except NatsServerError:
        return True
    return False


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the nodes ping 127.0.0.0/8 with a raw ICMP socket"),
    pytest.mark.skipif(_nats_missing(), reason="Debian's nats-server is not installed"),
]


def test_cluster_bench_runs_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    cmd = [sys.executable, str(BENCH), "--devices", "30", "--offered", "600", "--duration", "2"]
    cmd += ["--warmup", "1", "--observations", "300", "--sample-messages", "100", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 nodes ÷ 1 node" in done.stdout

    res: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert set(res["summary"]) == SUMMARY_KEYS
    for key, value in res["summary"].items():
        assert isinstance(value, float), (key, value)
        assert value > 0, (key, value)
    assert [(s["nodes"], s["vantage_points"]) for s in res["scenarios"]] == [
        (1, 1),
        (2, 1),
        (2, 2),
        (2, 0),
        (1, 1),
        (2, 1),
    ]
    # the paced pair is offered, per node, a share of what one node polled flat out
    flat_out = res["scenarios"][0]["devices_polled_per_s"]
    for scenario in res["scenarios"][-2:]:
        assert scenario["paced"]
        share = scenario["offered_devices_per_s"] / scenario["nodes"] / flat_out
        assert share == pytest.approx(0.4)
    for scenario in res["scenarios"]:
        clustered = scenario["vantage_points"] > 0
        # every node really polled the agents and, in a cluster, put its observations on the stream
        for node in scenario["per_node"].values():
            assert node["devices_polled"] > 0, scenario["name"]
            assert (node["published"] > 0) is clustered, scenario["name"]
        assert (scenario["stream_messages"] > 0) is clustered, scenario["name"]
    # both sides of the stream phase saw every observation
    assert res["stream"]["publisher"]["published"] == 300
    assert res["stream"]["consumer"]["ingested"] == 300
    assert "load average" in res["uptime_at_start"]
