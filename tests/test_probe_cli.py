"""``uptimewatch probe`` as a user runs it: a subprocess against snmpsim on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.snmpsim import V3_AUTH_KEY, V3_PRIV_KEY, V3_USER, SnmpsimEndpoint


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # the messages' language follows the locale: the tests fix it, whatever the machine's is
    base = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "probe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **(env or {})},
    )


def test_probe_json(snmpsim: SnmpsimEndpoint) -> None:
    done = run(snmpsim.address, "-c", "cetpower", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {"target", "profile", "fields", "problems"}
    assert doc["target"] == snmpsim.address
    assert doc["profile"] == "generic-host,ups-mib"
    fields = doc["fields"]
    assert fields["power.battery_minutes_remaining"] == 6000
    assert fields["power.battery_charge_percent"] == 100
    assert fields["power.battery_voltage_volts"] == 51.3
    assert fields["power.on_battery"] is False
    assert fields["power.mains_ok"] is True
    assert fields["power.source"] == "mains"
    assert "power.battery_temperature_celsius" in fields  # unknown fields are listed as null
    assert doc["problems"] == []
    assert "cetpower" not in done.stderr


def test_probe_table_with_explicit_profile(snmpsim: SnmpsimEndpoint) -> None:
    done = run(snmpsim.address, "-c", "netvision-rfc", "--profile", "ups-mib")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["target", snmpsim.address]
    assert lines[1].split() == ["profile", "generic-host,ups-mib"]
    rows = dict(line.split(None, 1) for line in lines[3:] if line.strip())
    assert rows["power.battery_minutes_remaining"] == "-"  # 65535: unknown
    assert rows["power.battery_voltage_volts"] == "217"
    assert rows["if.oper_up[2]"] == "true"
    # interfaces in index order, not string order
    names = [line.split()[0] for line in lines if line.startswith("if.oper_up[")]
    assert names == ["if.oper_up[1]", "if.oper_up[2]", "if.oper_up[3]", "if.oper_up[4]"]


def test_probe_snmpv3_never_prints_keys(snmpsim: SnmpsimEndpoint) -> None:
    done = run(
        snmpsim.address,
        "--v3-user",
        V3_USER,
        "--v3-auth-key",
        V3_AUTH_KEY,
        "--v3-priv-key",
        V3_PRIV_KEY,
        "--v3-context",
        "poweralert_2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["fields"]["power.alarm[22]"] == "battery_bad"
    for secret in (V3_AUTH_KEY, V3_PRIV_KEY):
        assert secret not in done.stdout + done.stderr


def test_no_answer_exits_2_with_one_line(snmpsim: SnmpsimEndpoint) -> None:
    done = run(snmpsim.address, "-c", "s3cret-wrong", "--timeout", "0.3", "--retries", "0", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"no answer from {snmpsim.address} within 0.3 s (wrong community, SNMP disabled, or host down)\n"
    )


def test_the_messages_speak_the_operators_language(snmpsim: SnmpsimEndpoint) -> None:
    args = (snmpsim.address, "-c", "s3cret-wrong", "--timeout", "0.3", "--retries", "0")
    vietnamese = (
        f"không có trả lời từ {snmpsim.address} trong 0.3 giây "
        "(sai community, SNMP bị tắt, hoặc thiết bị không hoạt động)\n"
    )
    done = run(*args, "--lang", "vi")
    assert (done.returncode, done.stderr) == (2, vietnamese)
    done = run(*args, env={"LANG": "vi_VN.UTF-8"})  # from the locale without --lang
    assert (done.returncode, done.stderr) == (2, vietnamese)
    done = run(*args, "--lang", "en", env={"LANG": "vi_VN.UTF-8"})  # --lang wins
    assert done.stderr.startswith("no answer from ")


def test_unknown_profile_and_bad_target() -> None:
    done = run("127.0.0.1:1", "--profile", "nope")
    assert done.returncode == 2
    assert "unknown profile 'nope'" in done.stderr
    done = run("127.0.0.1:99999")
    assert done.returncode == 2
    assert "is not HOST or HOST:PORT" in done.stderr
