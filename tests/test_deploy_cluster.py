"""deploy/ for several nodes: the ``uptimewatch@.service`` template, the NATS server's config and
unit. systemd and nats-server themselves judge the files; the template keeps the single unit's
hardening line for line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_deploy_systemd import directives, systemd_analyze

REPO = Path(__file__).resolve().parents[1]
SINGLE = REPO / "deploy" / "systemd" / "uptimewatch.service"
TEMPLATE = REPO / "deploy" / "systemd" / "uptimewatch@.service"
NATS_UNIT = REPO / "deploy" / "nats" / "uptimewatch-nats.service"
NATS_CONF = REPO / "deploy" / "nats" / "nats-server.conf"
VENV_BIN = Path(sys.executable).parent

#: what the template may change of uptimewatch.service, and how
PER_NODE = {
    "Description": "uptimewatch probe node %i",
    "After": "network-online.target uptimewatch-nats.service",
    "StateDirectory": "uptimewatch/%i",
    "WorkingDirectory": "/var/lib/uptimewatch/%i",
    "EnvironmentFile": "-/etc/uptimewatch/nodes/%i.env",
}


def _verify(unit_dir: Path, name: str, text: str) -> str:
    path = unit_dir / name
    path.write_text(text.replace("/opt/uptimewatch/bin/uptimewatch", str(VENV_BIN / "uptimewatch")))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return "\n".join(line for line in (result.stdout + result.stderr).splitlines() if name in line)


def test_an_instance_of_the_template_verifies_clean(tmp_path: Path) -> None:
    assert _verify(tmp_path, "uptimewatch@n1.service", TEMPLATE.read_text()) == ""


def test_the_template_is_the_single_unit_but_for_the_per_node_lines() -> None:
    single, template = directives(SINGLE.read_text()), directives(TEMPLATE.read_text())
    assert {k: template.get(k) for k in PER_NODE} == PER_NODE
    for key, value in single.items():
        if key not in PER_NODE and key != "Environment":  # Environment= repeats: checked below
            assert template.get(key) == value, key
    assert set(template) - set(single) == {"EnvironmentFile"}
    text = TEMPLATE.read_text()
    assert "Environment=UPTIMEWATCH_NODE=%i" in text
    for line in SINGLE.read_text().splitlines():
        if line.startswith("Environment="):
            assert line in text


def test_the_nats_unit_verifies_clean(tmp_path: Path) -> None:
    if not Path("/usr/sbin/nats-server").exists():
        pytest.skip("nats-server (Debian package, in the Makefile) is not installed")
    assert _verify(tmp_path, "uptimewatch-nats.service", NATS_UNIT.read_text()) == ""


def test_nats_server_accepts_the_example_cluster_config() -> None:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        pytest.skip("nats-server (Debian package, in the Makefile) is not installed")
    env = {**os.environ, "NATS_NAME": "nats-a", "NATS_CLIENT_PASSWORD": "s3cret"}
    ok = subprocess.run(
        [binary, "-t", "-c", str(NATS_CONF)], capture_output=True, text=True, env=env, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_nats_server_would_notice_a_broken_config(tmp_path: Path) -> None:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        pytest.skip("nats-server (Debian package, in the Makefile) is not installed")
    env = {**os.environ, "NATS_NAME": "nats-a", "NATS_CLIENT_PASSWORD": "s3cret"}
    path = tmp_path / "broken.conf"
    path.write_text(NATS_CONF.read_text().replace("max_file_store: 8GB", "max_file_store: [8GB", 1))
    result = subprocess.run(
        [binary, "-t", "-c", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode != 0


def test_a_config_for_the_template_names_the_node_from_the_environment(tmp_path: Path) -> None:
    """The shape docs/cluster.md shows: one file for every node, the instance name from the unit."""
    config = {
        "province": {"id": "p", "name": "P"},
        "server": {"listen": "127.0.0.1:${UPTIMEWATCH_PORT:-9847}"},
        "districts": [{"id": "d1", "name": "D1", "communes": [{"id": "c1", "name": "C1"}]}],
        "carriers": [{"id": "vnpt", "name": "VNPT"}],
        "sites": [
            {
                "id": "s1",
                "name": "S1",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
            }
        ],
        "cluster": {
            "node_id": "${UPTIMEWATCH_NODE}",
            "url": "http://127.0.0.1:${UPTIMEWATCH_PORT:-9847}",
            "nats": {"servers": ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [str(VENV_BIN / "uptimewatch"), "check-config", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTIMEWATCH_")}
    ok = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=60, env={**env, "UPTIMEWATCH_NODE": "n2"}
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60, env=env)
    assert missing.returncode == 1
    assert "UPTIMEWATCH_NODE" in missing.stderr + missing.stdout
