"""The demo province's alerting and notification settings: who hears about what, and how.

Written into the generated config like the rest of the province, so a newcomer reads in
``<workdir>/config.yaml`` a complete, working example: alerts grouped by district and carrier,
critical ones to a two-shift duty roster, everything to the NOC of the site's carrier, all by
email to the demo's SMTP sink, and (with mosquitto) every notice on MQTT too.
"""

from __future__ import annotations

from typing import Any

#: the demo's mail domain (RFC 2606 style: never a real one)
DOMAIN = "hoabinh.example.vn"
SENDER = f"uptimewatch Hòa Bình <uptimewatch@{DOMAIN}>"
#: name, address, from, to: the two shifts of the duty roster (province time)
SHIFTS = (
    ("truc-ca-ngay", f"Trực ca ngày <truc-ca-ngay@{DOMAIN}>", "06:00", "18:00"),
    ("truc-ca-dem", f"Trực ca đêm <truc-ca-dem@{DOMAIN}>", "18:00", "06:00"),
)
MQTT_RECEIVER = "bang-tin"


def _email(smtp_host: str, smtp_port: int, to: str) -> dict[str, Any]:
    # the sink has neither TLS nor AUTH; "opportunistic" would use STARTTLS if it offered it, and
    # no password is configured, so nothing secret could cross in clear
    return {
        "host": smtp_host,
        "port": smtp_port,
        "starttls": "opportunistic",
        "sender": SENDER,
        "to": [to],
        "timeout": 10,
    }


def add_alerting(
    config: dict[str, Any],
    *,
    smtp_host: str,
    smtp_port: int,
    mqtt_port: int | None = None,
    external_url: str | None = None,
    group_wait: str = "5s",
) -> None:
    """Adds ``alerting``, ``notify`` (and with ``mqtt_port`` the ``mqtt`` broker) to a generated
    province config, in place."""
    carriers = [c["id"] for c in config["carriers"]]
    names = {c["id"]: c["name"] for c in config["carriers"]}
    receivers: list[dict[str, Any]] = [
        {"name": name, "email": _email(smtp_host, smtp_port, address)} for name, address, _f, _t in SHIFTS
    ]
    receivers += [
        {
            "name": f"noc-{cid}",
            "email": _email(smtp_host, smtp_port, f"NOC {names[cid]} <noc-{cid}@{DOMAIN}>"),
        }
        for cid in carriers
    ]
    routes: list[dict[str, Any]] = []
    if mqtt_port is not None:
        config["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "client_id": "uptimewatch-demo"}
        receivers.append({"name": MQTT_RECEIVER, "mqtt": {}})
        routes.append({"match": {}, "receiver": MQTT_RECEIVER, "continue": True})
    routes.append({"match": {"severity": "critical"}, "receiver": "roster:duty", "continue": True})
    routes += [{"match": {"carrier": cid}, "receiver": f"noc-{cid}"} for cid in carriers]

    notify: dict[str, Any] = {
        "receivers": receivers,
        "outbox": {"retry_initial": "2s", "retry_max": "30s"},
    }
    config["notify"] = notify
    if external_url:
        config["web"] = {"external_url": external_url}
    config["alerting"] = {
        "evaluation_interval": "2s",
        "group_by": ["district", "carrier"],
        # short, for a demo where a scenario hour passes in minutes
        "group_wait": group_wait,
        "group_interval": "30s",
        "repeat_interval": "1h",
        "default_receiver": "roster:duty",
        "routes": routes,
        "roster": [
            {"name": "duty", "receiver": name, "from": start, "to": end} for name, _a, start, end in SHIFTS
        ],
    }
