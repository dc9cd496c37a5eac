"""The boundary between the alert engine (which decides what to say) and the channels (which say it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..i18n import Phrase, Text, phrase_from_json, phrase_to_json

AlertState = Literal["pending", "firing", "resolved"]
NoticeKind = Literal["firing", "resolved", "reminder", "escalation", "acknowledged", "heartbeat", "test"]


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """One alert as a notification shows it."""

    fingerprint: str  # stable id of the alert: hash of its name and identifying labels
    name: str  # e.g. "SiteDown", "OnBattery", "BatteryLow"
    severity: str  # "critical" | "warning" | "info"
    state: AlertState
    labels: Mapping[str, str]  # province, district, commune, carrier, site, device, role, ...
    #: one line for a person: "Trạm Pà Cò down: no reply to ping"; a Text renders in any language
    summary: Phrase
    description: Phrase = ""
    starts_at: float = 0.0  # unix time
    ends_at: float | None = None
    acknowledged_by: str | None = None
    ack_comment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "name": self.name,
            "severity": self.severity,
            "state": self.state,
            "labels": dict(self.labels),
            # English for machines and old readers; *_text keeps msgid + parameters for rendering
            "summary": str(self.summary),
            "description": str(self.description),
            **{f"{k}_text": phrase_to_json(v) for k, v in self._texts()},
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "acknowledged_by": self.acknowledged_by,
            "ack_comment": self.ack_comment,
        }

    def _texts(self) -> list[tuple[str, Text]]:
        return [
            (k, v)
            for k, v in (("summary", self.summary), ("description", self.description))
            if isinstance(v, Text)
        ]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertInfo:
        return cls(
            fingerprint=d["fingerprint"],
            name=d["name"],
            severity=d["severity"],
            state=d["state"],
            labels=dict(d.get("labels") or {}),
            summary=phrase_from_json(d.get("summary_text", d.get("summary"))),
            description=phrase_from_json(d.get("description_text", d.get("description"))),
            starts_at=float(d.get("starts_at") or 0.0),
            ends_at=d.get("ends_at"),
            acknowledged_by=d.get("acknowledged_by"),
            ack_comment=d.get("ack_comment"),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one receiver about one group of alerts. ``id`` is unique and stable, so a
    channel (or its peer) can drop a duplicate after a crash between send and record."""

    id: str
    kind: NoticeKind
    receiver: str  # receiver name from the configuration
    group_key: str  # e.g. "district=d1,carrier=vnpt": notices of one group thread together
    title: str
    alerts: tuple[AlertInfo, ...]
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)  # the group's common labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "receiver": self.receiver,
            "group_key": self.group_key,
            "title": self.title,
            "alerts": [a.to_dict() for a in self.alerts],
            "created_at": self.created_at,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Notification:
        return cls(
            id=d["id"],
            kind=d["kind"],
            receiver=d["receiver"],
            group_key=d["group_key"],
            title=d["title"],
            alerts=tuple(AlertInfo.from_dict(a) for a in d["alerts"]),
            created_at=float(d["created_at"]),
            labels=dict(d.get("labels") or {}),
        )
