"""deploy/ for real: every dashboard panel's query against Debian's Prometheus scraping the demo
daemon, and the built wheel installed into a virtualenv of its own.

The live test starts the demo's simulated province (SNMP agents on 127.16.0.0/12) and the daemon
in-process, puts a few sites into the states the power and link panels are about (mains failed,
a router dead, a radio fading), starts ``/usr/bin/prometheus`` with the shipped scrape config and
rules (target, intervals and paths rewritten for the test) and runs each panel target through the
Prometheus HTTP API, as Grafana would: each must parse and return data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

import uptimewatch
from tests.fixtures.daemon import free_tcp_port, wait_until, write_yaml
from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from tests.test_deploy_grafana import DASHBOARDS, all_panels, load_dashboard, render_expr
from tests.test_deploy_prometheus import PROM, RULE_FILES, promtool
from uptimewatch.app import run_daemon
from uptimewatch.demo.agent import SnmpAgent
from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import SimClock, Simulator
from uptimewatch.demo.province import DemoProvince, generate_province

SITES = 30

#: Panel targets allowed to come back empty against the demo, (dashboard file, panel title) ->
#: why. Keep it short: an empty panel here is one an operator would see empty too.
NO_DATA_EXPECTED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class PanelQuery:
    dashboard: str  # file name
    panel: str
    expr: str  # rendered
    ranged: bool  # Grafana runs it as a range query (time series, sparklines)


def panel_queries(site: str) -> tuple[int, list[PanelQuery]]:
    """(number of panels, every target of every panel, rendered for ``site``)."""
    panels = 0
    out: list[PanelQuery] = []
    for path in DASHBOARDS:
        for panel in all_panels(load_dashboard(path)):
            if panel["type"] == "row":
                continue
            panels += 1
            for target in panel["targets"]:
                out.append(
                    PanelQuery(
                        dashboard=path.name,
                        panel=panel["title"],
                        expr=render_expr(target["expr"], {"site": site}),
                        # Grafana's default for a target that says neither
                        ranged=bool(target.get("range", not target.get("instant", False))),
                    )
                )
    return panels, out


def free_udp_port() -> int:
    return free_port_below_ephemeral("127.16.1.1")


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(path, os.X_OK):
        pytest.skip(
            "prometheus is not installed (Debian package prometheus, in the Makefile's DEBIAN_PACKAGES)"
        )
    return path


def live_config(tmp: Path, daemon_port: int, prometheus_port: int) -> Path:
    """The shipped prometheus.yml and rules, rewritten to run a test in a minute.

    Changed: the targets (the daemon's and this Prometheus' own port), every interval to 1 s
    (including the rule groups' own 1m/5m, so the hourly and daily averages exist at all within
    the test), the rule file paths, and no Alertmanager (the heartbeat alert always fires and must
    not reach whatever listens on 9093). The rule expressions are the shipped ones, unchanged.
    """
    config: dict[str, Any] = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config.pop("alerting", None)
    rule_paths = []
    for rule_file in RULE_FILES:
        rules: dict[str, Any] = yaml.safe_load(rule_file.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            group.pop("interval", None)
        copy = tmp / rule_file.name
        copy.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        rule_paths.append(str(copy))
    assert [Path(p).name for p in config["rule_files"]] == [Path(p).name for p in rule_paths]
    config["rule_files"] = rule_paths
    ports = {"uptimewatch": daemon_port, "prometheus": prometheus_port}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(ports)
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Prometheus:
    """A Prometheus server started by the test; queries through its HTTP API."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def api(self, path: str, **params: str) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body: dict[str, Any] = await resp.json()
            return body

    async def query(self, expr: str) -> list[dict[str, Any]]:
        body = await self.api("query", query=expr)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def scalar(self, expr: str) -> float | None:
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else None

    async def query_range(self, expr: str, seconds: float = 60.0) -> dict[str, Any]:
        end = time.time()
        return await self.api(
            "query_range", query=expr, start=f"{end - seconds:.3f}", end=f"{end:.3f}", step="2"
        )


@contextlib.asynccontextmanager
async def prometheus(tmp: Path, daemon_port: int) -> AsyncIterator[Prometheus]:
    binary = prometheus_binary()
    port = free_tcp_port()
    config = live_config(tmp, daemon_port, port)
    check = await asyncio.create_subprocess_exec(
        promtool(), "check", "config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
    assert "SUCCESS: 2 rule files found" in out.decode()

    log_path = tmp / "prometheus.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

            async def ready() -> bool:
                assert proc.returncode is None, log_path.read_text(errors="replace")
                try:
                    async with session.get(f"{url}/-/ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=30, interval=0.2)
            yield Prometheus(url, session)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def site_with_all_devices(province: DemoProvince, role: str, nth: int) -> str:
    site = province.roles[role][nth]
    kinds = {d.device_id for d in province.devices if d.site_id == site}
    assert {"bts", "power", "link"} <= kinds, (site, kinds)
    return site


async def test_every_dashboard_panel_returns_data_from_the_demo(tmp_path: Path) -> None:
    snmp_port = free_udp_port()
    daemon_port = free_tcp_port()
    province = generate_province(SITES, snmp_port=snmp_port, listen=f"127.0.0.1:{daemon_port}", interval="1s")
    province.config["defaults"]["hard_after"] = 1
    config_path = write_yaml(tmp_path / "config.yaml", province.config)
    sim = Simulator(province.sites, province.devices, load_models(), SimClock(1.0))

    # What the power and link panels exist for: mains failed at three leaves (the site-detail
    # dashboard looks at the first), one BTS router dead, one radio fading into its warning band
    # (thresholds -52/-58 dBm against a nominal -38..-42 dBm) but still up.
    on_battery = [site_with_all_devices(province, "leaf", i) for i in range(3)]
    dead_router = site_with_all_devices(province, "leaf", 3)
    fading = site_with_all_devices(province, "leaf", 4)
    for site in on_battery:
        sim.set_mains(site, False)
    sim.set_dead(f"{dead_router}/bts", True)
    sim.set_rx_fade(f"{fading}/link", 15.0)
    detail_site = on_battery[0]

    panels, queries = panel_queries(detail_site)
    assert panels > 40
    assert len(queries) > len({(q.dashboard, q.panel) for q in queries}), "some panels have several targets"
    assert set(NO_DATA_EXPECTED) <= {(q.dashboard, q.panel) for q in queries}, "stale allow-list entry"

    async with (
        asyncio.timeout(85),
        SnmpAgent(sim, snmp_port),
        run_daemon(config_path) as daemon,
        prometheus(tmp_path, daemon_port) as prom,
    ):

        def settled() -> bool:
            sites = daemon.snapshot().sites
            return len(sites) == SITES and all(s.state.value != "unknown" for s in sites.values())

        await wait_until(settled, timeout=30)

        async def scraping() -> bool:
            # several scrapes, and the recording rules evaluated over them
            scrapes = await prom.scalar('count_over_time(up{job="uptimewatch"}[1m])')
            up = await prom.scalar('up{job="uptimewatch"}')
            rules = await prom.scalar("count(uptimewatch:site_on_battery:bool == 1)")
            return up == 1 and (scrapes or 0) >= 5 and rules == len(on_battery)

        await wait_until(scraping, timeout=30, interval=0.5)

        async def run_all() -> dict[str, list[str]]:
            """Query label -> problems; empty lists for the ones that returned data."""
            report: dict[str, list[str]] = {}
            for i, q in enumerate(queries):
                label = f"{q.dashboard} / {q.panel} / #{i}"
                problems = report.setdefault(label, [])
                body = await prom.api("query", query=q.expr)
                if body["status"] != "success":
                    problems.append(f"instant: {body.get('error')}")
                elif not body["data"]["result"]:
                    problems.append("instant: no data")
                if q.ranged:
                    body = await prom.query_range(q.expr)
                    if body["status"] != "success":
                        problems.append(f"range: {body.get('error')}")
                    elif not body["data"]["result"]:
                        problems.append("range: no data")
            return report

        # Grafana shows whatever is there; the demo's fault states take a few polls to show
        # everywhere, so ask again for a few seconds before calling a panel empty.
        deadline = time.monotonic() + 15
        rounds = 0
        while True:
            report = await run_all()
            empty = {
                label: problems
                for (label, problems), q in zip(report.items(), queries, strict=True)
                if problems and (q.dashboard, q.panel) not in NO_DATA_EXPECTED
            }
            rounds += 1
            if not empty or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)

        # and the data is the demo's: the dispatch list is exactly the sites whose mains failed
        (ttd,) = [q for q in queries if q.panel.startswith("Time to dark")]
        assert {r["metric"]["site"] for r in await prom.query(ttd.expr)} == set(on_battery)

    range_queries = sum(q.ranged for q in queries)
    with_data = sum(not problems for problems in report.values())
    # a panel counts when every one of its targets returned data
    panels_with_data = len({(q.dashboard, q.panel) for q in queries}) - len(
        {(q.dashboard, q.panel) for (_, problems), q in zip(report.items(), queries, strict=True) if problems}
    )
    print(
        f"\n{panels} panels, {len(queries) + range_queries} queries "
        f"({len(queries)} targets instant, {range_queries} also as range), "
        f"{with_data} targets returned data, {panels_with_data} panels returned data ({rounds} rounds)"
    )
    assert not empty, "\n".join(f"{label}: {'; '.join(p)}" for label, p in empty.items())


# -- the wheel ------------------------------------------------------------------------------------


def test_wheel_installs_and_checks_a_config(
    tmp_path: Path,
    wheel: Path,
) -> None:
    """``pip install dist/*.whl`` into a fresh virtualenv, then ``uptimewatch check-config``.

    tests/test_deploy_install.py installs the wheel without its dependencies (no index here) and
    runs ``--version``; this one lends the fresh virtualenv the dependencies of the test
    environment (a .pth path entry, which does not run the test environment's editable-install
    hook), so the wheel's own code and data files (the probe profiles under share/) do the work.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, timeout=30, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    Path(site_packages, "test-dependencies.pth").write_text(deps + "\n", encoding="utf-8")

    def uptimewatch_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "uptimewatch"), *args],
            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip

    where = subprocess.run(
        [str(python), "-c", "import uptimewatch.profiles as p; print(p.__file__, p.default_profiles_dir())"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(venv)), f"not the wheel's code: {where[0]}"
    assert where[1] == str(venv / "share" / "uptimewatch" / "probes")

    version = uptimewatch_cli("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"uptimewatch {uptimewatch.__version__}"

    province = generate_province(6, snmp_port=16161)
    # an explicit profile name is checked against the profiles the wheel installed
    province.config["sites"][0]["devices"][1]["profile"] = "ups-mib"
    good = write_yaml(tmp_path / "good.yaml", province.config)
    result = uptimewatch_cli("check-config", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Hợp lệ: 6 trạm, 18 thiết bị"), result.stdout  # a Vietnamese province

    province.config["sites"][0]["devices"][1]["profile"] = "no-such-profile"
    bad = write_yaml(tmp_path / "bad.yaml", province.config)
    result = uptimewatch_cli("check-config", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    # FILE:LINE: FIELD: MESSAGE, naming the profiles the wheel installed
    assert re.search(r"bad\.yaml:\d+: sites\[.+\]\.devices\[power\]\.profile: ", result.stderr), result.stderr
    assert "unknown profile 'no-such-profile'" in result.stderr, result.stderr
    assert "ups-mib" in result.stderr.partition("known:")[2], result.stderr
