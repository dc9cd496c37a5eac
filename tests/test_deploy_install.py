"""deploy/install.sh into a staged root: a real virtualenv, config, unit and shared files; nothing in /.

The ``wheel`` fixture (tests/fixtures/wheel.py) builds this checkout's wheel once per session."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

import uptimewatch

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "deploy" / "install.sh"


def install(root: Path, wheel: Path, *, via_destdir: bool = False) -> subprocess.CompletedProcess[str]:
    # No index: the dependencies are not what is under test, and tests do not download.
    env = {**os.environ, "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("DESTDIR", None)
    args = ["sh", str(INSTALL), "--from", str(wheel), "--python", "/usr/bin/python3"]
    if via_destdir:
        env["DESTDIR"] = str(root)
    else:
        args += ["--root", str(root)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, check=False)


def group_id(root: Path, name: str) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    raise AssertionError(f"group {name} not in {root}/etc/group")


def test_install_and_upgrade(tmp_path: Path, wheel: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("install.sh is tested with Debian's /usr/bin/python3, which is missing")
    etc_before = Path("/etc/uptimewatch").exists()
    root = tmp_path / "root"

    first = install(root, wheel)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"uptimewatch {uptimewatch.__version__}" in first.stdout

    # the virtualenv works on its own
    prefix = root / "opt" / "uptimewatch"
    version = subprocess.run(
        [str(prefix / "bin" / "uptimewatch"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.strip() == f"uptimewatch {uptimewatch.__version__}"

    # config from the example, readable by the service's group only
    config = root / "etc" / "uptimewatch" / "config.yaml"
    assert config.read_bytes() == (REPO / "config.example.yaml").read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE((config.parent / "secrets").stat().st_mode) == 0o750
    if os.geteuid() == 0:
        gid = group_id(root, "uptimewatch-config")
        assert config.stat().st_gid == gid
        assert (config.parent / "secrets").stat().st_gid == gid

    unit = root / "etc" / "systemd" / "system" / "uptimewatch.service"
    assert unit.read_text() == (REPO / "deploy" / "systemd" / "uptimewatch.service").read_text()
    assert (root / "usr" / "lib" / "sysusers.d" / "uptimewatch.conf").exists()

    share = prefix / "share" / "uptimewatch"
    # where deploy/grafana/provisioning/dashboards/uptimewatch.yaml looks for them
    installed_dashboards = root / "opt/uptimewatch/share/uptimewatch/grafana/dashboards"
    assert sorted(p.name for p in installed_dashboards.glob("*.json")) == sorted(
        p.name for p in (REPO / "deploy" / "grafana" / "dashboards").glob("*.json")
    )
    assert (share / "prometheus" / "alerting_rules.yml").exists()
    assert (share / "alertmanager" / "alertmanager.yml").exists()

    # Again, through DESTDIR: upgrades in place and never touches an edited config.
    config.write_text("# edited by the operator\n")
    second = install(root, wheel, via_destdir=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "keeping existing" in second.stdout
    assert config.read_text() == "# edited by the operator\n"
    assert "creating virtualenv" not in second.stdout

    assert Path("/etc/uptimewatch").exists() == etc_before, "install --root wrote to the real /etc"


def test_refuses_unknown_arguments(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(INSTALL), "--root", str(tmp_path), "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown argument: --frobnicate" in result.stderr
    assert "Usage:" in result.stderr
    assert not (tmp_path / "opt").exists()


def test_wheel_carries_the_catalogs(wheel: Path) -> None:
    """The gettext catalogs are package data: a plain wheel renders Vietnamese."""
    import zipfile

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    for language in ("vi", "en"):
        for domain in ("uptimewatch", "status"):
            assert f"uptimewatch/locale/{language}/LC_MESSAGES/{domain}.po" in names
