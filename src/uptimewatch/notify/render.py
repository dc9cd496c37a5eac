"""Every text and payload a channel sends, built by pure functions of the notification.

Nothing here does I/O or reads the clock, so each message can be tested (and reviewed) on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..i18n import N_, Translator, translator
from .base import PAYLOAD_VERSION, Names
from .types import AlertInfo, Notification

#: Subject tags by notice kind; translated, since people read them (filters use X-Uptimewatch-Kind).
_TAGS: Final[dict[str, str]] = {
    "firing": N_("FIRING"),
    "resolved": N_("RESOLVED"),
    "reminder": N_("FIRING"),
    "escalation": N_("ESCALATED"),
    "acknowledged": N_("ACK"),
    "heartbeat": N_("HEARTBEAT"),
    "test": N_("TEST"),
}
#: What the built-in alerts are called in a sentence; user rules go by their own name.
ALERT_TITLES: Final[dict[str, str]] = {
    "SiteDown": N_("Site down"),
    "UpstreamDown": N_("Hub or link down"),
    "DeviceDown": N_("Device down"),
    "OnBattery": N_("On battery"),
    "BatteryLow": N_("Battery low"),
    "TimeToDarkSoon": N_("Dark soon"),
    "HighPacketLoss": N_("Packet loss"),
    "LinkRxLevelLow": N_("Low receive level"),
    "LinkSnrLow": N_("Low SNR"),
    "DeviceRebooted": N_("Device rebooted"),
    "SnmpAuthFailure": N_("SNMP credentials rejected"),
    "Heartbeat": N_("Heartbeat"),
}
SEVERITY_WORDS: Final[dict[str, str]] = {
    "critical": N_("critical"),
    "warning": N_("warning"),
    "info": N_("info"),
}
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


# -- shared pieces ---------------------------------------------------------------------------------


def _common(alerts: Sequence[AlertInfo], key: str, labels: Mapping[str, str]) -> str | None:
    if key in labels:
        return labels[key]
    values = {a.labels.get(key) for a in alerts}
    return values.pop() if len(values) == 1 else None


def alert_name(n: Notification) -> str:
    """The alert name when every alert of the notice shares it, else the engine's title."""
    names = {a.name for a in n.alerts}
    return names.pop() if len(names) == 1 else n.title


def alert_title(name: str, t: Translator) -> str:
    """``SiteDown`` -> ``Site down`` / ``Trạm mất liên lạc``; a user rule's name as it is."""
    title = ALERT_TITLES.get(name)
    return t.gettext(title) if title is not None else name


def severity_word(severity: str, t: Translator) -> str:
    word = SEVERITY_WORDS.get(severity)
    return t.gettext(word) if word is not None else severity


def _headline(n: Notification, t: Translator) -> str:
    names = {a.name for a in n.alerts}
    if len(names) == 1:
        return alert_title(names.pop(), t)
    return t.ngettext("{n} alert", "{n} alerts", len(n.alerts))


def where(n: Notification, names: Names) -> str:
    """``Huyện Mai Châu (VNPT)``: the group's place and carrier, by display name."""
    site = _common(n.alerts, "site", n.labels)
    district = _common(n.alerts, "district", n.labels)
    carrier = _common(n.alerts, "carrier", n.labels)
    if site is not None and len(n.alerts) == 1:
        place = names.sites.get(site, site)
    elif district is not None:
        place = names.districts.get(district, district)
    else:
        place = names.province_name or names.province_id
    if carrier is not None:
        place = f"{place} ({names.carriers.get(carrier, carrier)})"
    return place


def language_of(names: Names, override: str | None = None) -> Translator:
    """The translator for one message: the receiver's language, else the province's."""
    return translator(override or names.language, tz=names.timezone)


def subject(n: Notification, names: Names, t: Translator | None = None) -> str:
    """``[FIRING:3] Site down — Huyện Mai Châu (VNPT)`` / ``[CẢNH BÁO:3] Trạm mất liên lạc — ...``."""
    t = t or language_of(names)
    tag = t.gettext(_TAGS[n.kind]) if n.kind in _TAGS else n.kind.upper()
    firing = sum(1 for a in n.alerts if a.state == "firing")
    if n.kind in ("firing", "reminder", "escalation") and firing:
        tag = f"{tag}:{firing}"
    elif n.kind == "resolved":
        tag = f"{tag}:{len(n.alerts)}" if len(n.alerts) > 1 else tag
    text = f"[{tag}] {_headline(n, t)} — {where(n, names)}"
    if n.kind == "reminder":
        text += " " + t.gettext("(reminder)")
    return text


def local_time(ts: float, timezone: str) -> str:
    try:
        zone: Any = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def site_url(external_url: str | None, site: str | None) -> str | None:
    """The site's page for people (``web.external_url`` + ``/status/site/<id>``), not the JSON API."""
    if not external_url:
        return None
    return f"{external_url}/status/site/{quote(site, safe='')}" if site else external_url


def _alert_lines(a: AlertInfo, names: Names, t: Translator) -> list[str]:
    site = a.labels.get("site")
    lines = [f"- [{severity_word(a.severity, t)}] {alert_title(a.name, t)}: {t.text(a.summary)}"]
    facts = []
    if site:
        facts.append(t.gettext("site {name} ({id})", name=names.sites.get(site, site), id=site))
    if device := a.labels.get("device"):
        facts.append(t.gettext("device {device}", device=device))
    if a.starts_at:
        facts.append(t.gettext("since {time:dt}", time=a.starts_at))
    if a.state == "resolved" and a.ends_at:
        facts.append(t.gettext("resolved {time:dt}", time=a.ends_at))
    if facts:
        lines.append("  " + " · ".join(facts))
    if a.description:
        lines.append(f"  {t.text(a.description)}")
    if a.acknowledged_by:
        if a.ack_comment:
            lines.append(
                "  "
                + t.gettext("acknowledged by {who}: {comment}", who=a.acknowledged_by, comment=a.ack_comment)
            )
        else:
            lines.append("  " + t.gettext("acknowledged by {who}", who=a.acknowledged_by))
    return lines


def _sections(n: Notification, t: Translator) -> list[tuple[str, bool, list[AlertInfo]]]:
    """(heading, firing?, alerts) for the alerts still firing, then those resolved."""
    firing = [a for a in n.alerts if a.state != "resolved"]
    resolved = [a for a in n.alerts if a.state == "resolved"]
    out = []
    if firing:
        out.append((t.gettext("Firing ({n})", n=len(firing)), True, firing))
    if resolved:
        out.append((t.gettext("Resolved ({n})", n=len(resolved)), False, resolved))
    return out


# -- email -----------------------------------------------------------------------------------------


def email_text(
    n: Notification, names: Names, *, external_url: str | None, t: Translator | None = None
) -> str:
    t = t or language_of(names)
    lines = [subject(n, names, t).split("] ", 1)[-1], ""]
    for heading, _firing, alerts in _sections(n, t):
        lines.append(f"{heading}:")
        for a in alerts:
            lines += _alert_lines(a, names, t)
        lines.append("")
    sites = sorted({s for a in n.alerts if (s := a.labels.get("site"))})
    links = [u for s in sites if (u := site_url(external_url, s))]
    if links:
        lines.append(t.gettext("Details:"))
        lines += [f"  {u}" for u in links]
        lines.append("")
    province = names.province_name or names.province_id
    lines.append("-- " + t.gettext("uptimewatch {province} · notice {id}", province=province, id=n.id))
    return "\n".join(lines) + "\n"


def email_html(
    n: Notification, names: Names, *, external_url: str | None, t: Translator | None = None
) -> str:
    t = t or language_of(names)
    esc = html.escape
    parts = [
        f'<!DOCTYPE html><html lang="{t.language}"><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif">',
        f"<h2>{esc(subject(n, names, t))}</h2>",
    ]
    head = (
        t.gettext("Severity"),
        t.gettext("Alert"),
        t.gettext("Site"),
        t.gettext("Since"),
        t.gettext("Summary"),
    )
    for heading, firing, alerts in _sections(n, t):
        colour = "#b00020" if firing else "#1b5e20"
        parts.append(f'<h3 style="color:{colour}">{esc(heading)}</h3>')
        parts.append('<table cellpadding="4" style="border-collapse:collapse">')
        parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        for a in alerts:
            site = a.labels.get("site", "")
            url = site_url(external_url, site) if site else None
            site_cell = esc(names.sites.get(site, site))
            if url:
                site_cell = f'<a href="{esc(url)}">{site_cell}</a>'
            since = t.datetime(a.starts_at) if a.starts_at else ""
            parts.append(
                f"<tr><td>{esc(severity_word(a.severity, t))}</td><td>{esc(alert_title(a.name, t))}</td>"
                f"<td>{site_cell}</td><td>{esc(since)}</td><td>{esc(t.text(a.summary))}</td></tr>"
            )
        parts.append("</table>")
    sites = sorted({s for a in n.alerts if (s := a.labels.get("site"))})
    links = [(s, u) for s in sites if (u := site_url(external_url, s))]
    if links:
        items = "".join(f'<li><a href="{esc(u)}">{esc(names.sites.get(s, s))}</a></li>' for s, u in links)
        parts.append(f"<p>{esc(t.gettext('Details:'))}</p><ul>{items}</ul>")
    footer = t.gettext(
        "uptimewatch {province} · notice {id}", province=names.province_name or names.province_id, id=n.id
    )
    parts.append(f'<p style="color:#777">{esc(footer)}</p></body></html>')
    return "\n".join(parts) + "\n"


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID that is the same on every retry, so a resent email is recognisably the same."""
    local = re.sub(r"[^A-Za-z0-9.\-_]", "-", notification_id) or "notice"
    return f"<{local}@{domain}>"


# -- webhook and MQTT ------------------------------------------------------------------------------


def notification_payload(n: Notification) -> bytes:
    """The JSON body of webhook posts and MQTT event messages."""
    return json.dumps({"version": PAYLOAD_VERSION, **n.to_dict()}, ensure_ascii=False, sort_keys=True).encode(
        "utf-8"
    )


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the value of the ``X-Uptimewatch-Signature`` header."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def site_state_topic(prefix: str, province: str, district: str, site: str) -> str:
    return f"{prefix}/{province}/{district}/{site}/state"


def events_topic(prefix: str, province: str) -> str:
    return f"{prefix}/{province}/events"


def site_state_payload(
    *, site: str, name: str, district: str, carrier: str, state: str, reason: str, since: float | None
) -> bytes:
    return json.dumps(
        {
            "version": PAYLOAD_VERSION,
            "site": site,
            "name": name,
            "district": district,
            "carrier": carrier,
            "state": state,
            "reason": reason,
            "since": since,
        },
        ensure_ascii=False,
        sort_keys=True,
    ).encode("utf-8")


# -- Alertmanager ----------------------------------------------------------------------------------


def alertmanager_alerts(n: Notification, *, external_url: str | None) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``: one entry per alert; resolved ones carry ``endsAt``."""
    out: list[dict[str, Any]] = []
    for a in n.alerts:
        labels = {_label_name(k): str(v) for k, v in a.labels.items() if v != ""}
        labels["alertname"] = a.name
        labels["severity"] = a.severity
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {"summary": str(a.summary), "description": str(a.description or a.summary)},
            "startsAt": rfc3339(a.starts_at or n.created_at),
        }
        if a.state == "resolved":
            alert["endsAt"] = rfc3339(a.ends_at or n.created_at)
        if url := site_url(external_url, a.labels.get("site")):
            alert["generatorURL"] = url
        out.append(alert)
    return out


def _label_name(key: str) -> str:
    name = _LABEL_NAME.sub("_", key)
    return f"_{name}" if not name or name[0].isdigit() else name
