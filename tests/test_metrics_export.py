"""The Prometheus collector: exposition parsed back, linted by promtool, documented, secret-free."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.test_health import (
    LINK_OK,
    MINUTE,
    T0,
    UPS_OK,
    all_ok,
    make_config,
    make_model,
    ping,
    snmp,
    standard_sites,
)
from uptimewatch.config.resolve import resolve_all
from uptimewatch.export import HealthCollector, RuntimeInfo, build_registry
from uptimewatch.export.tasks import TaskCollector
from uptimewatch.ledger import LedgerStats
from uptimewatch.model.health import HealthModel, SiteState
from uptimewatch.model.observation import ErrorKind, ProbeError
from uptimewatch.model.stats import LAG_BUCKETS, SchedulerStats
from uptimewatch.supervisor import TaskStats

DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

STATS = SchedulerStats(
    lag_counts=(5, 3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2),
    lag_sum=61.5,
    polls={"snmp": 120, "icmp": 130},
    missed_cycles={"snmp": 2},
    deadline_exceeded={"snmp": 1, "icmp": 0},
    in_flight=7,
    targets={"snmp": 8, "icmp": 8},
)
RUNTIME = RuntimeInfo(
    config_last_reload_successful=False,
    config_last_reload_success_timestamp=1_750_000_123.5,
    icmp_usable=True,
    version="0.1.0",
)


def busy_model() -> HealthModel:
    """Every kind of series: a down site, one on battery, a timed-out power unit, link levels."""
    sites = standard_sites()
    sites[0]["devices"][2]["thresholds"] = {"rx_level_dbm_warning": -65, "snr_db_warning": 20}
    model, _ = make_model(make_config(sites))
    all_ok(model, T0)
    for i in range(3):
        at = T0 + (i + 1) * MINUTE
        model.ingest(ping("s2", "bts2", at, loss=1.0))
        model.ingest(
            snmp(
                "s1",
                "pwr1",
                at,
                {
                    **UPS_OK,
                    "power.on_battery": True,
                    "power.mains_ok": False,
                    "power.battery_minutes_remaining": 38,
                    "power.battery_charge_percent": 91,
                },
            )
        )
        model.ingest(snmp("s4", "pwr4", at, error=ProbeError(ErrorKind.TIMEOUT, "no response")))
        model.ingest(snmp("s1", "lnk1", at, {**LINK_OK, "link.rx_level_dbm": -70.5, "link.snr_db": None}))
    return model


def scrape(
    model: HealthModel,
    stats: SchedulerStats = STATS,
    runtime: RuntimeInfo = RUNTIME,
    *,
    full_detail: bool = False,
) -> str:
    registry = build_registry(model.snapshot, lambda: stats, lambda: runtime, full_detail=full_detail)
    # the daemon registers its background work beside the health collector
    tasks = [TaskStats("ledger", True, True, 0, None), TaskStats("outbox:duty/email", True, False, 2, "x")]
    registry.register(TaskCollector(lambda: tasks, lambda: LedgerStats(0, {"overflow": 0, "poison": 0})))
    return generate_latest(registry).decode()


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family: Metric, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of a family whose labels include ``match``, keyed by their remaining labels."""
    out = {}
    for s in family.samples:
        if all(s.labels.get(k) == v for k, v in match.items()):
            rest = tuple(sorted((k, v) for k, v in s.labels.items() if k not in match))
            out[rest] = s.value
    return out


def one(family: Metric, **match: str) -> float:
    found = values(family, **match)
    assert len(found) == 1, f"{family.name}{match}: {found}"
    return next(iter(found.values()))


def test_site_state_has_all_five_states_and_exactly_one_set() -> None:
    fams = families(scrape(busy_model()))
    site_state = fams["uptimewatch_site_state"]
    by_site: dict[str, dict[str, float]] = {}
    for s in site_state.samples:
        by_site.setdefault(s.labels["site"], {})[s.labels["state"]] = s.value
    assert set(by_site) == {"s1", "s2", "s3", "s4"}
    for states in by_site.values():
        assert set(states) == {s.value for s in SiteState}
        assert sorted(states.values()) == [0, 0, 0, 0, 1]
    current = {site: next(k for k, v in states.items() if v == 1) for site, states in by_site.items()}
    assert current == {"s1": "degraded", "s2": "down", "s3": "up", "s4": "degraded"}
    s2 = next(s for s in site_state.samples if s.labels["site"] == "s2")
    assert {k: v for k, v in s2.labels.items() if k != "state"} == {
        "site": "s2",
        "district": "d1",
        "commune": "c2",
        "carrier": "viettel",
    }
    s4 = next(s for s in site_state.samples if s.labels["site"] == "s4")
    assert s4.labels["commune"] == ""
    since = fams["uptimewatch_site_state_since_timestamp_seconds"]
    assert one(since, site="s2") == T0 + 3 * MINUTE


def test_device_and_check_series_in_the_full_detail() -> None:
    fams = families(scrape(busy_model(), full_detail=True))
    checks = fams["uptimewatch_device_check_state"]
    assert one(checks, site="s1", device="pwr1", check="power.alarms") == 0
    assert one(checks, site="s1", device="bts1", check="icmp.reachable") == 0
    rtt = fams["uptimewatch_icmp_rtt_seconds"]
    assert one(rtt, site="s1", device="bts1", stat="min") == 0.001
    snmp_up = fams["uptimewatch_snmp_up"]
    assert one(snmp_up, site="s4", device="pwr4") == 0
    assert one(snmp_up, site="s1", device="pwr1") == 1


def test_device_and_check_series() -> None:
    fams = families(scrape(busy_model()))
    up = fams["uptimewatch_device_up"]
    assert one(up, site="s2", device="bts2", role="bts") == 0
    assert one(up, site="s1", device="bts1") == 1
    checks = fams["uptimewatch_device_check_state"]
    assert one(checks, site="s2", device="bts2", check="icmp.reachable") == 2
    assert one(checks, site="s1", device="pwr1", check="power.on_battery") == 1
    # checks that are ok are left out, but link.rx_level (LinkRxLevelLow reads its presence)
    assert values(checks, site="s1", device="pwr1", check="power.alarms") == {}
    assert values(checks, site="s1", device="bts1") == {}
    assert one(checks, site="s1", device="lnk1", check="link.rx_level") == 1
    assert one(checks, site="s4", device="pwr4", check="snmp.reachable") == 2

    assert one(fams["uptimewatch_icmp_loss_ratio"], site="s2", device="bts2") == 1.0
    assert one(fams["uptimewatch_icmp_loss_ratio"], site="s1", device="bts1") == 0.0
    rtt = fams["uptimewatch_icmp_rtt_seconds"]
    assert values(rtt, site="s1", device="bts1") == {
        (("role", "bts"), ("stat", "avg")): 0.002,
        (("role", "bts"), ("stat", "max")): 0.004,
    }
    assert values(rtt, site="s2", device="bts2") == {}  # nothing came back: no round trip to show
    assert one(fams["uptimewatch_icmp_jitter_seconds"], site="s1", device="bts1") == pytest.approx(0.0002)

    assert "uptimewatch_snmp_up" not in fams  # the full detail only
    assert one(fams["uptimewatch_snmp_poll_duration_seconds"], site="s1", device="pwr1") == 0.25


def test_power_and_link_gauges() -> None:
    fams = families(scrape(busy_model()))
    assert one(fams["uptimewatch_power_on_battery"], site="s1", device="pwr1", role="power") == 1
    assert one(fams["uptimewatch_power_on_battery"], site="s2", device="pwr2") == 0
    assert one(fams["uptimewatch_power_mains_ok"], site="s1", device="pwr1") == 0
    assert one(fams["uptimewatch_power_battery_runtime_seconds"], site="s1", device="pwr1") == 38 * 60
    assert one(fams["uptimewatch_power_battery_charge_ratio"], site="s1", device="pwr1") == pytest.approx(
        0.91
    )
    assert one(fams["uptimewatch_power_battery_voltage_volts"], site="s1", device="pwr1") == 54.2
    # s4's power unit stopped answering SNMP: its last known values are not shown as current
    for name in ("uptimewatch_power_on_battery", "uptimewatch_power_battery_runtime_seconds"):
        assert values(fams[name], site="s4") == {}
    assert one(fams["uptimewatch_link_oper_up"], site="s1", device="lnk1", role="link") == 1
    assert one(fams["uptimewatch_link_rx_level_dbm"], site="s1", device="lnk1") == -70.5
    # SNR went unknown on lnk1: the series is omitted, not zero
    assert values(fams["uptimewatch_link_snr_db"], site="s1") == {}
    assert one(fams["uptimewatch_link_snr_db"], site="s4", device="lnk4") == 32.0


def test_rollup_gauges() -> None:
    fams = families(scrape(busy_model()))
    sites = fams["uptimewatch_sites"]
    assert one(sites, district="d1", carrier="viettel", state="down") == 1
    assert one(sites, district="d1", carrier="vnpt", state="degraded") == 1
    assert one(sites, district="d2", carrier="vnpt", state="up") == 1
    assert sum(s.value for s in sites.samples) == 4
    assert len(values(sites, district="d1", carrier="vnpt")) == 5
    district = fams["uptimewatch_district_sites"]
    assert values(district, district="d1") == {
        (("state", "up"),): 0,
        (("state", "degraded"),): 1,
        (("state", "down"),): 1,
        (("state", "unreachable"),): 0,
        (("state", "unknown"),): 0,
    }
    assert one(district, district="d2", state="degraded") == 1


def test_scheduler_and_runtime_series() -> None:
    fams = families(scrape(busy_model()))
    lag = fams["uptimewatch_scheduler_lag_seconds"]
    assert lag.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in lag.samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 5
    assert buckets["0.01"] == 8
    assert buckets["0.1"] == 9
    assert buckets["30.0"] == 9
    assert buckets["+Inf"] == 11
    assert len(buckets) == len(LAG_BUCKETS) + 1
    sums = {s.name: s.value for s in lag.samples if not s.name.endswith("_bucket")}
    assert sums == {
        "uptimewatch_scheduler_lag_seconds_count": 11,
        "uptimewatch_scheduler_lag_seconds_sum": 61.5,
    }

    polls = fams["uptimewatch_scheduler_polls"]
    assert polls.type == "counter"
    assert {s.labels["probe"]: s.value for s in polls.samples if s.name.endswith("_total")} == {
        "snmp": 120,
        "icmp": 130,
    }
    assert one(fams["uptimewatch_scheduler_missed_cycles"], probe="snmp") == 2
    assert one(fams["uptimewatch_scheduler_deadline_exceeded"], probe="snmp") == 1
    assert one(fams["uptimewatch_scheduler_targets"], probe="icmp") == 8
    assert one(fams["uptimewatch_scheduler_in_flight"]) == 7
    assert one(fams["uptimewatch_config_last_reload_successful"]) == 0
    assert one(fams["uptimewatch_config_last_reload_success_timestamp_seconds"]) == 1_750_000_123.5
    assert one(fams["uptimewatch_icmp_usable"]) == 1
    [build] = fams["uptimewatch_build_info"].samples
    assert build.value == 1
    assert build.labels["version"] == "0.1.0"
    assert re.fullmatch(r"3\.\d+\.\d+", build.labels["python"])
    # the standard process metrics ride along in the same registry
    assert "process_cpu_seconds" in fams


def test_every_family_has_help_text() -> None:
    for family in text_string_to_metric_families(scrape(busy_model())):
        if family.name.startswith("uptimewatch_"):
            assert len(family.documentation) > 20, family.name


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_lints_the_exposition_clean() -> None:
    text = scrape(busy_model())
    assert "uptimewatch_power_battery_runtime_seconds" in text  # the battery runtime is exercised
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert output.strip() == "", output
    assert result.returncode == 0, output


def _exposed_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("uptimewatch_"):
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def _documented(section: str) -> set[str]:
    return set(re.findall(r"^\| `(uptimewatch_[a-z_]+)`", section, flags=re.MULTILINE))


def test_docs_list_exactly_the_metrics_we_export() -> None:
    # the cluster's families are exported by clustered daemons only: test_cluster_export checks them
    documented = _documented(DOCS.read_text().split("\n## The cluster\n")[0])
    exposed = _exposed_names(scrape(busy_model(), full_detail=True))
    assert exposed - documented == set(), "exported but not in docs/metrics.md"
    assert documented - exposed == set(), "in docs/metrics.md but never exported"


def test_a_secret_community_never_reaches_the_exposition() -> None:
    secret_community = "Zq8-very-secret-community"
    secret_key = "auth-key-do-not-leak-42"
    sites = standard_sites()
    sites[0]["devices"][1]["snmp"] = {
        "version": "3",
        "user": "monitor",
        "auth_key": secret_key,
        "priv_key": secret_key + "-priv",
    }
    config = make_config(sites, defaults={"snmp": {"community": secret_community}})
    model, devices = make_model(config)
    assert any(d.snmp is not None and d.snmp.community is not None for d in devices)
    all_ok(model, T0)
    model.ingest(snmp("s1", "pwr1", T0 + MINUTE, error=ProbeError(ErrorKind.AUTH, "wrong digest")))
    text = scrape(model)
    assert "uptimewatch_site_state" in text
    for secret in (secret_community, secret_key):
        assert secret not in text


def test_a_reload_changes_the_series_without_unregistering_anything() -> None:
    model = busy_model()
    registry = build_registry(model.snapshot, lambda: STATS, lambda: RUNTIME)
    before = generate_latest(registry).decode()
    assert 'site="s3"' in before
    sites = [s for s in standard_sites() if s["id"] != "s3"]
    config = make_config(sites)
    model.reconfigure(config, resolve_all(config))
    after = generate_latest(registry).decode()
    assert 'site="s3"' not in after
    assert 'site="s1"' in after


def test_registers_in_the_daemons_registry_before_anything_is_polled() -> None:
    # the daemon uses auto_describe: registration must not need a snapshot yet
    calls: list[str] = []

    def snapshot() -> Any:
        calls.append("snapshot")
        return make_model()[0].snapshot()

    registry = CollectorRegistry(auto_describe=True)
    HealthCollector(snapshot, SchedulerStats, lambda: RUNTIME, registry=registry)
    assert calls == []
    text = generate_latest(registry).decode()
    assert calls == ["snapshot"]
    fams = families(text)
    assert one(fams["uptimewatch_site_state"], site="s1", state="unknown") == 1
    assert "uptimewatch_device_up" not in fams or not fams["uptimewatch_device_up"].samples
    # an idle scheduler still yields a well-formed histogram
    assert one(fams["uptimewatch_scheduler_lag_seconds"], le="+Inf") == 0
