"""The alert engine: a pure function ``step(state, event, now) -> (state, notifications)``.

No I/O and no clock of its own, so tests replay hours of history in milliseconds and the service
can persist exactly what a step decided before anyone is told.

Lifecycle of one alert (one fingerprint: rule name + the site/device it is about):

* **pending** while its condition holds for less than the rule's ``for``; a pending alert whose
  condition goes away is forgotten, nobody having heard of it;
* **firing** once ``for`` has passed. The first notice goes out when its group is flushed
  (``group_wait`` after the group's first news, then at most every ``group_interval``), unless a
  silence or a maintenance window mutes it: a muted alert is still recorded, and is announced if
  it is still firing when the mute ends;
* **resolved** when its condition has been false for ``resolve_after`` (0: the first evaluation
  that finds it false), which keeps a flapping condition from resolving and refiring. Every
  receiver that was told it fired is told it resolved, muted or not, acked or not. A condition that
  comes back before the resolved notice went out continues the same episode: nobody hears of the
  flap.

Reminders go to the current receivers every ``repeat_interval`` (a critical period or a route may
shorten it) until the alert is acknowledged; escalation steps go out when an alert stays
unacknowledged ``after`` its firing. An ack is cleared when the alert resolves.

Notification ids are derived from their content (receiver, kind, group, alerts and episode), so
a notice re-handed to the outbox after a crash has the same id and is dropped as a duplicate.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..i18n import N_, Phrase, Text, phrase_from_json, phrase_to_json
from ..model.observation import FieldValue
from ..notify.types import AlertInfo, NoticeKind, Notification
from .routing import Policy
from .silences import Silence

AlertState = Literal["pending", "firing", "resolved"]
HEARTBEAT = "Heartbeat"


def fingerprint(name: str, labels: Mapping[str, str]) -> str:
    """Stable id of an alert: its rule name and the labels that say what it is about."""
    ident = "\0".join((name, labels.get("site", ""), labels.get("device", ""), labels.get("instance", "")))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule's condition that holds now for one subject."""

    fingerprint: str
    name: str
    severity: str
    labels: Mapping[str, str]
    summary: Phrase
    for_s: float = 0.0
    description: Phrase = ""
    value: FieldValue = None


@dataclass(frozen=True, slots=True)
class Alert:
    fingerprint: str
    name: str
    severity: str
    labels: Mapping[str, str]
    summary: Phrase  # msgid + parameters, kept so every notice renders in its reader's language
    state: AlertState
    active_since: float  # when the condition became true (start of pending)
    description: Phrase = ""
    value: FieldValue = None
    fired_at: float | None = None
    resolved_at: float | None = None
    false_since: float | None = None  # condition false since, while still firing (hysteresis)
    announced_at: float | None = None  # the firing notice of this episode went out (to anybody)
    notified: tuple[str, ...] = ()  # receivers told it fires: they must hear it resolved
    resolved_sent: bool = False
    last_notice_at: float | None = None  # firing notice or last reminder, for repeat_interval
    reminders: int = 0
    escalated: tuple[str, ...] = ()  # escalation step keys already sent
    ack_by: str | None = None
    ack_comment: str | None = None
    ack_at: float | None = None

    @property
    def acked(self) -> bool:
        return self.ack_by is not None

    def info(self) -> AlertInfo:
        return AlertInfo(
            fingerprint=self.fingerprint,
            name=self.name,
            severity=self.severity,
            state=self.state,
            labels=self.labels,
            summary=self.summary,
            description=self.description,
            starts_at=self.fired_at if self.fired_at is not None else self.active_since,
            ends_at=self.resolved_at,
            acknowledged_by=self.ack_by,
            ack_comment=self.ack_comment,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["summary"] = phrase_to_json(self.summary)
        d["description"] = phrase_to_json(self.description)
        d["labels"] = dict(self.labels)
        d["notified"] = list(self.notified)
        d["escalated"] = list(self.escalated)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        data = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        data["labels"] = dict(d["labels"])
        data["notified"] = tuple(d.get("notified") or ())
        data["escalated"] = tuple(d.get("escalated") or ())
        data["summary"] = phrase_from_json(d.get("summary"))
        data["description"] = phrase_from_json(d.get("description"))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Group:
    """Notice timing of one group (alerts sharing the ``group_by`` labels)."""

    key: str
    labels: Mapping[str, str]
    news_since: float | None = None  # when something first needed telling since the last flush
    last_flush: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "labels": dict(self.labels),
            "news_since": self.news_since,
            "last_flush": self.last_flush,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Group:
        return cls(d["key"], dict(d["labels"]), d.get("news_since"), d.get("last_flush"))


@dataclass(frozen=True, slots=True)
class EngineState:
    policy: Policy
    alerts: Mapping[str, Alert] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    silences: Mapping[str, Silence] = field(default_factory=dict)
    heartbeat_at: float | None = None


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The rules' verdict at one moment: every condition that holds. Alerts of subjects in
    ``unjudged`` (sites not polled since the daemon started) keep their state untouched."""

    candidates: Mapping[str, Candidate]
    unjudged: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: group flushes, reminders, escalations, heartbeats, expiry."""


@dataclass(frozen=True, slots=True)
class Ack:
    fingerprint: str
    by: str
    comment: str


@dataclass(frozen=True, slots=True)
class SilenceAdded:
    silence: Silence


@dataclass(frozen=True, slots=True)
class SilenceExpired:
    silence_id: str


@dataclass(frozen=True, slots=True)
class Reconfigured:
    policy: Policy


Event = Evaluation | Tick | Ack | SilenceAdded | SilenceExpired | Reconfigured


class AckError(ValueError):
    """The ack names no alert that can be acknowledged."""


# -- the step --------------------------------------------------------------------------------------


def rebase(state: EngineState, step: float) -> EngineState:
    """The state after the wall clock stepped by ``step`` seconds (see :mod:`uptimewatch.clock`).

    Every moment the engine measures a duration from moves with the clock, so ``for``,
    ``resolve_after``, reminders, escalations, group timers and the heartbeat keep the time they
    had left, and the stamps stay true in the new wall time. Silences and maintenance windows are
    not moved: they say "until 18:00", which means the wall clock's 18:00.
    """
    if not step:
        return state

    def move(value: float | None) -> float | None:
        return None if value is None else value + step

    alerts = {
        fp: replace(
            a,
            active_since=a.active_since + step,
            fired_at=move(a.fired_at),
            resolved_at=move(a.resolved_at),
            false_since=move(a.false_since),
            announced_at=move(a.announced_at),
            last_notice_at=move(a.last_notice_at),
            ack_at=move(a.ack_at),
        )
        for fp, a in state.alerts.items()
    }
    groups = {
        key: replace(g, news_since=move(g.news_since), last_flush=move(g.last_flush))
        for key, g in state.groups.items()
    }
    return replace(state, alerts=alerts, groups=groups, heartbeat_at=move(state.heartbeat_at))


def step(state: EngineState, event: Event, now: float) -> tuple[EngineState, list[Notification]]:
    """Apply one event at time ``now``; returns the new state and the notices to hand over."""
    alerts = dict(state.alerts)
    silences = state.silences
    policy = state.policy
    notes: list[Notification] = []
    if isinstance(event, Evaluation):
        _evaluate(alerts, event, now, policy)
    elif isinstance(event, Ack):
        notes += _ack(alerts, event, now, policy)
    elif isinstance(event, SilenceAdded):
        silences = {**silences, event.silence.id: event.silence}
    elif isinstance(event, SilenceExpired):
        old = silences.get(event.silence_id)
        if old is not None and old.ends_at > now:
            silences = {**silences, old.id: replace(old, ends_at=max(now, old.starts_at))}
    elif isinstance(event, Reconfigured):
        policy = event.policy
    groups = dict(state.groups)
    notes += _notify(alerts, groups, silences, now, policy)
    heartbeat_at = state.heartbeat_at
    if policy.heartbeat_receivers and (
        heartbeat_at is None or now - heartbeat_at >= policy.heartbeat_interval
    ):
        heartbeat_at = now
        notes += _heartbeat(now, policy)
    _expire(alerts, now, policy)
    silences = {k: s for k, s in silences.items() if s.ends_at + policy.retention > now}
    new = EngineState(policy, alerts, groups, silences, heartbeat_at)
    return new, notes


def _evaluate(alerts: dict[str, Alert], ev: Evaluation, now: float, policy: Policy) -> None:
    for fp, c in ev.candidates.items():
        a = alerts.get(fp)
        if a is None or (a.state == "resolved" and (a.resolved_sent or not a.notified)):
            a = Alert(fp, c.name, c.severity, c.labels, c.summary, "pending", now, c.description, c.value)
        elif a.state == "resolved":
            # back before anyone heard it had ended: the same episode goes on
            a = replace(a, state="firing", resolved_at=None, false_since=None)
        else:
            a = replace(
                a,
                severity=c.severity,
                labels=c.labels,
                summary=c.summary,
                description=c.description,
                value=c.value,
                false_since=None,
            )
        if a.state == "pending" and now - a.active_since >= c.for_s:
            a = replace(a, state="firing", fired_at=now)
        alerts[fp] = a
    for fp, a in list(alerts.items()):
        if fp in ev.candidates or a.state == "resolved" or a.labels.get("site", "") in ev.unjudged:
            continue
        if a.state == "pending":
            del alerts[fp]
            continue
        false_since = a.false_since if a.false_since is not None else now
        if now - false_since >= policy.resolve_after:
            alerts[fp] = replace(
                a,
                state="resolved",
                resolved_at=now,
                false_since=None,
                ack_by=None,
                ack_comment=None,
                ack_at=None,
            )
        else:
            alerts[fp] = replace(a, false_since=false_since)


def _ack(alerts: dict[str, Alert], ev: Ack, now: float, policy: Policy) -> list[Notification]:
    a = alerts.get(ev.fingerprint)
    if a is None or a.state == "resolved":
        raise AckError(f"no active alert {ev.fingerprint}")
    a = replace(a, ack_by=ev.by, ack_comment=ev.comment, ack_at=now)
    alerts[a.fingerprint] = a
    key, glabels = group_of(a.labels, policy)
    return [
        _notice(
            "acknowledged", receiver, [a], key=key, glabels=glabels, now=now, policy=policy, extra=f"{now!r}"
        )
        for receiver in a.notified
    ]


def muted_by(
    a: Alert, silences: Mapping[str, Silence] | Iterable[Silence], now: float, policy: Policy
) -> str | None:
    """``silence:ID`` or ``maintenance:NAME`` when the alert is muted now, else None."""
    values = silences.values() if isinstance(silences, Mapping) else silences
    for s in values:
        if s.mutes(a.labels, now):
            return f"silence:{s.id}"
    name = policy.maintenance_for(a.labels, now)
    return None if name is None else f"maintenance:{name}"


def group_of(labels: Mapping[str, str], policy: Policy) -> tuple[str, dict[str, str]]:
    glabels = {k: labels.get(k, "") for k in policy.group_by}
    return ",".join(f"{k}={v}" for k, v in glabels.items()), glabels


def _notify(
    alerts: dict[str, Alert],
    groups: dict[str, Group],
    silences: Mapping[str, Silence],
    now: float,
    policy: Policy,
) -> list[Notification]:
    active = [s for s in silences.values() if s.active(now)]
    # what each group has to say now, or will have once its timer is up
    news: dict[str, list[Alert]] = {}
    follow_up: dict[str, list[Alert]] = {}  # reminders and escalations: not held back by grouping
    members: dict[str, dict[str, str]] = {}
    for a in alerts.values():
        if a.state == "pending":
            continue
        key, glabels = group_of(a.labels, policy)
        if a.state == "resolved":
            if a.notified and not a.resolved_sent:
                news.setdefault(key, []).append(a)
                members[key] = glabels
            continue
        members[key] = glabels
        mute = muted_by(a, active, now, policy)
        if mute is not None:
            continue
        if a.announced_at is None:
            news.setdefault(key, []).append(a)
        elif not a.acked:
            follow_up.setdefault(key, []).append(a)

    notes: list[Notification] = []
    for key, glabels in members.items():
        g = groups.get(key) or Group(key, glabels)
        pending = news.get(key)
        if pending:
            if g.news_since is None:
                g = replace(g, news_since=now)
            assert g.news_since is not None
            ready = g.news_since + policy.group_wait
            if g.last_flush is not None:
                ready = max(ready, g.last_flush + policy.group_interval)
            if now >= ready:
                notes += _flush(alerts, pending, key=key, glabels=glabels, now=now, policy=policy)
                g = replace(g, news_since=None, last_flush=now)
        groups[key] = g
        if key in follow_up:
            notes += _follow_up(alerts, follow_up[key], key=key, glabels=glabels, now=now, policy=policy)
    for key in list(groups):
        if key not in members:
            del groups[key]  # nothing left to say: the next incident starts a fresh group_wait
    return notes


def _flush(
    alerts: dict[str, Alert],
    pending: list[Alert],
    *,
    key: str,
    glabels: Mapping[str, str],
    now: float,
    policy: Policy,
) -> list[Notification]:
    firing: dict[str, list[Alert]] = {}
    resolved: dict[str, list[Alert]] = {}
    for a in pending:
        if a.state == "resolved":
            for r in a.notified:
                resolved.setdefault(r, []).append(a)
            alerts[a.fingerprint] = replace(a, resolved_sent=True)
            continue
        receivers = policy.receivers(a.labels, now)
        for r in receivers:
            firing.setdefault(r, []).append(a)
        alerts[a.fingerprint] = replace(
            a,
            announced_at=now,
            last_notice_at=now,
            notified=_union(a.notified, receivers),
        )
    notes = [
        _notice("firing", r, items, key=key, glabels=glabels, now=now, policy=policy)
        for r, items in firing.items()
    ]
    notes += [
        _notice("resolved", r, items, key=key, glabels=glabels, now=now, policy=policy)
        for r, items in resolved.items()
    ]
    return notes


def _follow_up(
    alerts: dict[str, Alert],
    candidates: list[Alert],
    *,
    key: str,
    glabels: Mapping[str, str],
    now: float,
    policy: Policy,
) -> list[Notification]:
    reminders: dict[str, list[Alert]] = {}
    escalations: dict[tuple[str, str], list[Alert]] = {}
    for item in candidates:
        a = alerts[item.fingerprint]
        assert a.last_notice_at is not None
        if now - a.last_notice_at >= policy.repeat_for(a.labels, now):
            receivers = policy.receivers(a.labels, now)
            for r in receivers:
                reminders.setdefault(r, []).append(a)
            a = replace(
                a,
                last_notice_at=now,
                reminders=a.reminders + 1,
                notified=_union(a.notified, receivers),
            )
        fired_at = a.fired_at if a.fired_at is not None else a.active_since
        for esc in policy.escalations(a.labels):
            if esc.key in a.escalated or now - fired_at < esc.after:
                continue
            receivers = policy.expand(esc.receiver, now)
            for r in receivers:
                escalations.setdefault((r, esc.key), []).append(a)
            a = replace(a, escalated=(*a.escalated, esc.key), notified=_union(a.notified, receivers))
        alerts[a.fingerprint] = a
    notes = [
        _notice("reminder", r, items, key=key, glabels=glabels, now=now, policy=policy, extra=f"{now!r}")
        for r, items in reminders.items()
    ]
    notes += [
        _notice("escalation", r, items, key=key, glabels=glabels, now=now, policy=policy, extra=step_key)
        for (r, step_key), items in escalations.items()
    ]
    return notes


def _heartbeat(now: float, policy: Policy) -> list[Notification]:
    labels = {"alertname": HEARTBEAT, "severity": "info", "province": policy.province}
    info = AlertInfo(
        fingerprint=fingerprint(HEARTBEAT, labels),
        name=HEARTBEAT,
        severity="info",
        state="firing",
        labels=labels,
        summary=Text(
            N_("uptimewatch is alive: this alert always fires; its silence means the monitoring is down")
        ),
        starts_at=now,
    )
    out = []
    for r in policy.heartbeat_receivers:
        nid = _id("heartbeat", r, HEARTBEAT, [], f"{now!r}")
        out.append(
            Notification(
                nid,
                "heartbeat",
                r,
                HEARTBEAT,
                f"[HEARTBEAT] uptimewatch {policy.province}",
                (info,),
                now,
                labels,
            )
        )
    return out


def _expire(alerts: dict[str, Alert], now: float, policy: Policy) -> None:
    for fp, a in list(alerts.items()):
        if (
            a.state == "resolved"
            and (a.resolved_sent or not a.notified)
            and a.resolved_at is not None
            and now - a.resolved_at >= policy.retention
        ):
            del alerts[fp]


def _union(old: tuple[str, ...], new: Iterable[str]) -> tuple[str, ...]:
    out = list(old)
    out += [r for r in new if r not in out]
    return tuple(out)


# -- notices ---------------------------------------------------------------------------------------

_TAGS: dict[str, str] = {
    "firing": "FIRING",
    "resolved": "RESOLVED",
    "reminder": "REMINDER",
    "escalation": "ESCALATION",
    "acknowledged": "ACK",
}

_PLURAL: dict[str, str] = {
    "SiteDown": "sites down",
    "DeviceDown": "devices down",
    "OnBattery": "sites on battery",
    "BatteryLow": "batteries running low",
    "HighPacketLoss": "devices losing packets",
    "LinkRxLevelLow": "links with a low receive level",
    "LinkSnrLow": "links with a low SNR",
    "DeviceRebooted": "devices rebooted",
    "SnmpAuthFailure": "devices rejecting SNMP credentials",
}


def title(kind: str, alerts: list[Alert], glabels: Mapping[str, str], policy: Policy) -> str:
    """``[FIRING] 5 sites down in Huyện Mai Châu, VNPT``."""
    where = ", ".join(policy.display(k, v) for k, v in glabels.items() if v)
    tag = _TAGS.get(kind, kind.upper())
    if len(alerts) == 1:
        text = str(alerts[0].summary)
    else:
        names = sorted({a.name for a in alerts})
        if len(names) == 1:
            text = f"{len(alerts)} {_PLURAL.get(names[0], names[0] + ' alerts')}"
        else:
            text = f"{len(alerts)} alerts ({', '.join(names)})"
        if where:
            text += f" in {where}"
    return f"[{tag}] {text}"


def _id(kind: str, receiver: str, key: str, alerts: list[Alert], extra: str = "") -> str:
    h = hashlib.sha256()
    for part in (kind, receiver, key, extra):
        h.update(part.encode())
        h.update(b"\0")
    for a in sorted(alerts, key=lambda x: x.fingerprint):
        episode = a.fired_at if a.fired_at is not None else a.active_since
        h.update(f"{a.fingerprint}@{episode!r}\0".encode())
    return h.hexdigest()[:32]


def _notice(
    kind: NoticeKind,
    receiver: str,
    alerts: list[Alert],
    *,
    key: str,
    glabels: Mapping[str, str],
    now: float,
    policy: Policy,
    extra: str = "",
) -> Notification:
    ordered = sorted(alerts, key=lambda a: (a.name, a.labels.get("site", ""), a.labels.get("device", "")))
    return Notification(
        id=_id(kind, receiver, key, ordered, extra),
        kind=kind,
        receiver=receiver,
        group_key=key,
        title=title(kind, ordered, glabels, policy),
        alerts=tuple(a.info() for a in ordered),
        created_at=now,
        labels=dict(glabels),
    )
