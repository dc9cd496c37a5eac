"""deploy/grafana: provisioning and dashboards are consistent, and every panel's PromQL parses.

``dashboard_queries()`` and ``render_expr()`` are also meant for an end-to-end test that runs each
query against a Prometheus scraping the demo daemon.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_deploy_prometheus import DAEMON_METRICS, promtool, recorded_names, unknown_metrics

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

#: Values for Grafana's template variables that turn a panel query into plain PromQL. Multi-value
#: variables are used inside regex matchers (=~), where ".*" is what "All" means.
GRAFANA_VARS: dict[str, str] = {
    "district": ".*",
    "carrier": ".*",
    "site": "demo-site",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
}
_VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")

# Where install.sh puts the dashboards, and so where the provisioning file must look.
INSTALLED_DASHBOARDS = "/opt/uptimewatch/share/uptimewatch/grafana/dashboards"


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(path: Path) -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) for every query target of every panel, unrendered."""
    dashboard = load_dashboard(path)
    return [
        (dashboard["title"], panel["title"], target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def render_expr(expr: str, overrides: dict[str, str] | None = None) -> str:
    """Substitute Grafana variables (``$site``, ``${district}``, ``$__rate_interval``) with values."""
    values = {**GRAFANA_VARS, **(overrides or {})}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(sub, expr)


def provisioned_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "uptimewatch.yaml").read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    uid: str = source["uid"]
    return uid


def test_provisioning() -> None:
    assert provisioned_uid() == "prometheus"
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "uptimewatch.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    # tests/test_deploy_install.py checks that install.sh puts the dashboards there
    assert provider["options"]["path"] == INSTALLED_DASHBOARDS


def test_the_five_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "links.json",
        "power.json",
        "province-overview.json",
        "site-detail.json",
        "uptimewatch-self.json",
    ]
    uids = [load_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    uid = provisioned_uid()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"].startswith("uptimewatch / ")
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards must not pin an id"

    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for var in variables.values():
        assert var["datasource"]["uid"] == uid
        assert var["query"]["query"].startswith("label_values(")
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        own = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & own, f"{panel['title']} overlaps another panel"
        cells |= own
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == uid, panel["title"]
            for match in _VAR.finditer(target["expr"]):
                name = match.group(1) or match.group(2)
                assert name.startswith("__") or name in variables, f"{panel['title']}: ${name} undefined"
    # site-detail is about one site; the others filter the province
    if path.name == "site-detail.json":
        assert variables["site"]["multi"] is False
    elif path.name != "uptimewatch-self.json":
        assert {"district", "carrier"} <= set(variables)


def test_dashboards_read_only_known_metrics() -> None:
    known = set(DAEMON_METRICS) | recorded_names()
    for path in DASHBOARDS:
        for dashboard, panel, expr in dashboard_queries(path):
            assert not unknown_metrics(expr, known), (dashboard, panel)


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool has no parse-only command for one expression; a rule file of them does the job."""
    queries = [q for path in DASHBOARDS for q in dashboard_queries(path)]
    assert len(queries) > 40
    group_rules = [
        {"record": f"dashboard:query_{i}:check", "expr": render_expr(expr)}
        for i, (_, _, expr) in enumerate(queries)
    ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": group_rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout

    # and the same check rejects a broken query, so passing above means something
    rule_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "x:y:z", "expr": "sum by (site (up)"}]}]}
        )
    )
    result = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


def test_render_expr() -> None:
    assert (
        render_expr('rate(x{district=~"$district",site="${site}"}[$__rate_interval])')
        == 'rate(x{district=~".*",site="demo-site"}[1m])'
    )
    assert render_expr('x{site="$site"}', {"site": "bts-paco-01"}) == 'x{site="bts-paco-01"}'
    with pytest.raises(KeyError):
        render_expr("x[$nope]")
