"""Alert emails in both languages, end to end: a whole daemon watches a device that never answers,
SiteDown fires, and the notice goes through the durable outbox to a real SMTP server (aiosmtpd,
STARTTLS and AUTH) once in Vietnamese (the province's language) and once in English (a receiver
that asks for it). The messages are parsed as received, and their "Details" links open the site
page under ``web.external_url``."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.snmpsim import free_udp_port
from tests.test_notify_outbox import email_channel
from uptimewatch.app import run_daemon

EXTERNAL = "https://noc.hoabinh.example.vn/uptimewatch"


def _config(tmp_path: Path, smtp: SmtpServer) -> Path:
    silent = free_udp_port()  # nothing listens there: every SNMP request times out
    site = {
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
                "snmp": {"port": silent, "community": "public", "timeout": "0.2s", "retries": 0},
            }
        ],
    }
    data: dict[str, Any] = province_config(
        [site],
        listen=f"127.0.0.1:{free_tcp_port()}",
        defaults={"interval": "1s", "timeout": "2s", "hard_after": 1, "icmp": {"enabled": False}},
    )
    data["province"]["language"] = "vi"
    data["web"] = {"external_url": EXTERNAL}
    data["notify"] = {
        "receivers": [
            {"name": "truc-ca", "email": email_channel(smtp, to=["Trực ca <truc-ca@hoabinh.example.vn>"])},
            {"name": "vendor", "email": email_channel(smtp, to=["noc@vendor.example"], language="en")},
        ],
        "outbox": {"retry_initial": "1s", "retry_max": "5s"},
    }
    data["alerting"] = {
        "evaluation_interval": "1s",
        "group_wait": 0,
        "group_interval": "1s",
        "default_receiver": "truc-ca",
        "routes": [
            {"match": {}, "receiver": "vendor", "continue": True},
            {"match": {}, "receiver": "truc-ca"},
        ],
    }
    return write_yaml(tmp_path / "config.yaml", data)


def _by_recipient(smtp: SmtpServer, address: str) -> EmailMessage | None:
    for received in smtp.messages:
        if address in received.rcpt_tos and received.message["X-Uptimewatch-Kind"] == "firing":
            return received.message
    return None


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()).replace("\r\n", "\n"), str(html.get_content())


async def test_site_down_email_in_vietnamese_and_in_english(tmp_path: Path, smtp_server: SmtpServer) -> None:
    async with run_daemon(_config(tmp_path, smtp_server)):
        await wait_until(
            lambda: (
                _by_recipient(smtp_server, "truc-ca@hoabinh.example.vn")
                and _by_recipient(smtp_server, "noc@vendor.example")
            ),
            timeout=60,
        )
    vi = _by_recipient(smtp_server, "truc-ca@hoabinh.example.vn")
    en = _by_recipient(smtp_server, "noc@vendor.example")
    assert vi is not None
    assert en is not None

    assert vi["Subject"] == "[CẢNH BÁO:1] Trạm mất liên lạc — Trạm Pà Cò (VNPT)"
    assert vi["Content-Language"] == "vi"
    text, html = _parts(vi)
    assert "Đang cảnh báo (1):" in text
    assert (
        "- [nghiêm trọng] Trạm mất liên lạc: Trạm Pà Cò mất liên lạc: "
        "trạm gốc: SNMP quá thời gian chờ trên trạm gốc\n"
    ) in text
    assert re.search(r"trạm Trạm Pà Cò \(bts-paco\) · từ \d\d:\d\d \d\d/\d\d/20\d\d\n", text), text
    assert f"Chi tiết:\n  {EXTERNAL}/status/site/bts-paco\n" in text
    assert "/api/v1/" not in text
    assert '<html lang="vi">' in html
    assert "<th>Mức độ</th><th>Cảnh báo</th><th>Trạm</th><th>Từ lúc</th><th>Tóm tắt</th>" in html
    assert f'<a href="{EXTERNAL}/status/site/bts-paco">Trạm Pà Cò</a>' in html

    assert en["Subject"] == "[FIRING:1] Site down — Trạm Pà Cò (VNPT)"
    assert en["Content-Language"] == "en"
    text, html = _parts(en)
    assert "Firing (1):" in text
    assert "[critical] Site down: Trạm Pà Cò down: base station: SNMP timeout on base station" in text
    assert f"Details:\n  {EXTERNAL}/status/site/bts-paco\n" in text
    assert "<th>Severity</th>" in html
    # one notice, one language per message: both are the same alert
    assert vi["X-Uptimewatch-Notification-Id"] != en["X-Uptimewatch-Notification-Id"]
