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
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .base import PAYLOAD_VERSION, Names
from .types import AlertInfo, Notification

_TAGS = {
    "firing": "FIRING",
    "resolved": "RESOLVED",
    "reminder": "FIRING",
    "escalation": "ESCALATED",
    "acknowledged": "ACK",
    "heartbeat": "HEARTBEAT",
    "test": "TEST",
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


def subject(n: Notification, names: Names) -> str:
    """``[FIRING:3] SiteDown — Huyện Mai Châu (VNPT)``."""
    tag = _TAGS.get(n.kind, n.kind.upper())
    firing = sum(1 for a in n.alerts if a.state == "firing")
    if n.kind in ("firing", "reminder", "escalation") and firing:
        tag = f"{tag}:{firing}"
    elif n.kind == "resolved":
        tag = f"{tag}:{len(n.alerts)}" if len(n.alerts) > 1 else tag
    text = f"[{tag}] {alert_name(n)} — {where(n, names)}"
    if n.kind == "reminder":
        text += " (reminder)"
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


def _alert_lines(a: AlertInfo, names: Names, timezone: str) -> list[str]:
    site = a.labels.get("site")
    lines = [f"- [{a.severity}] {a.name}: {a.summary}"]
    facts = []
    if site:
        facts.append(f"site {names.sites.get(site, site)} ({site})")
    if device := a.labels.get("device"):
        facts.append(f"device {device}")
    if a.starts_at:
        facts.append(f"since {local_time(a.starts_at, timezone)}")
    if a.state == "resolved" and a.ends_at:
        facts.append(f"resolved {local_time(a.ends_at, timezone)}")
    if facts:
        lines.append("  " + " · ".join(facts))
    if a.description:
        lines.append(f"  {a.description}")
    if a.acknowledged_by:
        comment = f": {a.ack_comment}" if a.ack_comment else ""
        lines.append(f"  acknowledged by {a.acknowledged_by}{comment}")
    return lines


def _sections(n: Notification) -> list[tuple[str, list[AlertInfo]]]:
    firing = [a for a in n.alerts if a.state != "resolved"]
    resolved = [a for a in n.alerts if a.state == "resolved"]
    return [(title, group) for title, group in (("Firing", firing), ("Resolved", resolved)) if group]


# -- email -----------------------------------------------------------------------------------------


def email_text(n: Notification, names: Names, *, timezone: str, external_url: str | None) -> str:
    lines = [subject(n, names).split("] ", 1)[-1], ""]
    if n.title and n.title != alert_name(n):
        lines += [n.title, ""]
    for title, alerts in _sections(n):
        lines.append(f"{title} ({len(alerts)}):")
        for a in alerts:
            lines += _alert_lines(a, names, timezone)
        lines.append("")
    sites = sorted({s for a in n.alerts if (s := a.labels.get("site"))})
    links = [u for s in sites if (u := site_url(external_url, s))]
    if links:
        lines.append("Details:")
        lines += [f"  {u}" for u in links]
        lines.append("")
    lines.append(f"-- uptimewatch {names.province_name or names.province_id} · notice {n.id}")
    return "\n".join(lines) + "\n"


def email_html(n: Notification, names: Names, *, timezone: str, external_url: str | None) -> str:
    esc = html.escape
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="font-family:sans-serif">',
        f"<h2>{esc(subject(n, names))}</h2>",
    ]
    for title, alerts in _sections(n):
        colour = "#b00020" if title == "Firing" else "#1b5e20"
        parts.append(f'<h3 style="color:{colour}">{esc(title)} ({len(alerts)})</h3>')
        parts.append('<table cellpadding="4" style="border-collapse:collapse">')
        parts.append("<tr><th>Severity</th><th>Alert</th><th>Site</th><th>Since</th><th>Summary</th></tr>")
        for a in alerts:
            site = a.labels.get("site", "")
            url = site_url(external_url, site) if site else None
            site_cell = esc(names.sites.get(site, site))
            if url:
                site_cell = f'<a href="{esc(url)}">{site_cell}</a>'
            since = local_time(a.starts_at, timezone) if a.starts_at else ""
            parts.append(
                f"<tr><td>{esc(a.severity)}</td><td>{esc(a.name)}</td><td>{site_cell}</td>"
                f"<td>{esc(since)}</td><td>{esc(a.summary)}</td></tr>"
            )
        parts.append("</table>")
    parts.append(f'<p style="color:#777">uptimewatch · notice {esc(n.id)}</p></body></html>')
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
            "annotations": {"summary": a.summary, "description": a.description or a.summary},
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
