"""Configuration loading: file:line errors for every rule, secrets, the defaults cascade, check-config.

Each validation rule has its own ``tests/data/invalid-*.yaml``; the file's ``# expect:`` header lines
are the exact issues ``load_config`` must report (a message may be cut short where it names a
machine-specific path).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from uptimewatch.config.loader import ConfigError, ConfigIssue, LoadedConfig, load_config
from uptimewatch.config.models import AuthProtocol, PrivProtocol, SnmpVersion
from uptimewatch.config.reference import generate

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = REPO / "config.example.yaml"
INVALID = sorted(DATA.glob("invalid-*.yaml"))
EXPECT = re.compile(r"^(?P<file>[^:\s]+):(?:(?P<line>\d+):)? (?:(?P<field>[^\s:]+): )?(?P<message>.+)$")
KNOWN_PROFILES = {"invalid-unknown-profile.yaml": ("huawei-bbu5900", "vertiv-netsure")}

# every rule that must have an invalid example; a missing file fails here rather than going unnoticed
REQUIRED_EXAMPLES = {
    "unknown-key",
    "unknown-key-no-match",
    "wrong-type",
    "snmp-version",
    "duration",
    "missing-required",
    "id-pattern",
    "duplicate-site",
    "duplicate-device",
    "duplicate-carrier",
    "duplicate-district",
    "duplicate-commune",
    "dangling-district",
    "dangling-commune",
    "dangling-carrier",
    "dangling-upstream",
    "upstream-self",
    "upstream-cycle",
    "v3-no-user",
    "v3-priv-without-auth",
    "missing-env",
    "unreadable-file",
    "secret-twice",
    "duplicate-key",
    "yaml-syntax",
    "listen",
    "listen-host",
    "cluster-timeouts",
    "cluster-quorum",
    "unknown-profile",
    "not-mapping",
    "several",
    "alias-bomb",
    "recursive-alias",
    "nesting-depth",
    "number-too-long",
    "number-out-of-range",
}

SECRETS = {
    "community": "comm-Xq7-inline",
    "community_file": "comm-Zk2-from-file",
    "auth_key": "auth-Pw9-from-env",
    "priv_key": "priv-Rt4-from-file",
}


def _base(sites: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "province": {"id": "hoa-binh", "name": "Tỉnh Hòa Bình"},
        **extra,
        "carriers": [{"id": "vnpt", "name": "VNPT"}, {"id": "viettel", "name": "Viettel"}],
        "districts": [
            {
                "id": "mai-chau",
                "name": "Huyện Mai Châu",
                "communes": [{"id": "pa-co", "name": "Xã Pà Cò"}],
            },
            {"id": "lac-son", "name": "Huyện Lạc Sơn"},
        ],
        "sites": sites,
    }


def _write(path: Path, data: dict[str, Any] | str) -> Path:
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _device(did: str = "bts", **extra: Any) -> dict[str, Any]:
    return {"id": did, "role": "bts", "address": "127.0.0.1", **extra}


def _site(sid: str = "s1", district: str = "mai-chau", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "name": f"Trạm {sid}", "district": district, "carrier": "vnpt", **extra}


def _issues(path: Path, **kwargs: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return caught.value.issues


def _expectations(path: Path) -> list[str]:
    prefix = "# expect: "
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


@pytest.fixture
def example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The secrets config.example.yaml reads from outside itself, in a directory of the test's."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hub-maichau-auth.key").write_text("hub-auth-Kf3-example\n\n", encoding="utf-8")
    (secrets / "hub-maichau-priv.key").write_text("hub-priv-Mm8-example\n", encoding="utf-8")
    env = {"UPTIMEWATCH_SECRETS_DIR": str(secrets), "UPTIMEWATCH_SNMP_COMMUNITY": "community-Qz4-example"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


# --- every rule has an invalid example with its exact issues ------------------------------------


def test_every_rule_has_an_invalid_example() -> None:
    present = {p.name.removeprefix("invalid-").removesuffix(".yaml") for p in INVALID}
    assert present >= REQUIRED_EXAMPLES, sorted(REQUIRED_EXAMPLES - present)


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example_reports_expected_issues(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPTIMEWATCH_TEST_NEVER_SET", raising=False)
    expected = _expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    issues = _issues(path, known_profiles=KNOWN_PROFILES.get(path.name))
    # exactly the expected issues: no echo of one problem as a second, confusing one
    assert len(issues) == len(expected), "\n".join(map(str, issues))
    for want, issue in zip(expected, issues, strict=True):
        m = EXPECT.match(want)
        assert m is not None, want
        assert Path(issue.file).name == m["file"] == path.name
        assert issue.line == (int(m["line"]) if m["line"] else None)
        assert issue.field == (m["field"] or "")
        assert issue.message.startswith(m["message"]), (issue.message, m["message"])


def test_several_errors_in_one_file_are_all_reported_in_line_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("UPTIMEWATCH_TEST_NEVER_SET", raising=False)
    issues = _issues(DATA / "invalid-several.yaml")
    fields = {i.field.rsplit(".", 1)[-1] for i in issues}
    # schema errors, an unset variable and cross-reference errors, all from one pass
    assert {"listen", "carrier", "comunity", "port", "user", "interval", "upstream"} <= fields
    lines = [i.line for i in issues]
    assert lines == sorted(lines)  # type: ignore[type-var]


def test_unknown_key_anywhere_gets_a_suggestion(tmp_path: Path) -> None:
    data = _base([_site(devices=[_device(thresholds={"rtt_ms_warnng": 10})])])
    data["sheduler"] = {"max_concurrency": 10}
    issues = _issues(_write(tmp_path / "c.yaml", data))
    messages = sorted(i.message for i in issues)
    assert messages == [
        "unknown key 'rtt_ms_warnng' (did you mean 'rtt_ms_warning'?)",
        "unknown key 'sheduler' (did you mean 'scheduler'?)",
    ]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    (issue,) = _issues(tmp_path / "absent.yaml")
    assert issue.line is None
    assert "cannot read the configuration" in issue.message
    assert str(issue).startswith(f"{tmp_path / 'absent.yaml'}: ")


def test_issue_format() -> None:
    assert str(ConfigIssue("c.yaml", 12, 5, "sites[s1].id", "bad")) == "c.yaml:12: sites[s1].id: bad"
    assert str(ConfigIssue("c.yaml", None, None, "", "empty")) == "c.yaml: empty"
    error = ConfigError([ConfigIssue("c.yaml", 1, 1, "a", "x"), ConfigIssue("c.yaml", 2, 1, "b", "y")])
    assert str(error) == "c.yaml:1: a: x\nc.yaml:2: b: y"


# --- the example configuration -------------------------------------------------------------


def test_example_config_loads(example_env: dict[str, str]) -> None:
    loaded = load_config(EXAMPLE)
    assert isinstance(loaded, LoadedConfig)
    config = loaded.config
    assert config.province.name == "Tỉnh Hòa Bình"
    assert [c.id for c in config.carriers] == ["vnpt", "viettel"]
    assert [d.name for d in config.districts] == ["Huyện Mai Châu", "Huyện Lạc Sơn"]
    assert sum(len(d.communes) for d in config.districts) == 4
    assert len(config.sites) == 4
    assert {d.role.value for d in loaded.devices} == {"bts", "power", "link", "router"}
    assert loaded.digest == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert loaded.source == EXAMPLE
    # nothing in the example may point at a real network
    assert all(d.address.startswith("127.") for d in loaded.devices)
    assert config.server.listen.startswith("127.")

    by_key = {d.key: d for d in loaded.devices}
    router = by_key["hub-maichau", "router"]
    assert router.snmp is not None
    assert router.snmp.version is SnmpVersion.V3
    assert router.snmp.security_level == "authPriv"
    assert router.snmp.auth_protocol is AuthProtocol.SHA256
    assert router.snmp.priv_protocol is PrivProtocol.AES
    assert router.snmp.auth_key is not None
    assert router.snmp.priv_key is not None
    assert router.snmp.auth_key.get_secret_value() == "hub-auth-Kf3-example"  # trailing newlines trimmed
    assert router.snmp.priv_key.get_secret_value() == "hub-priv-Mm8-example"
    ups = by_key["bts-paco-01", "ups"]
    assert ups.snmp is not None
    assert ups.snmp.community is not None
    assert ups.snmp.community.get_secret_value() == example_env["UPTIMEWATCH_SNMP_COMMUNITY"]
    assert router.interval == 30.0
    assert router.hard_after == 2
    assert router.icmp is not None
    assert router.icmp.timeout == 2.0

    assert [s.upstream for s in config.sites if s.id == "bts-paco-01"] == [["hub-maichau"]]
    ups = by_key["bts-paco-01", "ups"]
    assert ups.snmp is not None
    assert ups.snmp.version is SnmpVersion.V1
    assert ups.snmp.timeout == 3.0
    assert by_key["bts-vuban-01", "bts"].interval == 120.0  # district defaults: 2m
    assert by_key["bts-vuban-01", "fibre"].interval == 30.0  # the device's own
    icmp_only = by_key["bts-annghia-01", "bts"]
    assert icmp_only.snmp is None
    assert icmp_only.icmp is not None
    assert icmp_only.icmp.count == 5
    assert by_key["hub-maichau", "rectifier"].thresholds.on_battery == "critical"


def test_example_config_needs_its_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UPTIMEWATCH_SECRETS_DIR", str(tmp_path / "empty"))
    issues = _issues(EXAMPLE)
    assert [(i.field, i.message.split(" '")[0]) for i in issues] == [
        ("sites[hub-maichau].devices[router].snmp.auth_key_file", "cannot read auth_key_file"),
        ("sites[hub-maichau].devices[router].snmp.priv_key_file", "cannot read priv_key_file"),
    ]


def test_example_config_teaches_secret_files_and_environment() -> None:
    """The example shows both ways in: a ``*_file`` secret and a ``${ENV}`` reference."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert re.search(r"^\s+\w+_key_file: \$\{UPTIMEWATCH_SECRETS_DIR:-secrets\}/", text, re.MULTILINE)
    assert re.search(r"^\s+community: \$\{UPTIMEWATCH_\w+:-public\}", text, re.MULTILINE)
    assert "${NAME}" in text  # the strict form, for a secret the daemon must not start without


def test_check_config_passes_on_a_fresh_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable set, run from elsewhere: the example checks with the placeholders beside it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTIMEWATCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # the example's province reads Vietnamese
    assert result.stdout.strip() == "Hợp lệ: 4 trạm, 9 thiết bị, 2 huyện, 2 nhà mạng"
    assert result.stderr == ""
    # the placeholders are what it read: no secret of a real deployment ships in the repository
    for key in [k for k in os.environ if k.startswith("UPTIMEWATCH_")]:
        monkeypatch.delenv(key)
    router = {d.key: d for d in load_config(EXAMPLE).devices}["hub-maichau", "router"]
    assert router.snmp is not None
    assert router.snmp.auth_key is not None
    assert router.snmp.auth_key.get_secret_value().startswith("placeholder-")


# --- environment, secret files, YAML details ---------------------------------------------------


def test_env_expansion_defaults_and_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UW_TEST_ADDR", "127.0.0.9")
    monkeypatch.delenv("UW_TEST_UNSET", raising=False)
    device = _device(address="${UW_TEST_ADDR}", name="cost $$5 ${UW_TEST_UNSET:-fallback}")
    device["snmp"] = {"port": "${UW_TEST_UNSET:-1161}"}
    loaded = load_config(_write(tmp_path / "c.yaml", _base([_site(devices=[device])])))
    (resolved,) = loaded.devices
    assert resolved.address == "127.0.0.9"
    assert resolved.name == "cost $5 fallback"
    assert resolved.snmp is not None
    assert resolved.snmp.port == 1161


def test_secret_file_is_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    (conf_dir / "secrets").mkdir(parents=True)
    (conf_dir / "secrets" / "community").write_text("  private-community \n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    device = _device(snmp={"community_file": "secrets/community"})
    loaded = load_config(_write(conf_dir / "c.yaml", _base([_site(devices=[device])])))
    (resolved,) = loaded.devices
    assert resolved.snmp is not None
    assert resolved.snmp.community is not None
    # leading whitespace may be part of a secret; only the trailing newline and spaces go
    assert resolved.snmp.community.get_secret_value() == "  private-community"


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "community").write_text("\n", encoding="utf-8")
    device = _device(snmp={"community_file": "community"})
    (issue,) = _issues(_write(tmp_path / "c.yaml", _base([_site(devices=[device])])))
    assert issue.field == "sites[s1].devices[bts].snmp.community_file"
    assert "is empty" in issue.message


def test_anchors_and_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """\
province: {id: p, name: Tỉnh Hòa Bình}
carriers: [{id: vnpt, name: VNPT}]
districts: [{id: d1, name: Huyện Mai Châu}]
sites:
  - id: s1
    name: Trạm
    district: d1
    carrier: vnpt
    devices:
      - &dev {id: a, role: bts, address: 127.0.0.1}
      # a mapping's own keys override merged ones: that is no duplicate key
      - {<<: *dev, id: b, address: 127.0.0.2}
"""
    loaded = load_config(_write(tmp_path / "c.yaml", text))
    assert [(d.device_id, d.address) for d in loaded.devices] == [("a", "127.0.0.1"), ("b", "127.0.0.2")]


def test_digest_follows_content(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", _base([_site(devices=[_device()])]))
    first = load_config(path).digest
    assert load_config(path).digest == first
    path.write_text(path.read_text(encoding="utf-8") + "# a comment changes the digest\n", encoding="utf-8")
    assert load_config(path).digest != first


# --- secrets never show ----------------------------------------------------------------------


def test_secrets_never_appear_in_dumps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "community").write_text(SECRETS["community_file"] + "\n", encoding="utf-8")
    (tmp_path / "priv").write_text(SECRETS["priv_key"], encoding="utf-8")
    monkeypatch.setenv("UW_TEST_AUTH", SECRETS["auth_key"])
    data = _base(
        [
            _site(
                defaults={"snmp": {"community_file": "community"}},
                devices=[
                    _device("a"),
                    _device("b", snmp={"community": SECRETS["community"]}),
                    _device(
                        "c",
                        snmp={
                            "version": 3,
                            "user": "monitor",
                            "auth_key": "${UW_TEST_AUTH}",
                            "priv_key_file": "priv",
                        },
                    ),
                ],
            )
        ]
    )
    loaded = load_config(_write(tmp_path / "c.yaml", data))
    by_id = {d.device_id: d for d in loaded.devices}
    # the values are really there, for the transport
    assert by_id["a"].snmp is not None
    assert by_id["a"].snmp.community is not None
    assert by_id["a"].snmp.community.get_secret_value() == SECRETS["community_file"]
    c = by_id["c"].snmp
    assert c is not None
    assert c.priv_key is not None
    assert c.priv_key.get_secret_value() == SECRETS["priv_key"]
    dumps = [
        repr(loaded),
        str(loaded),
        repr(loaded.config),
        str(loaded.config),
        loaded.config.model_dump_json(),
        str(loaded.config.model_dump()),
        *(repr(d) for d in loaded.devices),
        *(str(d) for d in loaded.devices),
    ]
    for dump in dumps:
        for secret in SECRETS.values():
            assert secret not in dump


def test_secrets_never_appear_in_error_messages(tmp_path: Path) -> None:
    device = _device(
        snmp={"version": 3, "user": "u", "auth_key": "short-1", "community": {"nested": "comm-Qq1-typed"}}
    )
    data = _base([_site(devices=[device, _device("d2", snmp={"auth_key": ["auth-Ll5-list"]})])])
    issues = _issues(_write(tmp_path / "c.yaml", data))
    text = "\n".join(map(str, issues))
    assert "community" in text
    assert "auth_key" in text
    for secret in ("short-1", "comm-Qq1-typed", "auth-Ll5-list"):
        assert secret not in text  # ...without their values


# --- the defaults cascade, field by field ------------------------------------------------------


def test_defaults_cascade_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site-community").write_text("site-community\n", encoding="utf-8")
    data = _base(
        [
            _site(
                "s1",
                defaults={
                    "hard_after": 4,
                    "snmp": {"timeout": "4s", "community_file": "site-community"},
                    "thresholds": {"rtt_ms_critical": 900},
                },
                devices=[
                    _device(
                        "own",
                        interval="15s",
                        snmp={"port": 1161},
                        icmp={"timeout": "500ms"},
                        thresholds={"rtt_ms_warning": 150},
                    ),
                    _device("plain"),
                ],
            ),
            _site("s2", district="lac-son", devices=[_device("other")]),
        ],
        defaults={
            "interval": "30s",
            "snmp": {"timeout": 3, "retries": 2, "community": "global-community"},
            "thresholds": {"rtt_ms_warning": 100},
        },
    )
    data["districts"][0]["defaults"] = {"interval": 45, "snmp": {"retries": 3}, "icmp": {"count": 5}}
    loaded = load_config(_write(tmp_path / "c.yaml", data))
    by_id = {d.device_id: d for d in loaded.devices}

    def view(device_id: str) -> dict[str, Any]:
        d = by_id[device_id]
        assert d.snmp is not None
        assert d.snmp.community is not None
        assert d.icmp is not None
        return {
            "interval": d.interval,
            "timeout": d.timeout,
            "hard_after": d.hard_after,
            "snmp.port": d.snmp.port,
            "snmp.timeout": d.snmp.timeout,
            "snmp.retries": d.snmp.retries,
            "snmp.community": d.snmp.community.get_secret_value(),
            "icmp.count": d.icmp.count,
            "icmp.timeout": d.icmp.timeout,
            "rtt_ms_warning": d.thresholds.rtt_ms_warning,
            "rtt_ms_critical": d.thresholds.rtt_ms_critical,
            "loss_ratio_warning": d.thresholds.loss_ratio_warning,
        }

    assert view("own") == {
        "interval": 15.0,  # device
        "timeout": 10.0,  # built-in
        "hard_after": 4,  # site
        "snmp.port": 1161,  # device
        "snmp.timeout": 4.0,  # site
        "snmp.retries": 3,  # district
        "snmp.community": "site-community",  # site, from a file, over the global inline one
        "icmp.count": 5,  # district
        "icmp.timeout": 0.5,  # device
        "rtt_ms_warning": 150.0,  # device
        "rtt_ms_critical": 900.0,  # site
        "loss_ratio_warning": 0.2,  # built-in
    }
    assert view("plain") == {
        **view("own"),
        "interval": 45.0,  # district
        "snmp.port": 161,  # built-in
        "icmp.timeout": 1.0,  # built-in
        "rtt_ms_warning": 100.0,  # global
    }
    assert view("other") == {
        "interval": 30.0,  # global
        "timeout": 10.0,
        "hard_after": 3,  # built-in
        "snmp.port": 161,
        "snmp.timeout": 3.0,  # global
        "snmp.retries": 2,  # global
        "snmp.community": "global-community",
        "icmp.count": 3,  # built-in
        "icmp.timeout": 1.0,
        "rtt_ms_warning": 100.0,
        "rtt_ms_critical": None,
        "loss_ratio_warning": 0.2,
    }


# --- the reference cannot drift -------------------------------------------------------------


def test_committed_reference_matches_the_models() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == generate(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python -m uptimewatch.config.reference > docs/configuration.md`"
    )


def test_reference_documents_every_field() -> None:
    from uptimewatch.config import models

    text = generate()
    for model in (models.Config, models.Site, models.Device, models.SnmpSettings, models.Thresholds):
        assert f"## {model.__name__}" in text
        for name, info in model.model_fields.items():
            assert f"| `{name}` |" in text
            assert info.description, f"{model.__name__}.{name} has no description"


# --- uptimewatch check-config ----------------------------------------------------------------


def _check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_check_config_ok(example_env: dict[str, str], tmp_path: Path) -> None:
    result = _check_config(EXAMPLE, example_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hợp lệ: 4 trạm, 9 thiết bị, 2 huyện, 2 nhà mạng"
    assert result.stderr == ""
    # the same file with an English-reading province
    english = tmp_path / "english.yaml"
    english.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("  language: vi ", "  language: en "), encoding="utf-8"
    )
    result = _check_config(english, example_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: 4 sites, 9 devices, 2 districts, 2 carriers"


def test_check_config_reports_every_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPTIMEWATCH_TEST_NEVER_SET", raising=False)
    path = DATA / "invalid-several.yaml"
    result = _check_config(path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = [f"{path}{want.removeprefix(path.name)}" for want in _expectations(path)]
    assert lines == expected


def _check_config_on(path: Path, stderr: int) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "uptimewatch.cli", "check-config", str(path)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=stderr, timeout=120, check=False)


def test_a_large_inventory_shows_progress_on_a_tty_and_nothing_on_a_pipe(tmp_path: Path) -> None:
    from uptimewatch.demo.province import generate_province

    province = generate_province(400)  # three devices a site: past the line's 1,000-device floor
    assert province.config["province"]["language"] == "vi"
    devices = sum(len(s["devices"]) for s in province.config["sites"])
    path = tmp_path / "large.yaml"
    path.write_text(yaml.safe_dump(province.config, allow_unicode=True), encoding="utf-8")

    piped = _check_config_on(path, subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    shown = f"{devices:,}".replace(",", ".")  # Vietnamese groups thousands with a dot
    assert piped.stdout.decode().startswith(f"Hợp lệ: 400 trạm, {shown} thiết bị, ")

    leader, follower = os.openpty()
    try:
        on_tty = _check_config_on(path, follower)
        os.close(follower)
        follower = -1
        written = b""
        while chunk := _read_pty(leader):
            written += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert on_tty.returncode == 0
    text = written.decode()
    assert f"\rĐang kiểm tra danh mục: {shown}/{shown} thiết bị (100%)" in text
    assert text.endswith("\n")
    assert on_tty.stdout == piped.stdout  # the summary on stdout is the same either way


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the other side is closed and drained
        return b""
