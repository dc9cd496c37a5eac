"""deploy/prometheus: the config and rule files pass promtool, and the rule unit tests cover every rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = (PROM / "recording_rules.yml", PROM / "alerting_rules.yml")
UNIT_TESTS = sorted((PROM / "tests").glob("*.yml"))

#: Every metric the daemon exports or will export (FUTURE ones included), plus Prometheus' own.
#: Rules and dashboards may read nothing else: a typo in a metric name yields an empty panel or an
#: alert that can never fire, and neither shows up as an error anywhere.
DAEMON_METRICS = frozenset(
    {
        "uptimewatch_site_state",
        "uptimewatch_site_state_since_timestamp_seconds",
        "uptimewatch_device_up",
        "uptimewatch_device_check_state",
        "uptimewatch_icmp_loss_ratio",
        "uptimewatch_icmp_rtt_seconds",
        "uptimewatch_icmp_jitter_seconds",
        "uptimewatch_snmp_up",
        "uptimewatch_snmp_poll_duration_seconds",
        "uptimewatch_power_on_battery",
        "uptimewatch_power_mains_ok",
        "uptimewatch_power_battery_runtime_seconds",
        "uptimewatch_power_battery_charge_ratio",
        "uptimewatch_power_battery_voltage_volts",
        "uptimewatch_link_oper_up",
        "uptimewatch_link_rx_level_dbm",
        "uptimewatch_link_snr_db",
        "uptimewatch_sites",
        "uptimewatch_district_sites",
        "uptimewatch_scheduler_lag_seconds_bucket",
        "uptimewatch_scheduler_lag_seconds_sum",
        "uptimewatch_scheduler_lag_seconds_count",
        "uptimewatch_scheduler_missed_cycles_total",
        "uptimewatch_scheduler_polls_total",
        "uptimewatch_scheduler_deadline_exceeded_total",
        "uptimewatch_scheduler_targets",
        "uptimewatch_scheduler_in_flight",
        "uptimewatch_config_last_reload_successful",
        "uptimewatch_config_last_reload_success_timestamp_seconds",
        "uptimewatch_icmp_usable",
        "uptimewatch_event_loop_lag_seconds",
        "uptimewatch_scheduler_overloaded_polls_total",
        "uptimewatch_build_info",
        # FUTURE (alerts)
        "uptimewatch_notifications_outbox_depth",
        "uptimewatch_notifications_oldest_pending_age_seconds",
        "uptimewatch_site_time_to_dark_seconds",
        # prometheus_client's process collector, and the scrape itself
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "up",
    }
)
_METRIC_REF = re.compile(r"\b((?:uptimewatch|process)[a-zA-Z0-9_:]*)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed (Debian package prometheus, in the Makefile's DEBIAN_PACKAGES)"
        )
    return path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules(PROM / "recording_rules.yml")}


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    """Metric names in ``expr`` that neither the daemon exports nor a recording rule records."""
    return {name for name in _METRIC_REF.findall(_STRING.sub('""', expr)) if name not in known}


def test_check_rules() -> None:
    result = run(promtool(), "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout)]
    assert counts == [len(rules(f)) for f in RULE_FILES]


def test_check_config(tmp_path: Path) -> None:
    """The shipped prometheus.yml names the rules where install puts them: point it at the repo's."""
    config = load(PROM / "prometheus.yml")
    assert [Path(p).name for p in config["rule_files"]] == [f.name for f in RULE_FILES]
    config["rule_files"] = [str(f) for f in RULE_FILES]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run(promtool(), "check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout

    job = next(j for j in config["scrape_configs"] if j["job_name"] == "uptimewatch")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9847"]
    assert job["scrape_interval"] == "15s"


def test_rule_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests under deploy/prometheus/tests"
    # cwd elsewhere on purpose: the tests must find their rule files relative to themselves
    result = run(promtool(), "test", "rules", *UNIT_TESTS, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation must make promtool fail, or the test above proves nothing."""
    source = PROM / "tests" / "alerts_test.yml"
    broken = source.read_text(encoding="utf-8").replace('site: "s1"', 'site: "s9"', 1)
    assert broken != source.read_text(encoding="utf-8")
    test_file = tmp_path / "tests" / "broken_test.yml"
    test_file.parent.mkdir()
    test_file.write_text(broken, encoding="utf-8")
    for rule_file in RULE_FILES:
        shutil.copy(rule_file, tmp_path / rule_file.name)
    result = run(promtool(), "test", "rules", test_file)
    assert result.returncode != 0
    assert "UptimewatchSiteDown" in result.stderr


def alert_cases() -> dict[str, list[dict[str, Any]]]:
    cases: dict[str, list[dict[str, Any]]] = {}
    for path in UNIT_TESTS:
        for test in load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case)
    return cases


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = [r["alert"] for r in rules(PROM / "alerting_rules.yml")]
    assert len(alerts) == len(set(alerts)), "duplicate alert names"
    cases = alert_cases()
    assert sorted(cases) == sorted(alerts), "alert rules and promtool alert tests differ"
    for name, alert_tests in cases.items():
        assert any(c.get("exp_alerts") for c in alert_tests), f"{name}: no case where it fires"
        if name != "UptimewatchHeartbeat":  # fires always, by design
            assert any(not c.get("exp_alerts") for c in alert_tests), f"{name}: no case where it stays quiet"


def test_every_recording_rule_is_tested() -> None:
    exprs = [
        case["expr"]
        for path in UNIT_TESTS
        for test in load(path)["tests"]
        for case in test.get("promql_expr_test", [])
    ]
    tested = {name for expr in exprs for name in _METRIC_REF.findall(expr)}
    assert recorded_names() <= tested, f"untested: {sorted(recorded_names() - tested)}"


def test_alerts_carry_routing_labels_and_operator_text() -> None:
    for rule in rules(PROM / "alerting_rules.yml"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 80, f"{name}: say what to do"
    # district and carrier come from the series (sites) or the rule (the daemon itself): check the
    # alerts promtool actually produced
    for name, cases in alert_cases().items():
        for case in cases:
            for alert in case.get("exp_alerts") or []:
                labels = alert["exp_labels"]
                assert {"severity", "district", "carrier"} <= set(labels), f"{name}: {labels}"


def test_rules_read_only_known_metrics() -> None:
    known = set(DAEMON_METRICS) | recorded_names()
    # the check itself: a misspelt name is caught, a label value naming the job is not a metric
    assert unknown_metrics('rate(uptimewatch_polls_total{job="uptimewatch"}[5m])', known) == {
        "uptimewatch_polls_total"
    }
    for path in RULE_FILES:
        for rule in rules(path):
            assert not unknown_metrics(rule["expr"], known), (rule.get("alert") or rule.get("record"), path)


FUTURE_METRICS = (
    "uptimewatch_notifications_outbox_depth",
    "uptimewatch_notifications_oldest_pending_age_seconds",
    "uptimewatch_site_time_to_dark_seconds",
)


def test_future_metrics_are_marked() -> None:
    """Rules on metrics the daemon does not export yet say so in the comment right above them."""
    lines = (PROM / "alerting_rules.yml").read_text(encoding="utf-8").splitlines()
    marked = 0
    for rule in rules(PROM / "alerting_rules.yml"):
        if any(m in rule["expr"] for m in FUTURE_METRICS):
            at = lines.index(f"      - alert: {rule['alert']}")
            assert "FUTURE" in lines[at - 1], rule["alert"]
            marked += 1
    assert marked == 2
