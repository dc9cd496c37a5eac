"""Message text and payloads (pure functions), and the notify section of the configuration."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path

from tests.fixtures.daemon import province_config, write_yaml
from tests.test_notify_outbox import NAMES, alert, notice
from uptimewatch.config.loader import load_config
from uptimewatch.i18n import N_, Text
from uptimewatch.notify import render
from uptimewatch.notify.base import Delivery
from uptimewatch.notify.email import EmailSettings, build_message
from uptimewatch.notify.types import AlertInfo, Notification

SETTINGS = EmailSettings(
    host="127.0.0.1",
    sender="uptimewatch Hòa Bình <noc@hoabinh.example.vn>",
    to=["Trực ca NOC <truc-ca@hoabinh.example.vn>", "lanh-dao@hoabinh.example.vn"],
)


def _three_down() -> list:  # type: ignore[type-arg]
    return [
        alert("fp-1"),
        alert("fp-2", site="bts-vanmai"),
        alert("fp-3", site="bts-tongdau"),
    ]


def test_subject_counts_firing_alerts_and_names_the_place_in_vietnamese() -> None:
    n = notice("g1", "firing", *_three_down())
    assert render.subject(n, NAMES) == "[FIRING:3] Site down — Huyện Mai Châu (VNPT)"
    one = notice("g2", "firing", alert("fp-1"))
    assert render.subject(one, NAMES) == "[FIRING:1] Site down — Trạm Pà Cò (VNPT)"
    resolved = notice("g3", "resolved", alert("fp-1", "resolved"))
    assert render.subject(resolved, NAMES) == "[RESOLVED] Site down — Trạm Pà Cò (VNPT)"
    mixed = notice("g4", "firing", alert("fp-1"), alert("fp-9", name="OnBattery"))
    assert render.subject(mixed, NAMES) == "[FIRING:2] 2 alerts — Huyện Mai Châu (VNPT)"


def test_email_is_multipart_utf8_with_a_stable_message_id_threaded_to_the_first_firing() -> None:
    n = notice("resolved-7f3a", "resolved", alert("fp-1", "resolved"))
    delivery = Delivery(1, "duty/email", n, attempt=2, thread_root="firing-01ab")
    raw = build_message(delivery, SETTINGS, NAMES, "https://noc.example.vn/uw").as_bytes()
    assert raw.isascii()  # RFC 2047 / base64: safe for any relay
    assert b"=?utf-8?" in raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "[RESOLVED] Site down — Trạm Pà Cò (VNPT)"
    assert msg["From"].addresses[0].display_name == "uptimewatch Hòa Bình"
    assert [a.addr_spec for a in msg["To"].addresses] == [
        "truc-ca@hoabinh.example.vn",
        "lanh-dao@hoabinh.example.vn",
    ]
    assert msg["Message-ID"] == "<resolved-7f3a@hoabinh.example.vn>"
    assert msg["In-Reply-To"] == msg["References"] == "<firing-01ab@hoabinh.example.vn>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None
    assert html is not None
    body = text.get_content()
    assert "Trạm Pà Cò down: no reply to ping" in body
    assert "https://noc.example.vn/uw/status/site/bts-paco" in body
    assert "Resolved (1):" in body
    assert "Trạm Pà Cò" in html.get_content()
    # a retry builds the very same message: peers can drop the duplicate
    again = build_message(Delivery(9, "duty/email", n, 3, "firing-01ab"), SETTINGS, NAMES, None)
    assert again["Message-ID"] == msg["Message-ID"]


def _text_alert(fp: str, state: str = "firing") -> AlertInfo:
    """An alert as the rules make it: its summary a Text (msgid + parameters), not English."""
    reason = Text(
        N_("{device}: {reason}"), {"device": Text(N_("base station")), "reason": Text(N_("no reply to ping"))}
    )
    summary = Text(N_("{site} down: {reason}"), {"site": "Trạm Pà Cò", "reason": reason})
    return replace(alert(fp, state), summary=summary)


def test_vietnamese_email_subject_text_and_html() -> None:
    names = replace(NAMES, language="vi")
    n = notice("g-vi", "firing", _text_alert("fp-1"), alert("fp-2", site="bts-vanmai"))
    assert render.subject(n, names) == "[CẢNH BÁO:2] Trạm mất liên lạc — Huyện Mai Châu (VNPT)"
    msg = build_message(Delivery(1, "duty/email", n, 1, None), SETTINGS, names, "https://noc.example.vn/uw")
    assert msg["Content-Language"] == "vi"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Đang cảnh báo (2):" in body
    assert "- [nghiêm trọng] Trạm mất liên lạc: Trạm Pà Cò mất liên lạc: trạm gốc: không trả lời ping" in body
    # T0 is 2025-10-09 08:53:20 UTC: 15:53 in Hà Nội, written the Vietnamese way
    assert "từ 15:53 09/10/2025" in body
    assert "Chi tiết:\n  https://noc.example.vn/uw/status/site/bts-paco" in body
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<html lang="vi">' in html
    assert "<th>Mức độ</th>" in html
    assert '<a href="https://noc.example.vn/uw/status/site/bts-paco">Trạm Pà Cò</a>' in html
    # the same notice in English, for a receiver that asks for it
    en = build_message(
        Delivery(1, "duty/email", n, 1, None), SETTINGS.model_copy(update={"language": "en"}), names, None
    )
    assert en["Subject"] == "[FIRING:2] Site down — Huyện Mai Châu (VNPT)"
    assert "Trạm Pà Cò down: base station: no reply to ping" in en.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_text_summary_survives_the_outbox_round_trip() -> None:
    n = notice("g-rt", "firing", _text_alert("fp-1"))
    again = Notification.from_dict(json.loads(json.dumps(n.to_dict())))
    assert again == n
    assert again.to_dict()["alerts"][0]["summary"] == "Trạm Pà Cò down: base station: no reply to ping"


def test_the_first_firing_notice_replies_to_nothing_and_html_is_escaped() -> None:
    hostile = alert("fp-x")
    hostile = type(hostile)(**{**hostile.to_dict(), "summary": "<script>alert(1)</script>"})
    n = notice("firing-01ab", "firing", hostile)
    msg = build_message(Delivery(1, "duty/email", n, 1, None), SETTINGS, NAMES, None)
    assert msg["In-Reply-To"] is None
    html = msg.get_body(("html",))
    assert html is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;" in html.get_content()


def test_webhook_payload_and_signature_verify_as_documented() -> None:
    n = notice("w-1", "firing", alert("fp-1"))
    body = render.notification_payload(n)
    header = render.signature("whk-secret", body)
    # the receiver's check, as in docs/notifications.md
    expected = "sha256=" + hmac.new(b"whk-secret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header, expected)
    assert not hmac.compare_digest(render.signature("other", body), expected)
    payload = json.loads(body)
    assert payload["version"] == 1
    assert payload["id"] == "w-1"
    assert payload["alerts"][0]["summary"] == "Trạm Pà Cò down: no reply to ping"


def test_alertmanager_alerts_carry_labels_and_end_when_resolved() -> None:
    firing = render.alertmanager_alerts(notice("a", "firing", alert("fp-1")), external_url=None)
    assert "endsAt" not in firing[0]
    assert "generatorURL" not in firing[0]
    assert firing[0]["labels"]["alertname"] == "SiteDown"
    assert firing[0]["startsAt"].endswith("Z")
    odd = alert("fp-2", "resolved")
    odd = type(odd)(**{**odd.to_dict(), "labels": {**odd.labels, "link-id": "mw 1"}})
    resolved = render.alertmanager_alerts(notice("b", "resolved", odd), external_url="http://uw:9847")
    assert resolved[0]["endsAt"] == render.rfc3339(odd.ends_at or 0)
    assert resolved[0]["labels"]["link_id"] == "mw 1"
    assert resolved[0]["generatorURL"] == "http://uw:9847/status/site/bts-paco"


def test_topics() -> None:
    assert render.site_state_topic("uptimewatch", "hoa-binh", "mai-chau", "bts-paco") == (
        "uptimewatch/hoa-binh/mai-chau/bts-paco/state"
    )
    assert render.events_topic("uptimewatch", "hoa-binh") == "uptimewatch/hoa-binh/events"


def test_channel_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "smtp.pass").write_text("Relay-Pw-9x\n")
    (tmp_path / "hook.key").write_text("Hook-Key-4q\n")
    config = province_config([], listen="127.0.0.1:9847")
    config["notify"] = {
        "receivers": [
            {
                "name": "duty",
                "email": {
                    "host": "127.0.0.1",
                    "username": "noc",
                    "password_file": "smtp.pass",
                    "sender": "noc@hoabinh.example.vn",
                    "to": ["truc-ca@hoabinh.example.vn"],
                },
                "webhook": {"url": "http://127.0.0.1:9/hook", "secret_file": "hook.key"},
            }
        ]
    }
    loaded = load_config(write_yaml(tmp_path / "config.yaml", config))
    receiver = loaded.config.notify.receivers[0]
    channels = dict(receiver.channels())
    assert channels["email"].password.get_secret_value() == "Relay-Pw-9x"  # type: ignore[attr-defined]
    assert channels["webhook"].secret.get_secret_value() == "Hook-Key-4q"  # type: ignore[attr-defined]
    dumped = repr(loaded.config) + str(loaded.config.model_dump())
    assert "Relay-Pw-9x" not in dumped
    assert "Hook-Key-4q" not in dumped
