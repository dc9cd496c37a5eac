"""The benchmark runs end to end (a tiny one: 20 devices, 2 s a phase), and the SNMP transport
keeps the property the benchmark found it needed: new devices add no rows to pysnmp's target MIB.

Speed itself is measured by ``make bench``, never asserted here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from uptimewatch.config.models import SnmpVersion
from uptimewatch.config.resolve import SnmpTarget
from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import DeviceSpec, ManualClock, Simulator, SiteSpec
from uptimewatch.probing.snmp_transport import PysnmpTransport

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "poll_bench.py"

EXPECTED_ROWS = (
    "devices polled per CPU-second (SNMP 10 OIDs + 3-ping burst)",
    "SNMP GETs per CPU-second (SNMP alone)",
    "pings per second (ICMP alone)",
    "scheduler lag p50 at 20 devices/min",
    "scheduler lag p99 at 20 devices/min",
    "snmp_exporter targets per CPU-second",
    "memory per device (Python heap, 20 devices)",
    "memory per device (RSS growth)",
    "/metrics render, 20 devices",
)


def test_bench_runs_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    cmd = [sys.executable, str(BENCH), "--devices", "20", "--duration", "2", "--lag-devices", "20"]
    cmd += ["--exporter-targets", "20", "--memory-devices", "20", "--render-devices", "20"]
    cmd += ["--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]

    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    measures = [line.split("|")[1].strip() for line in table[1:]]
    for expected in EXPECTED_ROWS:
        assert any(m.startswith(expected) for m in measures), (expected, measures)

    results: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    # every device was really polled through the agents, and answered
    assert results["poll"]["ok"]["snmp"] > 0
    assert results["poll"]["ok"]["icmp"] > 0
    assert results["poll"]["errors"] == {}
    assert results["icmp"]["pings_received"] == results["icmp"]["pings_sent"] > 0
    assert results["agents"]["responses"] >= results["poll"]["ok"]["snmp"]
    assert results["memory"]["devices"] == 20
    assert results["memory"]["heap_bytes_per_device"] > 0
    assert results["render"][0]["series"] > 20
    assert not (out.parent / "work").exists()


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
