"""SNMPv3 privacy from a plain install: this checkout's wheel, installed with its declared
dependencies only (no test extras) in a fresh virtualenv that sees no other site-packages, polls
Debian's real snmpd as an authPriv (SHA/AES) user and reads its system group; with a wrong priv
key it gives the diagnosis of ``probing/v3diag.py``, not pysnmp's "Ciphering services not
available" (what a plain install said while ``cryptography`` sat in the test extra only).

pip resolves the dependencies from the package index, pinned to the versions of this test
environment (a constraints file from ``pip freeze``), so it fetches nothing new when they are
already at hand and never backtracks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.snmpd import AUTH_KEY, PRIV_KEY, Snmpd, user_name
from tests.fixtures.wheel import fresh_venv, pip_install
from uptimewatch.config.models import AuthProtocol, PrivProtocol

REPO = Path(__file__).resolve().parents[1]
USER = user_name(AuthProtocol.SHA, PrivProtocol.AES)  # created by the snmpd fixture's snmpd.conf
WRONG_PRIV_KEY = "wheel-not-the-priv-key"
#: in the test extra, never a dependency: a plain install must not have them
TEST_ONLY = ("pytest", "snmpsim", "pysmi", "playwright", "mypy")


@pytest.fixture(scope="module")
def plain_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The virtualenv's bin/ after ``pip install WHEEL``."""
    base = tmp_path_factory.mktemp("plain-install")
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pins = [
        line
        for line in freeze.stdout.splitlines()
        if "==" in line and not line.lower().startswith("uptimewatch==")
    ]
    constraints = base / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    python = fresh_venv(base / "venv")
    done = pip_install(python, "--constraint", str(constraints), str(wheel))
    assert done.returncode == 0, done.stdout + done.stderr
    return python.parent


def _run(bin_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=bin_dir.parent,  # not the checkout: nothing may come from ./src
        check=False,
    )


def test_plain_install_has_the_cipher_and_nothing_of_the_tests(plain_install: Path) -> None:
    venv = plain_install.parent.resolve()
    script = (
        "import importlib.util, json, sys\n"
        "import cryptography, uptimewatch\n"
        "from uptimewatch.config import capabilities\n"
        "print(json.dumps({\n"
        "    'path': sys.path,\n"
        "    'cryptography': cryptography.__file__,\n"
        "    'uptimewatch': uptimewatch.__file__,\n"
        f"    'test_only': [m for m in {TEST_ONLY!r} if importlib.util.find_spec(m)],\n"
        "    'missing': [capabilities.missing(c) for c in (capabilities.SNMPV3_PRIVACY,)],\n"
        "}))\n"
    )
    done = _run(plain_install, "python", "-c", script)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # its own site-packages only: not the test environment's, not Debian's dist-packages
    site = [p for p in found["path"] if "site-packages" in p or "dist-packages" in p]
    assert site, found["path"]
    assert all(Path(p).resolve().is_relative_to(venv) for p in site), found["path"]
    assert Path(found["cryptography"]).resolve().is_relative_to(venv)
    assert Path(found["uptimewatch"]).resolve().is_relative_to(venv)
    assert found["test_only"] == []
    assert found["missing"] == [None]


def test_plain_install_checks_the_example_config(plain_install: Path) -> None:
    """The shipped example asks for SNMPv3 privacy (the hub router): a plain install serves it."""
    done = _run(plain_install, "uptimewatch", "check-config", str(REPO / "config.example.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


def _probe(plain_install: Path, agent: Snmpd, priv_key: str) -> subprocess.CompletedProcess[str]:
    return _run(
        plain_install,
        "uptimewatch",
        "probe",
        f"{agent.host}:{agent.port}",
        "--snmp-version",
        "3",
        "--v3-user",
        USER,
        "--v3-auth-protocol",
        "SHA",
        "--v3-auth-key",
        AUTH_KEY,
        "--v3-priv-protocol",
        "AES",
        "--v3-priv-key",
        priv_key,
        "--timeout",
        "1",
        "--retries",
        "1",
        "--json",
    )


def test_plain_install_polls_snmpd_over_authpriv(plain_install: Path, snmpd: Snmpd) -> None:
    done = _probe(plain_install, snmpd, PRIV_KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    fields = json.loads(done.stdout)["fields"]
    assert fields["device.sys_object_id"] == "1.3.6.1.4.1.8072.3.2.10"  # net-snmp's Linux agent
    assert fields["device.sys_descr"].startswith("Linux ")
    assert fields["device.sys_name"]
    assert fields["device.uptime_seconds"] >= 0
    for secret in (AUTH_KEY, PRIV_KEY):
        assert secret not in done.stdout + done.stderr


def test_plain_install_diagnoses_a_wrong_priv_key(plain_install: Path, snmpd: Snmpd) -> None:
    done = _probe(plain_install, snmpd, WRONG_PRIV_KEY)
    assert done.returncode == 2, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "Ciphering" not in out
    # net-snmp drops a request it cannot decrypt without a report: v3diag words that case
    where = f"{snmpd.host}:{snmpd.port}"
    assert (
        f"{where}: the agent at {where} answers SNMPv3 discovery but not the request of user '{USER}': "
        "many agents silently drop requests with a wrong priv key"
    ) in done.stderr
    problems = json.loads(done.stdout)["problems"]
    assert any(p.startswith("SNMPv3: ") and "wrong priv key" in p for p in problems), problems
    for secret in (AUTH_KEY, PRIV_KEY, WRONG_PRIV_KEY):
        assert secret not in out
