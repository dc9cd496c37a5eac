"""Audit: no secret of the configuration ever leaves the daemon.

The daemon runs with every kind of secret the configuration knows (SNMP communities, v3 keys, the
``*_file`` variants, SMTP and MQTT passwords, the webhook HMAC key, bearer tokens, a bcrypt hash,
trap communities and trap v3 keys) while its error paths run: a v3 device with wrong keys, an SMTP
relay refusing the password, a webhook nobody answers, a reload of a broken file. Then no secret may
appear in the DEBUG logs, /metrics, any GET endpoint, the reload answer, the ``check-config`` and
``probe`` subprocesses' output, or ``repr()`` of the loaded configuration and resolved devices.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.smtp import USERNAME, SmtpServer
from tests.fixtures.snmpsim import (
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpsimFactory,
    corpus_recording,
    free_udp_port,
)
from uptimewatch.app import run_daemon
from uptimewatch.config.loader import load_config
from uptimewatch.notify.types import AlertInfo, Notification

# snmpsim picks the recording by community, so the two communities are recording names of their own
COMMUNITY = "uwCommInline-Q7xk"
COMMUNITY_FILE = "uwCommFile-K3pz"
WRONG_AUTH_KEY = "wrongAuthKey-R2d2x"
WRONG_PRIV_KEY = "wrongPrivKey-C3po9"
SMTP_PASSWORD = "smtpPass-Lk82-wrong"
MQTT_PASSWORD = "mqttPass-Vb71"
WEBHOOK_SECRET = "hookSecret-Mn45"
BEARER_TOKEN = "bearerTok-Xy99z"
BEARER_TOKEN_FILE = "bearerFileTok-Aa11"
BASIC_PASSWORD = "basicPass-Ww33"
TRAP_COMMUNITY = "trapComm-Pp77"
TRAP_AUTH_KEY = "trapAuthKey-Jj55"
TRAP_PRIV_KEY = "trapPrivKey-Hh66"
# what a broken file gives for secrets with the wrong type: numbers, which pydantic would echo
BROKEN_TOKEN = 73914650288
BROKEN_COMMUNITY = 51862093377
BROKEN_HASH = "notAHash-Plain-Gg88"


def _bcrypt_hash() -> str:
    return bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def _secrets(bcrypt_hash: str) -> list[str]:
    return [
        COMMUNITY,
        COMMUNITY_FILE,
        V3_AUTH_KEY,
        V3_PRIV_KEY,
        WRONG_AUTH_KEY,
        WRONG_PRIV_KEY,
        SMTP_PASSWORD,
        MQTT_PASSWORD,
        WEBHOOK_SECRET,
        BEARER_TOKEN,
        BEARER_TOKEN_FILE,
        BASIC_PASSWORD,
        bcrypt_hash,
        bcrypt_hash[7:29],  # the salt alone
        TRAP_COMMUNITY,
        TRAP_AUTH_KEY,
        TRAP_PRIV_KEY,
        str(BROKEN_TOKEN),
        str(BROKEN_COMMUNITY),
        BROKEN_HASH,
    ]


def _leaks(where: str, text: str, secrets: list[str]) -> list[str]:
    return [f"{where}: {secret!r}" for secret in secrets if secret in text]


def _config(
    tmp_path: Path, sim_port: int, smtp: SmtpServer, broker: Mosquitto, bcrypt_hash: str, *, dead_port: int
) -> dict[str, Any]:
    (tmp_path / "community.txt").write_text(COMMUNITY_FILE + "\n")
    (tmp_path / "auth.key").write_text(WRONG_AUTH_KEY + "\n")
    (tmp_path / "mqtt.pw").write_text(MQTT_PASSWORD + "\n")
    (tmp_path / "hook.secret").write_text(WEBHOOK_SECRET)
    (tmp_path / "token.txt").write_text(BEARER_TOKEN_FILE + "\n")
    (tmp_path / "smtp.pw").write_text(SMTP_PASSWORD)
    snmp = {"port": sim_port, "timeout": "0.4s", "retries": 0}
    v3 = {**snmp, "version": "3", "user": V3_USER, "context": "cetpower"}
    sites = [
        {
            "id": "hub",
            "name": "Trạm HUB Mai Châu",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "power",
                    "role": "power",
                    "address": "127.0.0.1",
                    "snmp": {**snmp, "community": COMMUNITY},
                },
                {
                    "id": "router",
                    "role": "router",
                    "address": "127.0.0.1",
                    "snmp": {**snmp, "community_file": "community.txt"},
                },
            ],
        },
        {
            "id": "bts",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "carrier": "viettel",
            "upstream": "hub",
            "devices": [
                {
                    "id": "v3ok",
                    "role": "power",
                    "address": "127.0.0.1",
                    "snmp": {**v3, "auth_key": V3_AUTH_KEY, "priv_key": V3_PRIV_KEY},
                },
                {
                    "id": "v3bad",
                    "role": "bts",
                    "address": "127.0.0.1",
                    "snmp": {**v3, "auth_key_file": "auth.key", "priv_key": WRONG_PRIV_KEY},
                },
                {
                    "id": "dead",
                    "role": "router",
                    "address": "127.0.0.1",
                    "snmp": {"port": dead_port, "community": COMMUNITY, "timeout": "0.3s", "retries": 0},
                },
            ],
        },
    ]
    data = province_config(
        sites,
        listen=f"127.0.0.1:{free_tcp_port()}",
        defaults={"interval": "1s", "timeout": "3s", "hard_after": 1, "icmp": {"enabled": False}},
    )
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    data["mqtt"] = {
        "host": broker.host,
        "port": broker.port,
        "username": "uwatch",
        "password_file": "mqtt.pw",
        "client_id": "uw-audit",
    }
    data["notify"] = {
        "receivers": [
            {
                "name": "duty",
                "email": {
                    "host": smtp.host,
                    "port": smtp.port,
                    "username": USERNAME,
                    "password_file": "smtp.pw",
                    "ca_file": smtp.ca_file,
                    "sender": "noc@example.vn",
                    "to": ["duty@example.vn"],
                    "timeout": 5,
                },
                "webhook": {"url": f"http://127.0.0.1:{free_tcp_port()}/hook", "secret_file": "hook.secret"},
                "mqtt": {},
            },
            {
                "name": "relay",
                "email": {
                    "host": smtp.host,
                    "port": smtp.port,
                    "username": USERNAME,
                    "password": SMTP_PASSWORD,
                    "ca_file": smtp.ca_file,
                    "sender": "noc@example.vn",
                    "to": ["duty@example.vn"],
                    "timeout": 5,
                },
                "webhook": {"url": f"http://127.0.0.1:{free_tcp_port()}/hook", "secret": WEBHOOK_SECRET},
            },
        ],
        "outbox": {"retry_initial": "0.5s", "retry_max": "1s"},
    }
    data["alerting"] = {
        "evaluation_interval": "1s",
        "group_wait": 0,
        "default_receiver": "duty",
        "auth": {
            "bearer_tokens": [BEARER_TOKEN],
            "bearer_token_file": "token.txt",
            "basic": [{"user": "noc", "password_bcrypt": bcrypt_hash}],
        },
    }
    data["traps"] = {
        "enabled": True,
        "listen": f"127.0.0.1:{free_udp_port()}",
        "communities": [TRAP_COMMUNITY],
        "v3_users": [{"user": "trapper", "auth_key": TRAP_AUTH_KEY, "priv_key": TRAP_PRIV_KEY}],
    }
    return data


def _broken(data: dict[str, Any]) -> dict[str, Any]:
    """The same file with secrets of the wrong type or shape, plus a plain error."""
    broken: dict[str, Any] = json.loads(json.dumps(data))
    broken["alerting"]["auth"]["bearer_tokens"] = [BROKEN_TOKEN]
    broken["alerting"]["auth"]["basic"][0]["password_bcrypt"] = BROKEN_HASH
    broken["traps"]["communities"] = [BROKEN_COMMUNITY]
    broken["sites"][0]["devices"][0]["snmp"]["community"] = BROKEN_COMMUNITY
    broken["mqtt"]["password"] = BROKEN_COMMUNITY
    broken["sites"][0]["district"] = "nowhere"
    return broken


async def _run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def _get(url: str, auth: str | None = None) -> tuple[int, str]:
    import aiohttp

    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def _post(url: str, auth: str | None = None) -> tuple[int, str]:
    import aiohttp

    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession() as http, http.post(url, headers=headers) as resp:
        return resp.status, await resp.text()


def _notice(nid: str, receiver: str) -> Notification:
    now = time.time()
    info = AlertInfo(
        fingerprint=f"fp-{nid}",
        name="SiteDown",
        severity="critical",
        state="firing",
        labels={"province": "test", "district": "d1", "carrier": "vnpt", "site": "hub"},
        summary="Trạm HUB Mai Châu down",
        starts_at=now,
    )
    return Notification(
        id=nid,
        kind="firing",
        receiver=receiver,
        group_key="district=d1",
        title="[FIRING] Trạm HUB Mai Châu down",
        alerts=(info,),
        created_at=now,
        labels={"district": "d1"},
    )


async def test_no_secret_leaves_the_daemon(
    tmp_path: Path,
    snmpsim_factory: SnmpsimFactory,
    smtp_server: SmtpServer,
    mosquitto: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bcrypt_hash = _bcrypt_hash()
    secrets = _secrets(bcrypt_hash)
    recording = corpus_recording("cetpower")
    sim = await asyncio.to_thread(
        snmpsim_factory, {COMMUNITY: recording, COMMUNITY_FILE: recording, "cetpower": recording}
    )
    data = _config(tmp_path, sim.port, smtp_server, mosquitto, bcrypt_hash, dead_port=free_udp_port())
    config = write_yaml(tmp_path / "config.yaml", data)
    leaks: list[str] = []

    loaded = load_config(config)
    leaks += _leaks("repr(config)", repr(loaded.config) + str(loaded.config), secrets)
    leaks += _leaks("repr(devices)", repr(loaded.devices) + str(loaded.devices), secrets)
    leaks += _leaks("repr(loaded)", repr(loaded), secrets)
    leaks += _leaks("model_dump_json(config)", loaded.config.model_dump_json(), secrets)

    async with run_daemon(config) as daemon:
        base = daemon.url
        bearer = f"Bearer {BEARER_TOKEN}"

        async def polled() -> bool:
            _status, body = await _get(base + "/api/v1/sites/bts")
            devices = {d["device_id"]: d for d in json.loads(body)["devices"]}
            return all("snmp" in devices[d]["probes"] for d in ("v3ok", "v3bad", "dead"))

        await wait_until(polled, timeout=30)
        # the wrong keys were rejected, the right ones accepted: the error paths did run
        _status, body = await _get(base + "/api/v1/sites/bts")
        devices = {d["device_id"]: d for d in json.loads(body)["devices"]}
        assert devices["v3ok"]["fields"], devices["v3ok"]
        assert "authentication failed" in json.dumps(devices["v3bad"]), devices["v3bad"]

        await daemon.outbox.enqueue([_notice("audit-1", "duty"), _notice("audit-2", "relay")])

        def refused() -> bool:
            return "duty/email failed" in caplog.text and "relay/email failed" in caplog.text

        await wait_until(refused, timeout=20)

        # a reload of a broken file: refused, the running configuration kept
        write_yaml(config, _broken(data))
        status, reload_body = await _post(base + "/-/reload", bearer)
        assert status == 400, reload_body
        assert "nowhere" in reload_body
        leaks += _leaks("POST /-/reload", reload_body, secrets)
        status, unauthorized = await _post(base + "/-/reload")
        leaks += _leaks("POST /-/reload without auth", unauthorized, secrets)

        rc, out = await _run(sys.executable, "-m", "uptimewatch.cli", "check-config", str(config))
        assert rc == 1, out
        assert "nowhere" in out
        leaks += _leaks("check-config", out, secrets)

        rc, out = await _run(
            sys.executable, "-m", "uptimewatch.cli", "--log-level", "DEBUG", "probe", sim.address,
            "-v", "3", "--v3-user", V3_USER, "--v3-auth-key", WRONG_AUTH_KEY,
            "--v3-priv-key", WRONG_PRIV_KEY, "--v3-context", "cetpower", "--timeout", "0.5",
            "--retries", "0", "--json",
        )  # fmt: skip
        assert rc != 0, out
        leaks += _leaks("uptimewatch probe", out, secrets)
        rc, out = await _run(
            sys.executable, "-m", "uptimewatch.cli", "--log-level", "DEBUG", "probe", sim.address,
            "-c", COMMUNITY_FILE + "-nope", "--timeout", "0.3", "--retries", "0",
        )  # fmt: skip
        leaks += _leaks("uptimewatch probe (v2c)", out, secrets)

        gets = [
            "/",
            "/api",
            "/metrics",
            "/healthz",
            "/readyz",
            "/api/v1/sites",
            "/api/v1/sites/hub",
            "/api/v1/sites/bts",
            "/api/v1/summary",
            "/api/v1/power/time-to-dark",
            "/api/v1/topology/outages",
            "/api/v1/alerts",
            "/api/v1/silences",
            "/api/v1/status/overview",
            "/api/v1/status/districts/d1",
            "/api/v1/status/dispatch",
            "/status/district/d1",
        ]
        for path in gets:
            status, body = await _get(base + path)
            assert status == 200, (path, body)
            leaks += _leaks(f"GET {path}", body, secrets)
        _status, alerts_body = await _get(base + "/api/v1/alerts")
        for alert in json.loads(alerts_body)["alerts"]:
            _status, body = await _get(f"{base}/api/v1/alerts/{alert['id']}")
            leaks += _leaks(f"GET /api/v1/alerts/{alert['id']}", body, secrets)
        _status, metrics = await _get(base + "/metrics")
        assert "uptimewatch_config_last_reload_successful 0.0" in metrics

    leaks += _leaks("logs", caplog.text, secrets)
    leaks += _leaks("log records", "\n".join(repr(r.__dict__) for r in caplog.records), secrets)
    assert leaks == [], "\n".join(leaks)


def test_check_config_does_not_echo_secrets_of_the_wrong_type(tmp_path: Path) -> None:
    """A secret given as a number is reported by its place, never by its value."""
    import subprocess

    data = province_config(
        [
            {
                "id": "s1",
                "name": "S",
                "district": "d1",
                "carrier": "vnpt",
                "devices": [
                    {
                        "id": "x",
                        "role": "bts",
                        "address": "127.0.0.1",
                        "snmp": {"community": BROKEN_COMMUNITY},
                    }
                ],
            }
        ],
        listen="127.0.0.1:9847",
    )
    data["alerting"] = {
        "auth": {"bearer_tokens": [BROKEN_TOKEN], "basic": [{"user": "a", "password_bcrypt": 7}]}
    }
    data["traps"] = {"communities": [BROKEN_COMMUNITY], "v3_users": [{"user": "u", "auth_key": BROKEN_TOKEN}]}
    data["mqtt"] = {"password": BROKEN_TOKEN}
    path = write_yaml(tmp_path / "config.yaml", data)
    done = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1
    # every wrong secret is reported, by its place
    for place in (
        "alerting.auth.bearer_tokens[0]",
        "alerting.auth.basic[0].password_bcrypt",
        "traps.communities[0]",
        "traps.v3_users[0].auth_key",
        "mqtt.password",
        "snmp.community",
    ):
        assert place in out, out
    assert str(BROKEN_TOKEN) not in out, out
    assert str(BROKEN_COMMUNITY) not in out, out
    assert "(got 7)" not in out, out
