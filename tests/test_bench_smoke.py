"""The benchmark runs end to end (a tiny one: 20 devices, 2 s a phase), and the SNMP transport
keeps the property the benchmark found it needed: new devices add no rows to pysnmp's target MIB.

Speed itself is measured by ``make bench``, never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from uptimewatch.config.models import SnmpVersion
from uptimewatch.config.resolve import SnmpTarget
from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import DeviceSpec, ManualClock, Simulator, SiteSpec
from uptimewatch.probing.snmp_transport import PysnmpTransport

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "poll_bench.py"

EXPECTED_ROWS = (
    "devices per CPU-second (10-OID GET + 3-ping burst + ingest",
    "SNMP GETs per CPU-second (SNMP alone)",
    "pings per CPU-second (ICMP alone)",
    "ICMP engine alone (Pinger.burst to 20 targets at once, 3 pings 20 ms apart",
    "kernel floor (one raw socket",
    "  fping -C 30 -p 20 -q",
    "  best any engine can do ÷ fping here",
    "ICMP engine ÷ fping: pings/CPU-s, engine to engine",
    "  ICMP pipeline (scheduler + probe + Observation + ingest",
    "scheduler lag p50 at 1,200 devices/min (20 every 1 s)",
    "scheduler lag p99 at 1,200 devices/min (20 every 1 s)",
    "snmp_exporter targets per CPU-second",
    "SNMP GETs per CPU-second ÷ snmp_exporter's",
    "SNMP GETs per CPU-second against snmpd: v2c, v3 authPriv",
    "SNMPv3 authPriv (SHA/AES) GETs per CPU-second ÷ v2c's",
    "memory per device (20 devices)",
    "RSS at 20 devices",
    "reload at 20 devices",
    "/metrics render, 20 devices",
)
SUMMARY_KEYS = {
    "devices_per_cpu_s",
    "snmp_vs_snmp_exporter",
    "icmp_vs_fping",
    "metrics_100k_cpu_s",
    "metrics_100k_full_cpu_s",
    "metrics_100k_loop_max_s",
    "lag_p99_s_250k_per_min",
    "rss_gib_300k",
    "reload_300k_cpu_s",
    "snmpv3_vs_v2c",
}


def test_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    cmd = [sys.executable, str(BENCH), "--devices", "20", "--duration", "2", "--lag-devices", "20"]
    cmd += ["--lag-rate", "1200", "--exporter-targets", "20", "--memory-devices", "20"]
    cmd += ["--render-devices", "20", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]

    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    measures = [line.split("|")[1].rstrip() for line in table[1:]]
    for expected in EXPECTED_ROWS:
        assert any(m.strip().startswith(expected.strip()) for m in measures), (expected, measures)

    results: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    # exactly the keys of the goals; the ratios measured in this run are numbers
    assert set(results["summary"]) == SUMMARY_KEYS
    for key in ("devices_per_cpu_s", "snmp_vs_snmp_exporter", "icmp_vs_fping", "snmpv3_vs_v2c"):
        assert isinstance(results["summary"][key], float), key
        assert results["summary"][key] > 0, key
    # every device was really polled through the agents, and answered
    assert results["poll"]["ok"]["snmp"] > 0
    assert results["poll"]["ok"]["icmp"] > 0
    assert results["poll"]["errors"] == {}
    assert results["icmp"]["pings_received"] == results["icmp"]["pings_sent"] > 0
    assert results["fping"]["pings_sent"] == results["fping"]["runs"] * 30 * 20
    assert results["fping"]["lost"] == 0
    assert results["fping"]["user_s"] + results["fping"]["system_s"] == results["fping"]["cpu_s"]
    # the engine sent at least fping's 30 pings a target in 3-ping bursts; the floor loop too
    engine = results["icmp_engine"]["engine"][results["icmp_engine"]["daemon_loop"]]
    assert engine["pings_sent"] == 3 * engine["rounds"] * 20 >= 30 * 20
    assert engine["replies"] == engine["pings_sent"]
    assert results["icmp_engine"]["floor"]["lost"] == 0
    assert isinstance(results["icmp_pipeline_vs_fping"], float)
    # every goal missed gets its section after the table, with a profile (py-spy is installed by
    # the bench extra) or what stopped one; a tiny run's short windows may hold no samples at all
    missed = {k for k, v in results["summary"].items() if v is not None} - {
        r["key"] for r in results["rows"] if r["key"] and r["result"].startswith("met")
    }
    for key in missed:
        assert f"### {key}: " in done.stdout, key
    profiles = results["profiles"]
    assert {"devices_per_cpu_s", "snmp_vs_snmp_exporter", "icmp_vs_fping"} <= set(profiles)
    for key, profile in profiles.items():
        if "tracemalloc" in profile:
            continue
        assert Path(profile["file"]).parent == out.parent / "profiles", key
        if profile["error"] is None:
            assert profile["samples"] > 0, key
            assert Path(profile["file"]).stat().st_size > 0, key
        else:
            # a 2 s window can fall between samples; py-spy itself comes with the test extra
            assert profile["error"].startswith("no samples on the CPU"), (key, profile["error"])
    assert profiles["rss_gib_300k"]["sites"]
    assert results["exporter"]["targets_ok"] > 0
    assert results["v3"]["v3"]["ok"] > 0
    assert results["v3"]["v3"]["failed"] == 0
    assert results["agents"]["responses"] >= results["poll"]["ok"]["snmp"]
    assert results["memory"]["devices"] == 20
    assert results["memory"]["heap_bytes_per_device"] > 0
    assert results["memory"]["reload"]["cpu_s"] > 0
    assert results["render"][0]["series"] > 20
    assert not (out.parent / "work").exists()


def _free_udp_port(host: str) -> int:
    return free_port_below_ephemeral(host)


async def test_new_devices_add_no_target_mib_rows() -> None:
    """pysnmp rebuilds its community check's transport map, O(rows), after every new
    SNMP-TARGET-MIB row: one row per device made a large inventory's first cycle quadratic."""
    count = 30
    addresses = [f"127.66.0.{i + 1}" for i in range(count)]
    sites = [SiteSpec(id=f"s{i}", name=f"S{i}", location="test", contact="test") for i in range(count)]
    devices = [
        DeviceSpec(f"s{i}", "power", "power", address, "bench-ro", f"s{i}-power")
        for i, address in enumerate(addresses)
    ]
    sim = Simulator(sites, devices, load_models(), ManualClock(0.0))
    port = _free_udp_port(addresses[0])

    def target(host: str) -> SnmpTarget:
        return SnmpTarget(
            host=host,
            port=port,
            version=SnmpVersion.V2C,
            community=SecretStr("bench-ro"),
            user=None,
            auth_protocol=None,
            auth_key=None,
            priv_protocol=None,
            priv_key=None,
            context="",
            timeout=2.0,
            retries=1,
            max_repetitions=10,
            max_rows=100,
            max_requests=10,
        )

    transport = PysnmpTransport()
    async with SnmpAgent(sim, port):
        try:
            first = await transport.get(target(addresses[0]), ["1.3.6.1.2.1.1.5.0"])
            assert first.error is None
            mib = transport._engines[0].snmp.get_mib_builder()
            (rows,) = mib.import_symbols("SNMP-TARGET-MIB", "snmpTargetAddrEntry")
            version = rows.branchVersionId
            for i, address in enumerate(addresses[1:], 1):
                got = await transport.get(target(address), ["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.33.1.2.3.0"])
                assert got.error is None, got.error
                assert got.varbinds[0].value == f"s{i}-power".encode()
                walked = await transport.walk(target(address), "1.3.6.1.2.1.2.2.1.2")
                assert walked.error is None
                assert walked.varbinds
            assert rows.branchVersionId == version
        finally:
            await transport.close()
