"""deploy/systemd/uptimewatch.service: systemd accepts it, and its hardening does not break the daemon."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "deploy" / "systemd" / "uptimewatch.service"
VENV_BIN = Path(sys.executable).parent


def directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd, in the Makefile)")
    return path


def verify(unit_dir: Path, name: str = "uptimewatch.service") -> str:
    """systemd-analyze verify on a copy whose ExecStart names this venv's uptimewatch (it must exist)."""
    text = UNIT.read_text()
    text = text.replace("ExecStart=/opt/uptimewatch/bin/uptimewatch", f"ExecStart={VENV_BIN / 'uptimewatch'}")
    path = unit_dir / name
    path.write_text(text)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Other units on the host may draw remarks; only lines about ours count.
    return "\n".join(
        line for line in (result.stdout + result.stderr).splitlines() if name in line or str(path) in line
    )


def test_unit_verifies_clean(tmp_path: Path) -> None:
    assert (VENV_BIN / "uptimewatch").exists()
    assert verify(tmp_path) == ""


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=", 1)
    text = text.replace("ExecStart=/opt/uptimewatch/bin/uptimewatch", f"ExecStart={VENV_BIN / 'uptimewatch'}")
    (tmp_path / "broken.service").write_text(text)
    result = subprocess.run(
        [systemd_analyze(), "verify", str(tmp_path / "broken.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown key 'WatchdogSecs'" in result.stdout + result.stderr


def test_exposure_score(tmp_path: Path) -> None:
    """systemd's own rating of the sandbox: 1.9 today; fail if a change loosens it past 2.5 ("OK")."""
    verify(tmp_path)
    result = subprocess.run(
        [
            systemd_analyze(),
            "security",
            "--offline=yes",
            "--threshold=25",
            str(tmp_path / "uptimewatch.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_settings() -> None:
    d = directives(UNIT.read_text())
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "ExecStart": "/opt/uptimewatch/bin/uptimewatch run -c /etc/uptimewatch/config.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "RestartSec": "5",
        "StartLimitIntervalSec": "0",
        "DynamicUser": "yes",
        "StateDirectory": "uptimewatch",
        "ConfigurationDirectory": "uptimewatch",
        "AmbientCapabilities": "CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_RAW CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallFilter": "@system-service",
        "UMask": "0077",
        "LimitNOFILE": "65536",
    }
    assert {k: d.get(k) for k in expected} == expected
    # A user namespace makes CAP_NET_RAW worthless on the host network; a private network has no
    # devices in it. Both must stay out (the unit's comments say why).
    assert "PrivateUsers" not in d
    assert "PrivateNetwork" not in d
    text = UNIT.read_text()
    assert "StartLimitIntervalSec=0" in text.split("[Service]")[0], "belongs in [Unit]"


_MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, mmap, sys
    if sys.argv[1] == "hardened":
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            sys.exit("W+X memory still allowed: the restriction is not in force")
        except OSError:
            pass

    # What the daemon loads and runs: its dependencies' C extensions and SNMPv3 privacy ciphers.
    import asyncio, aiohttp, aiohttp.web, aiomqtt, icmplib, prometheus_client, pydantic, yaml
    import pysnmp.hlapi.v3arch.asyncio
    from pysnmp.proto.secmod.rfc3414.auth import hmacsha
    from pysnmp.proto.secmod.rfc3826.priv import aes
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pyasn1.type.univ import OctetString
    for cipher in (aes.Aes(), des.Des()):
        key = cipher.localize_key(hmacsha.HmacSha.SERVICE_ID,
                                  cipher.hash_passphrase(hmacsha.HmacSha.SERVICE_ID, b"privpass123"),
                                  OctetString(b"\\x80\\x00\\x1f\\x88\\x04test"))
        data, salt = cipher.encrypt_data(key, (1, 2, b"\\x00" * 8), b"x" * 64)
        assert cipher.decrypt_data(key, (1, 2, salt), data).startswith(b"x" * 64), cipher
    pydantic.TypeAdapter(list[int]).validate_python(["1", 2])
    yaml.load("a: [1, 2]", Loader=yaml.CSafeLoader)
    from aiohttp import http_parser
    assert http_parser.HttpRequestParser is not http_parser.HttpRequestParserPy  # the C parser
    import prometheus_client.process_collector

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(1) == 2

    import importlib, pkgutil, uptimewatch
    failed = []
    for mod in pkgutil.walk_packages(uptimewatch.__path__, "uptimewatch."):
        try:
            importlib.import_module(mod.name)
        except Exception as exc:
            failed.append(f"{mod.name}: {type(exc).__name__}")
    print("\\n".join(failed))
    """
)


def test_memory_deny_write_execute_keeps_the_daemon_working() -> None:
    """MemoryDenyWriteExecute=yes refuses memory both writable and executable. CPython, ctypes,
    cffi's compiled modules (cryptography) and the C extensions we use never need it; cffi's
    ABI-mode callbacks would. The kernel's PR_SET_MDWE (Linux 6.3+) enforces the same rule systemd
    does, so run the daemon's imports and SNMPv3 ciphers under it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3): cannot emulate MemoryDenyWriteExecute")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    free, hardened = (
        subprocess.run(
            [sys.executable, "-c", _MDWE_PROBE, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        for mode in ("free", "hardened")
    )
    assert free.returncode == 0, free.stderr[-3000:]
    assert hardened.returncode == 0, hardened.stderr[-3000:]
    # uptimewatch modules that fail to import even without the restriction are not its doing
    assert hardened.stdout == free.stdout
