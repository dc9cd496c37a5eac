"""A configuration that asks for what this installation cannot serve is refused once, at load, with
the device, the file, the line and the command that fixes it: by ``check-config``, at the daemon's
start and on reload, not at every poll. The missing package is simulated for real: a
``sitecustomize`` on PYTHONPATH makes ``import cryptography`` (or ``weasyprint``) fail in the
subprocess, as it fails where the package was never installed."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml
from uptimewatch.app import run_daemon
from uptimewatch.config import capabilities
from uptimewatch.config.loader import CAPABILITY_EXAMPLES, ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
AUTH_KEY = "capab-auth-Zq81x"
PRIV_KEY = "capab-priv-Wm47k"
#: parts of the daemon a package provides only when an extra is installed, and how the code that
#: imports them says what is missing: nothing else imported at run time may come from an extra
OPTIONAL_IMPORTS = {
    "weasyprint": "pdf",  # report --format pdf: capabilities.PDF says what to install
    "uvloop": "fast",  # event_loop.py falls back to asyncio's loop; UPTIMEWATCH_EVENT_LOOP=uvloop says
}


def _hide(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python cannot import ``modules``, as if they were not installed."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    hidden = ", ".join(repr(m) for m in modules)
    (shim / "sitecustomize.py").write_text(
        f"import sys\nfor _name in ({hidden},):\n    sys.modules[_name] = None  # ImportError on import\n",
        encoding="utf-8",
    )
    return {**os.environ, "PYTHONPATH": str(shim), "PYTHONUNBUFFERED": "1"}


def _uptimewatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _device(device_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": device_id, "role": "router", "address": "127.0.0.1", **extra}


def _site(site_id: str, *devices: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": site_id,
        "name": f"Trạm {site_id}",
        "district": "d1",
        "commune": "c1",
        "carrier": "vnpt",
        "devices": list(devices),
    }


V3_PRIV = {"version": 3, "user": "monitor", "auth_key": AUTH_KEY, "priv_key": PRIV_KEY}


def _config(tmp_path: Path, sites: list[dict[str, Any]], **extra: Any) -> Path:
    listen = f"127.0.0.1:{free_tcp_port()}"
    data = province_config(sites, listen=listen, defaults={"interval": "30s"})
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    data.update(extra)
    return write_yaml(tmp_path / "config.yaml", data)


def _mixed(tmp_path: Path) -> Path:
    """One device with its own authPriv block, one that inherits it from its site's defaults, one
    authNoPriv and one v2c: only the first two need a cipher."""
    inherits = _site("s2", _device("r2"))
    inherits["defaults"] = {"snmp": {**V3_PRIV, "priv_protocol": "AES256"}}
    sites = [
        _site("s1", _device("r1", snmp={**V3_PRIV, "priv_protocol": "AES"})),
        inherits,
        _site("s3", _device("r3", snmp={"version": 3, "user": "monitor", "auth_key": AUTH_KEY})),
        _site("s4", _device("r4", snmp={"version": "2c", "community": "capab-community"})),
    ]
    return _config(tmp_path, sites)


def _line_of(path: Path, pattern: str, after: str | None = None) -> int:
    """1-based line of the first line matching ``pattern`` (after the first matching ``after``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, text in enumerate(lines) if re.search(after, text)) if after else 0
    return next(i for i in range(start, len(lines)) if re.search(pattern, lines[i])) + 1


def _assert_no_secret(text: str) -> None:
    for secret in (AUTH_KEY, PRIV_KEY, "capab-community"):
        assert secret not in text


def test_check_config_names_each_device_that_needs_the_missing_cipher(tmp_path: Path) -> None:
    path = _mixed(tmp_path)
    done = _uptimewatch("check-config", str(path), env=_hide(tmp_path, "cryptography"))
    assert done.returncode == 1, done.stdout + done.stderr
    issues = done.stderr.strip().splitlines()
    assert len(issues) == 2, done.stderr
    own = _line_of(path, r"priv_key:", after=r"- id: r1")
    inherited = _line_of(path, r"- id: r2")  # its keys come from the site's defaults
    assert issues[0].startswith(
        f"{path}:{own}: sites[s1].devices[r1].snmp.priv_key: device 's1/r1': SNMPv3 privacy "
        "(priv_key, AES) needs the Python package 'cryptography', which this installation cannot use "
        "(import of cryptography halted; None in sys.modules): "
        f"{sys.executable} -m pip install 'cryptography>=47'"
    ), issues[0]
    assert issues[1].startswith(
        f"{path}:{inherited}: sites[s2].devices[r2]: device 's2/r2': SNMPv3 privacy (priv_key, AES256) "
    ), issues[1]
    assert "Ciphering" not in done.stderr
    _assert_no_secret(done.stdout + done.stderr)

    # the same file, where cryptography imports: valid
    fine = _uptimewatch("check-config", str(path))
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout.startswith("OK: 4 sites, 4 devices")


def test_daemon_refuses_to_start_without_the_cipher(tmp_path: Path) -> None:
    path = _mixed(tmp_path)
    done = _uptimewatch("run", "-c", str(path), env=_hide(tmp_path, "cryptography"), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    # the SNMP poller itself (probing/usm.py) imports cryptography: without it the daemon cannot
    # start at all, and says so in one line with the cure
    assert "Traceback" not in done.stderr, done.stderr
    assert "cryptography" in done.stderr
    assert f"{sys.executable} -m pip install 'cryptography>=47'" in done.stderr
    assert "listening on" not in done.stdout  # refused before anything was opened
    assert not (tmp_path / "state.sqlite").exists()
    _assert_no_secret(done.stdout + done.stderr)


def test_probe_says_what_to_install_instead_of_ciphering_services(tmp_path: Path) -> None:
    # refused before any packet: the port answers nothing, and no answer is waited for
    done = _uptimewatch(
        "probe",
        "127.0.0.1:9",
        "-v",
        "3",
        "--v3-user",
        "monitor",
        "--v3-auth-key",
        AUTH_KEY,
        "--v3-priv-key",
        PRIV_KEY,
        env=_hide(tmp_path, "cryptography"),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(
        "uptimewatch probe: SNMPv3 privacy needs the Python package 'cryptography'"
    ), done.stderr
    assert f"{sys.executable} -m pip install 'cryptography>=47'" in done.stderr
    assert "Ciphering" not in done.stderr
    _assert_no_secret(done.stdout + done.stderr)


def test_pdf_report_says_what_to_install_before_reading_the_ledger(tmp_path: Path) -> None:
    path = _config(tmp_path, [_site("s1", _device("r1", snmp_enabled=False))])
    out = tmp_path / "report.pdf"
    done = _uptimewatch(
        "report", "-c", str(path), "--format", "pdf", "-o", str(out), env=_hide(tmp_path, "weasyprint")
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(
        "uptimewatch report: PDF reports (report --format pdf) needs the Python package 'weasyprint'"
    ), done.stderr
    assert f"{sys.executable} -m pip install 'weasyprint>=68' (the 'pdf' extra of uptimewatch)" in done.stderr
    assert "no such file" not in done.stderr.lower()  # no ledger was looked for
    assert not out.exists()


# --- in process: the same check on load and reload --------------------------------------------


@pytest.fixture
def no_cryptography(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``import cryptography`` fails in this process while the test runs (the probe's answer is
    cached per process, so it is forgotten before and after)."""
    capabilities.unavailable.cache_clear()
    monkeypatch.setitem(sys.modules, "cryptography", None)
    yield
    monkeypatch.undo()
    capabilities.unavailable.cache_clear()


@pytest.mark.usefixtures("no_cryptography")
def test_many_devices_are_named_up_to_a_limit_then_counted(tmp_path: Path) -> None:
    count = CAPABILITY_EXAMPLES + 25
    sites = [_site(f"s{i}", _device("r", snmp=V3_PRIV)) for i in range(count)]
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, sites))
    issues = caught.value.issues
    assert len(issues) == CAPABILITY_EXAMPLES + 1
    assert [i.field for i in issues[:-1]] == [
        f"sites[s{i}].devices[r].snmp.priv_key" for i in range(CAPABILITY_EXAMPLES)
    ]
    last = issues[-1]
    assert last.field == f"sites[s{CAPABILITY_EXAMPLES}].devices[r].snmp.priv_key"
    assert last.message == (
        "and 25 more from here on ask for SNMPv3 privacy, which this installation cannot serve (see above)"
    )
    lines = [i.line for i in issues]
    assert all(line is not None for line in lines)
    assert lines == sorted(lines)  # type: ignore[type-var]


@pytest.mark.usefixtures("no_cryptography")
def test_trap_receiver_users_with_privacy_need_the_cipher_too(tmp_path: Path) -> None:
    traps = {
        "enabled": True,
        "listen": "127.0.0.1:9162",
        "v3_users": [
            {"user": "trapper", "auth_key": AUTH_KEY},
            {"user": "secret-trapper", "auth_key": AUTH_KEY, "priv_key": PRIV_KEY, "priv_protocol": "DES"},
        ],
    }
    path = _config(tmp_path, [_site("s1", _device("r1", snmp_enabled=False))], traps=traps)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (issue,) = caught.value.issues
    assert issue.field == "traps.v3_users[1].priv_key"
    assert issue.line == _line_of(path, r"priv_key:", after=r"user: secret-trapper")
    assert issue.message.startswith(
        "trap user 'secret-trapper': SNMPv3 privacy (priv_key, DES) needs the Python package 'cryptography'"
    )
    # a receiver that is off asks for nothing
    traps["enabled"] = False
    load_config(_config(tmp_path, [_site("s1", _device("r1", snmp_enabled=False))], traps=traps))


async def test_reload_that_asks_for_the_missing_cipher_keeps_the_old_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = [_site("s1", _device("r1", snmp_enabled=False))]
    path = _config(tmp_path, plain)
    listen = f"127.0.0.1:{free_tcp_port()}"
    try:
        async with run_daemon(path, listen) as daemon, aiohttp.ClientSession() as http:
            capabilities.unavailable.cache_clear()
            monkeypatch.setitem(sys.modules, "cryptography", None)
            _config(tmp_path, [*plain, _site("s2", _device("r2", snmp=V3_PRIV))])
            async with http.post(daemon.url + "/-/reload") as resp:
                status, answer = resp.status, json.loads(await resp.text())
            assert status == 400, answer
            text = json.dumps(answer)
            assert "device 's2/r2': SNMPv3 privacy (priv_key, AES) needs the Python package" in text
            _assert_no_secret(text)
            async with http.get(daemon.url + "/api/v1/sites") as resp:
                sites = sorted(s["id"] for s in (await resp.json())["sites"])
            assert sites == ["s1"]
            async with http.get(daemon.url + "/metrics") as resp:
                metrics = await resp.text()
            assert "uptimewatch_config_last_reload_successful 0.0" in metrics
    finally:
        monkeypatch.undo()
        capabilities.unavailable.cache_clear()


# --- what the package declares ------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return _canonical(match.group(1))


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require at run time (no extras), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.partition(";")[2]]
    return seen


def _imported_top_levels() -> dict[str, Path]:
    """Every absolute top-level module src/uptimewatch imports, lazily or not, and one file that does."""
    found: dict[str, Path] = {}
    for file in sorted((REPO / "src" / "uptimewatch").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], file)
    return found


def test_every_package_imported_at_run_time_is_a_runtime_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = _closure({_name(r) for r in project["dependencies"]})
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    providers = importlib.metadata.packages_distributions()
    unlisted = []
    for module, where in _imported_top_levels().items():
        if module in sys.stdlib_module_names or module in ("uptimewatch", "__future__"):
            continue
        dists = {_canonical(d) for d in providers.get(module, [module])}
        if dists & runtime:
            continue
        extra = OPTIONAL_IMPORTS.get(module)
        if extra is not None and dists & extras[extra]:
            continue
        unlisted.append(f"{module} ({', '.join(sorted(dists))}) imported by {where.relative_to(REPO)}")
    assert not unlisted, "imported at run time but not in [project] dependencies:\n" + "\n".join(unlisted)

    # the capabilities name the packages where pyproject.toml puts them
    assert _canonical(capabilities.SNMPV3_PRIVACY.package) in {_name(r) for r in project["dependencies"]}
    assert _canonical(capabilities.PDF.package) in extras["pdf"]
    assert "cryptography" not in extras["test"], "a runtime dependency, not a test one"


def test_this_installation_serves_every_capability() -> None:
    """The test environment has everything (`make .venv/.installed` installs the pdf extra)."""
    capabilities.unavailable.cache_clear()
    assert capabilities.missing(capabilities.SNMPV3_PRIVACY) is None
    assert capabilities.missing(capabilities.PDF) is None
