"""deploy/alertmanager/alertmanager.yml: valid for amtool, and routes uptimewatch's alerts as documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerting_rules.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool is not installed (Debian package prometheus-alertmanager, not in the Makefile)")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["alertname=UptimewatchSiteDown", "district=mai-chau", "carrier=vnpt", "severity=critical"],
            "noc,carrier-vnpt,district-mai-chau",
        ),
        (
            ["alertname=SiteOnBattery", "district=lac-son", "carrier=viettel", "severity=warning"],
            "noc,carrier-viettel,district-lac-son",
        ),
        (["alertname=UptimewatchDown", "district=all", "carrier=all", "severity=critical"], "noc"),
        (
            ["alertname=UptimewatchHeartbeat", "district=all", "carrier=all", "severity=info"],
            "deadmans-switch",
        ),
    ],
)
def test_routes(labels: list[str], receivers: str) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receivers}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_structure() -> None:
    """Without amtool: the parts the rules depend on (grouping, inhibition by alert names that exist)."""
    config = yaml.safe_load(CONFIG.read_text())
    assert config["route"]["group_by"] == ["district", "carrier", "alertname"]
    alert_names = {
        rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    }
    down_inhibits = [
        rule
        for rule in config["inhibit_rules"]
        if rule["source_matchers"] == ['alertname="UptimewatchSiteDown"']
    ]
    assert len(down_inhibits) == 1
    assert down_inhibits[0]["equal"] == ["site"]
    target = down_inhibits[0]["target_matchers"][0]
    assert "SiteOnBattery" in target
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            names = matcher.split("=", 1)[1].strip('~"').split("|")
            assert set(names) <= alert_names, matcher
    receivers = {r["name"] for r in config["receivers"]}

    def walk(route: dict[str, object]) -> None:
        assert route["receiver"] in receivers
        for child in route.get("routes", []):  # type: ignore[attr-defined]
            walk(child)

    walk(config["route"])
