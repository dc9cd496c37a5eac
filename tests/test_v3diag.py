"""The SNMPv3 diagnosis against snmpsim's real USM: each misconfiguration gets its own words."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pysnmp.entity import config as lcd
from pysnmp.proto import rfc1902

from tests.fixtures.snmpsim import (
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpsimEndpoint,
    free_udp_port,
    snmp_target,
)
from uptimewatch.config.models import SnmpVersion
from uptimewatch.config.resolve import SnmpTarget
from uptimewatch.probing.v3diag import (
    V3Problem,
    build_request,
    diagnose_v3,
    diagnosis_from_report,
    discover,
    exchange,
    read_reply,
)

RECORDING = "cetpower"
WRONG_AUTH = "not-the-auth-key"
WRONG_PRIV = "not-the-priv-key"


def _target(sim: SnmpsimEndpoint, **overrides: object) -> SnmpTarget:
    return snmp_target(sim, RECORDING, "3", timeout=0.5, retries=0, **overrides)


def _no_secret_in(text: str) -> None:
    for secret in (V3_AUTH_KEY, V3_PRIV_KEY, WRONG_AUTH, WRONG_PRIV):
        assert secret not in text


async def test_right_credentials_are_ok(snmpsim: SnmpsimEndpoint) -> None:
    found = await diagnose_v3(_target(snmpsim))
    assert found.problem is V3Problem.OK
    assert found.engine_id  # discovery read the agent's engine ID
    assert f"accepts SNMPv3 user '{V3_USER}'" in found.message


@pytest.mark.parametrize(
    ("overrides", "problem", "words"),
    [
        (
            {"user": "nobody"},
            V3Problem.UNKNOWN_USER,
            "answered but does not know SNMPv3 user 'nobody': check the user name on the device",
        ),
        ({"auth_key": WRONG_AUTH}, V3Problem.WRONG_AUTH_KEY, "rejected the authentication digest"),
        ({"priv_key": WRONG_PRIV}, V3Problem.WRONG_PRIV_KEY, "could not decrypt the request"),
        (
            {"priv_key": None, "priv_protocol": None},
            V3Problem.UNSUPPORTED_SECURITY_LEVEL,
            "not at security level authNoPriv",
        ),
    ],
)
async def test_agent_reports_tell_the_cause(
    snmpsim: SnmpsimEndpoint, overrides: dict[str, object], problem: V3Problem, words: str
) -> None:
    found = await diagnose_v3(_target(snmpsim, **overrides))
    assert found.problem is problem, found.message
    assert words in found.message
    assert found.engine_id is not None
    _no_secret_in(json.dumps(found.to_dict()))


async def test_silence_is_no_answer() -> None:
    target = SnmpTarget(
        host="127.0.0.1",
        port=free_udp_port(),
        version=SnmpVersion.V3,
        community=None,
        user=V3_USER,
        auth_protocol=None,
        auth_key=None,
        priv_protocol=None,
        priv_key=None,
        context="",
        timeout=0.3,
        retries=0,
        max_repetitions=25,
        max_rows=100,
        max_requests=10,
    )
    found = await diagnose_v3(target)
    assert found.problem is V3Problem.NO_ANSWER
    assert "not even to SNMPv3 engine discovery" in found.message
    assert found.engine_id is None


async def test_stale_engine_time_is_not_in_time_window(snmpsim: SnmpsimEndpoint) -> None:
    """A correct client never sends a stale time right after discovery, so the test crafts one:
    an authenticated request from the right user whose engine time is a day ahead. The agent must
    check the time window before decrypting (RFC 3414 3.2.7), so the scoped PDU can be noise."""
    found = await discover(snmpsim.host, snmpsim.port)
    assert found is not None
    sha = lcd.AUTH_SERVICES[lcd.USM_AUTH_HMAC96_SHA]
    key = sha.localize_key(sha.hash_passphrase(V3_AUTH_KEY.encode()), rfc1902.OctetString(found.engine_id))
    message = build_request(
        msg_id=4242,
        engine_id=found.engine_id,
        boots=found.boots,
        engine_time=found.time + 86_400,
        user=V3_USER.encode(),
        flags=0x07,
        auth_key_localized=bytes(key),
        encrypted_pdu=os.urandom(32),
        priv_parameters=os.urandom(8),
    )
    raw = await exchange(snmpsim.host, snmpsim.port, message, timeout=1.0, attempts=2)
    assert raw is not None
    reply = read_reply(raw)
    assert reply is not None
    assert reply.pdu_type == "report"
    assert reply.first_oid == "1.3.6.1.6.3.15.1.1.2.0"  # usmStatsNotInTimeWindows
    diagnosis = diagnosis_from_report(reply.first_oid, _target(snmpsim), reply.engine)
    assert diagnosis.problem is V3Problem.NOT_IN_TIME_WINDOW
    assert "outside its time window" in diagnosis.message
    assert diagnosis.engine_id == found.engine_id.hex()


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "probe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_probe_cli_prints_the_diagnosis(snmpsim: SnmpsimEndpoint) -> None:
    common = ["--v3-user", V3_USER, "--v3-context", RECORDING, "--timeout", "0.5", "--retries", "0"]
    done = _probe(
        snmpsim.address, *common, "--v3-auth-key", WRONG_AUTH, "--v3-priv-key", V3_PRIV_KEY, "--json"
    )
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert any("rejected the authentication digest" in p for p in doc["problems"]), doc
    assert "rejected the authentication digest" in done.stderr
    _no_secret_in(done.stdout + done.stderr)

    done = _probe(snmpsim.address, *common, "--v3-auth-key", V3_AUTH_KEY, "--v3-priv-key", WRONG_PRIV)
    assert done.returncode == 2
    assert "could not decrypt the request" in done.stderr
    _no_secret_in(done.stdout + done.stderr)
