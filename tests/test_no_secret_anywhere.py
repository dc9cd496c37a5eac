"""No secret anywhere: a URL's token or password, and every secret field of the configuration,
stay out of what the daemon writes, answers and sends, while every notification channel fails.

The daemon runs as ``uptimewatch run --log-level DEBUG`` (a subprocess: its log lines go through
the formatter an operator's journal gets). A distinct secret sits in every secret-bearing field:
the webhook URL's user information and ``?token=``, the Alertmanager URL's user information, an
SMTP password, the MQTT password, the webhook HMAC key, an SNMP community, bearer tokens, a bcrypt
hash. Every channel of one receiver fails: a webhook nobody answers, an Alertmanager nobody
answers, a webhook whose peer answers 500 and echoes the request line (token included), an SMTP
relay that is not there, an MQTT broker that is not there. Their ChannelFailing notices go out
through the channels that work (a real webhook receiver and aiosmtpd). Then no secret may appear
in the log, ``/metrics``, any ``/api/v1`` answer, the working sinks (bodies, headers, emails), the
outbox's ``last_error`` and ``check-config``'s output, for a good file and for a broken one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import web

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.smtp import PASSWORD as SMTP_GOOD_PASSWORD
from tests.fixtures.smtp import USERNAME, SmtpServer
from tests.fixtures.snmpsim import free_udp_port

URL_TOKEN = "urlTok-Hq42zR"
URL_PASSWORD = "urlPass-Fe93kT"
ECHO_TOKEN = "echoTok-Wn57pL"
AM_PASSWORD = "amPass-Zu81xQ"
SMTP_PASSWORD = "smtpPass-Dd40mV"
MQTT_PASSWORD = "mqttPass-Kc29sB"
WEBHOOK_SECRET = "hookSecret-Yt66eN"
COMMUNITY = "community-Rb13uJ"
BEARER_TOKEN = "bearerTok-Gv08wC"
BASIC_PASSWORD = "basicPass-Px72hA"


def _secrets(bcrypt_hash: str) -> list[str]:
    return [
        URL_TOKEN,
        URL_PASSWORD,
        ECHO_TOKEN,
        AM_PASSWORD,
        SMTP_PASSWORD,
        MQTT_PASSWORD,
        WEBHOOK_SECRET,
        COMMUNITY,
        BEARER_TOKEN,
        BASIC_PASSWORD,
        SMTP_GOOD_PASSWORD,
        bcrypt_hash,
    ]


def _leaks(where: str, text: str, secrets: list[str]) -> list[str]:
    return [f"{where}: {secret!r}" for secret in secrets if secret in text]


class Sink:
    """A webhook that works (``/hook``) and one that fails echoing what it was sent (``/echo``)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.echoed = 0

    async def hook(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    async def echo(self, request: web.Request) -> web.Response:
        # a peer that repeats the request line in its error page, as many proxies do
        self.echoed += 1
        return web.Response(status=500, text=f"upstream error for POST {request.path_qs}")

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]


def _config(tmp_path: Path, hook_port: int, smtp: SmtpServer, bcrypt_hash: str) -> dict[str, Any]:
    (tmp_path / "smtp.pw").write_text(SMTP_PASSWORD + "\n")
    dead_http, dead_am, dead_smtp, dead_mqtt = (free_tcp_port() for _ in range(4))
    sites = [
        {
            "id": "bts-paco",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "commune": "c2",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "bts",
                    "role": "bts",
                    "address": "127.0.0.1",
                    # nobody answers: the site goes down, a SiteDown notice goes to every channel
                    "snmp": {
                        "port": free_udp_port(),
                        "community": COMMUNITY,
                        "timeout": "0.3s",
                        "retries": 0,
                    },
                }
            ],
        }
    ]
    data = province_config(
        sites,
        listen=f"127.0.0.1:{free_tcp_port()}",
        defaults={"interval": "1s", "timeout": "2s", "hard_after": 1, "icmp": {"enabled": False}},
    )
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    data["mqtt"] = {"host": "127.0.0.1", "port": dead_mqtt, "username": "uwatch", "password": MQTT_PASSWORD}
    data["notify"] = {
        "receivers": [
            {
                "name": "broken",
                "webhook": {
                    "url": f"http://hookuser:{URL_PASSWORD}@127.0.0.1:{dead_http}/hook?token={URL_TOKEN}",
                    "secret": WEBHOOK_SECRET,
                    "timeout": "2s",
                },
                "alertmanager": {"url": f"http://amuser:{AM_PASSWORD}@127.0.0.1:{dead_am}", "timeout": "2s"},
                "email": {
                    "host": "127.0.0.1",
                    "port": dead_smtp,
                    "username": "noc",
                    "password_file": "smtp.pw",
                    "sender": "noc@example.vn",
                    "to": ["duty@example.vn"],
                    "timeout": "2s",
                },
                "mqtt": {"timeout": "1s"},
            },
            {
                "name": "echo",
                "webhook": {"url": f"http://127.0.0.1:{hook_port}/echo?token={ECHO_TOKEN}", "timeout": "2s"},
            },
            {
                "name": "good",
                "webhook": {"url": f"http://127.0.0.1:{hook_port}/hook", "secret": WEBHOOK_SECRET},
                "email": {
                    "host": smtp.host,
                    "port": smtp.port,
                    "username": USERNAME,
                    "password": SMTP_GOOD_PASSWORD,
                    "ca_file": smtp.ca_file,
                    "sender": "noc@example.vn",
                    "to": ["duty@example.vn"],
                    "timeout": "5s",
                },
            },
        ],
        "outbox": {"retry_initial": "0.5s", "retry_max": "1s", "channel_failure_alert_after": "1s"},
    }
    data["alerting"] = {
        "evaluation_interval": "1s",
        "group_wait": 0,
        "group_interval": "1s",
        "routes": [
            {"receiver": "broken", "continue": True},
            {"receiver": "echo", "continue": True},
            {"receiver": "good"},
        ],
        "auth": {
            "bearer_tokens": [BEARER_TOKEN],
            "basic": [{"user": "noc", "password_bcrypt": bcrypt_hash}],
        },
    }
    return data


def _get(url: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {BEARER_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _start_daemon(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "uptimewatch.cli", "--log-level", "DEBUG", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _failing(sink: Sink) -> dict[str, str]:
    """``{receiver/channel: summary}`` of the ChannelFailing notices the working webhook got."""
    out: dict[str, str] = {}
    for body in sink.bodies():
        if body["id"].startswith("channelfailing"):
            alert = body["alerts"][0]
            out[alert["labels"]["receiver"] + "/" + alert["labels"]["channel"]] = alert["summary"]
    return out


def _check_config(config: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


async def test_no_secret_leaves_while_every_channel_fails(tmp_path: Path, smtp_server: SmtpServer) -> None:
    bcrypt_hash = bcrypt.hashpw(BASIC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    secrets = _secrets(bcrypt_hash)
    sink = Sink()
    app = web.Application()
    app.router.add_post("/hook", sink.hook)
    app.router.add_post("/echo", sink.echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    data = _config(tmp_path, hook_port, smtp_server, bcrypt_hash)
    config = write_yaml(tmp_path / "config.yaml", data)
    base = f"http://{data['server']['listen']}"
    log_path = tmp_path / "daemon.log"
    leaks: list[str] = []
    proc = await asyncio.to_thread(_start_daemon, config, log_path)
    try:
        broken_channels = {
            "broken/webhook",
            "broken/alertmanager",
            "broken/email",
            "broken/mqtt",
            "echo/webhook",
        }

        def announced() -> set[str]:
            return set(_failing(sink))

        async def all_failing_announced() -> bool:
            assert proc.poll() is None, log_path.read_text()
            return broken_channels <= announced()

        await wait_until(all_failing_announced, timeout=60, interval=0.5)
        await wait_until(lambda: len(smtp_server.messages) >= len(broken_channels) + 1, timeout=30)
        assert sink.echoed >= 1

        # the errors are there, in words, with the endpoint: only the secrets are gone
        summaries = _failing(sink)
        assert "http://***@127.0.0.1:" in summaries["broken/webhook"], summaries
        assert "token=***" in summaries["broken/webhook"], summaries
        assert "HTTP 500" in summaries["echo/webhook"], summaries
        assert "upstream error for POST /echo?token=***" in summaries["echo/webhook"], summaries

        for path in [
            "/metrics",
            "/healthz",
            "/readyz",
            "/api",
            "/api/v1/sites",
            "/api/v1/sites/bts-paco",
            "/api/v1/summary",
            "/api/v1/power/time-to-dark",
            "/api/v1/topology/outages",
            "/api/v1/alerts",
            "/api/v1/silences",
            "/api/v1/status/overview",
            "/api/v1/status/districts/d1",
            "/api/v1/status/dispatch",
            "/api/v1/status/map",
            "/api/v1/status/sites/bts-paco",
            "/api/v1/status/i18n",
        ]:
            status, body = await asyncio.to_thread(_get, base + path)
            assert status in (200, 503), (path, status, body[:300])
            leaks += _leaks(f"GET {path}", body, secrets)
        _status, body = await asyncio.to_thread(_get, base + "/api/v1/alerts")
        alerts = json.loads(body)["alerts"]
        assert alerts, "SiteDown should be firing"
        for alert in alerts:
            _status, detail = await asyncio.to_thread(_get, base + f"/api/v1/alerts/{alert['id']}")
            leaks += _leaks(f"GET /api/v1/alerts/{alert['id']}", detail, secrets)

        for headers, body in sink.posts:
            # the HMAC key signs the body; it must not travel beside it
            leaks += _leaks("webhook sink", json.dumps(headers) + body.decode(errors="replace"), secrets)
        for message in smtp_server.messages:
            leaks += _leaks("email sink", message.raw.decode(errors="replace"), secrets)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await runner.cleanup()

    db = sqlite3.connect(data["storage"]["path"])
    try:
        errors = [
            str(r[0])
            for r in db.execute("SELECT last_error FROM outbox_delivery WHERE last_error IS NOT NULL")
        ]
        errors += [str(r[0]) for r in db.execute("SELECT last_error FROM outbox_channel_state")]
    finally:
        db.close()
    assert any("***" in e for e in errors), errors  # the failures were recorded, redacted
    leaks += _leaks("outbox last_error", "\n".join(errors), secrets)

    log_text = log_path.read_text(errors="replace")
    assert "broken/webhook failed" in log_text, log_text[-2000:]
    leaks += _leaks("daemon log", log_text, secrets)

    rc, out = await asyncio.to_thread(_check_config, config)
    assert rc == 0, out
    leaks += _leaks("check-config", out, secrets)
    # a broken file: a URL the schema refuses, with its token, is named without it
    data["notify"]["receivers"][0]["webhook"]["url"] = f"htp://u:{URL_PASSWORD}@127.0.0.1/x?token={URL_TOKEN}"
    broken = write_yaml(tmp_path / "broken.yaml", data)
    rc, out = await asyncio.to_thread(_check_config, broken)
    assert rc != 0, out
    assert f"{broken}:" in out, out  # file and line
    assert "webhook.url: invalid URL 'htp://***@127.0.0.1/x?token=***'" in out, out
    leaks += _leaks("check-config (broken)", out, secrets)

    assert leaks == [], "\n".join(leaks)
