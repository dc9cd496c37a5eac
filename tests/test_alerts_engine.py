"""The pure alert engine on replayed timelines: hours of injected time in milliseconds.

Conditions are given directly as candidates (what the rules would find), so each test reads as a
timeline: "site s1 down from 09:00 to 09:20", and checks exactly which notices go to whom, when.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from typing import Any

import pytest

from uptimewatch.alerts.engine import (
    Ack,
    AckError,
    Candidate,
    EngineState,
    Evaluation,
    Event,
    SilenceAdded,
    SilenceExpired,
    Tick,
    fingerprint,
    step,
)
from uptimewatch.alerts.routing import Policy
from uptimewatch.alerts.silences import Silence
from uptimewatch.config.alerting import AlertingConfig
from uptimewatch.notify.types import Notification

TZ = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
#: Monday 18 May 2026, 09:00 in Hòa Bình
T0 = dt.datetime(2026, 5, 18, 9, 0, tzinfo=TZ).timestamp()
MIN = 60.0
HOUR = 3600.0


def policy(**alerting: Any) -> Policy:
    cfg = AlertingConfig.model_validate(alerting)
    names = {"district": {"d1": "Huyện Mai Châu", "d2": "Huyện Lạc Sơn"}, "carrier": {"vnpt": "VNPT"}}
    return Policy.from_config(cfg, timezone="Asia/Ho_Chi_Minh", province="hb", names=names)


def cand(
    site: str,
    name: str = "SiteDown",
    *,
    district: str = "d1",
    carrier: str = "vnpt",
    severity: str = "critical",
    for_s: float = 0.0,
    device: str | None = None,
) -> Candidate:
    labels = {
        "province": "hb",
        "district": district,
        "carrier": carrier,
        "site": site,
        "priority": "normal",
        "alertname": name,
        "severity": severity,
    }
    if device is not None:
        labels |= {"device": device, "role": "power"}
    return Candidate(fingerprint(name, labels), name, severity, labels, f"Trạm {site}: {name}", for_s)


class Replay:
    """Drives :func:`step` with an injected clock and keeps every notice."""

    def __init__(self, pol: Policy, start: float = T0) -> None:
        self.state = EngineState(pol)
        self.now = start
        self.sent: list[Notification] = []

    def apply(self, event: Event) -> list[Notification]:
        self.state, notes = step(self.state, event, self.now)
        self.sent += notes
        return notes

    def run(self, seconds: float, conditions: Iterable[Candidate] = (), *, every: float = 10.0) -> None:
        """Evaluate every ``every`` seconds for ``seconds``, with these conditions holding."""
        found = {c.fingerprint: c for c in conditions}
        end = self.now + seconds
        while self.now < end:
            self.apply(Evaluation(found))
            self.now += every

    def kinds(self, receiver: str | None = None) -> list[str]:
        return [n.kind for n in self.sent if receiver is None or n.receiver == receiver]

    def of(self, kind: str) -> list[Notification]:
        return [n for n in self.sent if n.kind == kind]


def test_pending_then_firing_after_for() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0))
    c = cand("s1", "OnBattery", for_s=5 * MIN, severity="warning")
    r.run(4 * MIN, [c])
    assert r.state.alerts[c.fingerprint].state == "pending"
    assert r.sent == []
    r.run(2 * MIN, [c])
    assert r.state.alerts[c.fingerprint].state == "firing"
    assert r.kinds() == ["firing"]
    # a condition that goes away while pending is forgotten: nobody hears of it
    c2 = cand("s2", "OnBattery", for_s=5 * MIN)
    r.run(2 * MIN, [c, c2])
    r.run(1 * MIN, [c])
    assert c2.fingerprint not in r.state.alerts
    assert r.kinds() == ["firing"]


def test_hysteresis_keeps_a_flapping_condition_firing() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0, group_interval=0, resolve_after="2m"))
    c = cand("s1")
    r.run(5 * MIN, [c])
    # one hour of flapping: 1 minute false, 1 minute true
    for _ in range(30):
        r.run(1 * MIN, [])
        r.run(1 * MIN, [c])
    assert r.kinds() == ["firing"]
    r.run(3 * MIN, [])
    assert r.kinds() == ["firing", "resolved"]
    assert r.state.alerts[c.fingerprint].state == "resolved"


def test_without_hysteresis_the_first_false_evaluation_resolves() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0, group_interval=0))
    c = cand("s1")
    r.run(1 * MIN, [c])
    r.run(10, [])
    assert r.kinds() == ["firing", "resolved"]
    resolved = r.of("resolved")[0]
    assert resolved.alerts[0].state == "resolved"
    assert resolved.alerts[0].ends_at is not None


def test_reminders_at_repeat_interval_until_ack_and_ack_cleared_on_resolve() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0, repeat_interval="1h"))
    c = cand("s1")
    r.run(3 * HOUR + 30 * MIN, [c], every=MIN)
    assert r.kinds() == ["firing", "reminder", "reminder", "reminder"]
    reminder_times = [n.created_at - T0 for n in r.of("reminder")]
    assert reminder_times == [HOUR, 2 * HOUR, 3 * HOUR]
    r.apply(Ack(c.fingerprint, "Nguyễn Văn An", "đang đi trạm"))
    assert r.kinds()[-1] == "acknowledged"
    r.run(3 * HOUR, [c], every=MIN)
    assert r.kinds().count("reminder") == 3  # acked: no more reminders
    assert r.state.alerts[c.fingerprint].ack_by == "Nguyễn Văn An"
    r.run(MIN, [])
    resolved = r.state.alerts[c.fingerprint]
    assert resolved.state == "resolved"
    assert resolved.ack_by is None
    assert r.kinds()[-1] == "resolved"
    # the next episode starts unacknowledged
    r.run(MIN, [c])
    assert r.state.alerts[c.fingerprint].ack_by is None
    with pytest.raises(AckError):
        r.apply(Ack("0000000000000000", "x", ""))


def test_five_sites_down_in_one_district_make_one_notice() -> None:
    r = Replay(policy(default_receiver="noc", group_wait="30s", group_interval="5m"))
    down = [cand(f"s{i}") for i in range(5)]
    other = cand("t1", district="d2")
    # they go down one after the other, 5 s apart, within group_wait
    for i in range(5):
        r.run(5, [*down[: i + 1], other], every=5)
    r.run(40, [*down, other], every=5)
    firing = r.of("firing")
    assert len(firing) == 2  # one per district
    d1 = next(n for n in firing if n.labels["district"] == "d1")
    assert len(d1.alerts) == 5
    assert d1.title == "[FIRING] 5 sites down in Huyện Mai Châu, VNPT"
    assert {a.labels["site"] for a in d1.alerts} == {f"s{i}" for i in range(5)}
    assert d1.group_key == "district=d1,carrier=vnpt"
    # a sixth site waits for group_interval after the first notice; the resolved ones come with it
    sixth = cand("s5")
    r.run(60, [*down[2:], sixth, other])
    assert len(r.of("firing")) == 2
    r.run(5 * MIN, [*down[2:], sixth, other])
    later = [n for n in r.sent if n.labels.get("district") == "d1"][1:]
    assert [n.kind for n in later] == ["firing", "resolved"]
    assert [a.labels["site"] for a in later[0].alerts] == ["s5"]
    assert sorted(a.labels["site"] for a in later[1].alerts) == ["s0", "s1"]
    assert later[0].created_at - d1.created_at == pytest.approx(5 * MIN, abs=10)


def test_routes_by_labels_with_continue_and_default() -> None:
    pol = policy(
        group_wait=0,
        group_interval=0,
        default_receiver="noc",
        routes=[
            {
                "match": {"severity": "critical", "carrier": "vnpt|viettel"},
                "receiver": "duty",
                "continue": True,
            },
            {"match": {"alertname": "OnBattery|BatteryLow"}, "receiver": "power-team"},
            {"match": {"district": "d2"}, "receiver": "lac-son"},
        ],
    )
    r = Replay(pol)
    r.run(
        10,
        [
            cand("s1"),
            cand("s2", "OnBattery", severity="warning"),
            cand("s3", "LinkSnrLow", district="d2", severity="warning"),
        ],
    )
    r.run(10, [cand("s4", "DeviceRebooted", severity="info")])
    by_receiver = {(n.receiver, a.labels["site"]) for n in r.of("firing") for a in n.alerts}
    assert by_receiver == {("duty", "s1"), ("power-team", "s2"), ("lac-son", "s3"), ("noc", "s4")}
    # s1 matched the critical route (continue) and then no other: duty only
    assert not any(s == "s1" and rc != "duty" for rc, s in by_receiver)


def test_roster_by_weekday_and_hour_in_local_time() -> None:
    pol = policy(
        group_wait=0,
        group_interval=0,
        routes=[{"match": {}, "receiver": "roster:noc"}],
        roster=[
            {
                "name": "noc",
                "receiver": "an",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from": "08:00",
                "to": "20:00",
            },
            {
                "name": "noc",
                "receiver": "binh",
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "from": "20:00",
                "to": "08:00",
            },
            {"name": "noc", "receiver": "chi", "days": ["sat", "sun"]},
        ],
    )
    when = {
        "Mon 09:00": dt.datetime(2026, 5, 18, 9, 0, tzinfo=TZ),
        "Mon 21:30": dt.datetime(2026, 5, 18, 21, 30, tzinfo=TZ),
        "Tue 07:59 (Monday's night shift)": dt.datetime(2026, 5, 19, 7, 59, tzinfo=TZ),
        "Sun 03:00": dt.datetime(2026, 5, 24, 3, 0, tzinfo=TZ),
        "Sat 07:00 (Friday's night shift)": dt.datetime(2026, 5, 23, 7, 0, tzinfo=TZ),
        "Mon 07:00 (Sunday: no night shift)": dt.datetime(2026, 5, 25, 7, 0, tzinfo=TZ),
    }
    got = {}
    for label, moment in when.items():
        r = Replay(pol, start=moment.timestamp())
        r.run(10, [cand("s1")])
        got[label] = sorted(n.receiver for n in r.of("firing"))
    assert got == {
        "Mon 09:00": ["an"],
        "Mon 21:30": ["binh"],
        "Tue 07:59 (Monday's night shift)": ["binh"],
        "Sun 03:00": ["chi"],
        "Sat 07:00 (Friday's night shift)": ["binh", "chi"],
        "Mon 07:00 (Sunday: no night shift)": [],
    }
    # UTC would say Monday 02:00 for the first moment: the roster reads local time
    assert when["Mon 09:00"].astimezone(dt.UTC).hour == 2


def test_escalation_when_unacknowledged_and_ack_stops_it() -> None:
    pol = policy(
        group_wait=0,
        routes=[
            {
                "match": {"severity": "critical"},
                "receiver": "duty",
                "escalation": [
                    {"after": "15m", "receiver": "shift-lead"},
                    {"after": "45m", "receiver": "director"},
                ],
            }
        ],
    )
    r = Replay(pol)
    a, b = cand("s1"), cand("s2", district="d2")
    r.run(20 * MIN, [a, b], every=MIN)
    assert [(n.kind, n.receiver) for n in r.sent if n.kind == "escalation"] == [
        ("escalation", "shift-lead"),
        ("escalation", "shift-lead"),
    ]
    escalated_at = r.of("escalation")[0].created_at - T0
    assert escalated_at == 15 * MIN
    r.apply(Ack(a.fingerprint, "Lò Văn Bình", "on my way"))
    r.run(40 * MIN, [a, b], every=MIN)
    to_director = [n for n in r.sent if n.receiver == "director"]
    assert [x.alerts[0].labels["site"] for x in to_director] == ["s2"]  # the acked one stops escalating
    # everyone who heard it fire hears it resolve
    r.run(MIN, [])
    resolved = sorted(n.receiver for n in r.of("resolved"))
    assert resolved == ["director", "duty", "duty", "shift-lead", "shift-lead"]


def test_silence_mutes_firing_but_resolved_still_goes_to_whoever_heard_it() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0, group_interval=0))
    heard, unheard = cand("s1"), cand("s2")
    r.run(MIN, [heard])
    silence = Silence("sil1", {"site": "s1|s2"}, r.now, r.now + HOUR, "an", "maintenance", r.now)
    r.apply(SilenceAdded(silence))
    r.run(20 * MIN, [heard, unheard])
    # s2 fired while silenced: recorded, not told
    assert r.state.alerts[unheard.fingerprint].state == "firing"
    assert [n.kind for n in r.sent] == ["firing"]
    r.run(MIN, [])
    # both resolved while silenced: s1 was notified before, so its resolved notice goes out anyway
    assert [(n.kind, [a.labels["site"] for a in n.alerts]) for n in r.sent] == [
        ("firing", ["s1"]),
        ("resolved", ["s1"]),
    ]


def test_a_silence_that_ends_lets_a_still_firing_alert_through() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0))
    c = cand("s1")
    r.apply(
        SilenceAdded(Silence("x", {"alertname": "SiteDown"}, r.now, r.now + HOUR, "an", "planned", r.now))
    )
    r.run(30 * MIN, [c])
    assert r.sent == []
    r.apply(SilenceExpired("x"))
    r.run(MIN, [c])
    assert r.kinds() == ["firing"]


def test_recurring_maintenance_window_mutes_every_night() -> None:
    pol = policy(
        default_receiver="noc",
        group_wait=0,
        group_interval=0,
        maintenance=[{"name": "night-works", "matchers": {"district": "d1"}, "from": "23:00", "to": "01:00"}],
    )
    nights = []
    for day in (18, 19, 20):  # three nights in a row
        start = dt.datetime(2026, 5, day, 23, 10, tzinfo=TZ).timestamp()
        r = Replay(pol, start=start)
        r.run(30 * MIN, [cand("s1"), cand("t1", district="d2")])
        nights.append(sorted(a.labels["site"] for n in r.sent for a in n.alerts))
        muted = r.state.alerts[cand("s1").fingerprint]
        assert muted.state == "firing"
        assert muted.announced_at is None
        r.now = dt.datetime(2026, 5, day + 1, 1, 5, tzinfo=TZ).timestamp()
        r.run(MIN, [cand("s1"), cand("t1", district="d2")])
        assert [a.labels["site"] for a in r.sent[-1].alerts] == ["s1"]  # told once the window ends
    assert nights == [["t1"], ["t1"], ["t1"]]


def test_critical_period_overrides_repeat_interval_and_adds_receivers() -> None:
    start = dt.datetime(2026, 5, 24, 6, 0)  # naive: province time
    pol = policy(
        default_receiver="noc",
        group_wait=0,
        repeat_interval="4h",
        critical_periods=[
            {
                "name": "polling-day",
                "start": start,
                "end": dt.datetime(2026, 5, 24, 22, 0),
                "repeat_interval": "30m",
                "receivers": ["so-tttt"],
            }
        ],
    )
    # an ordinary day: one receiver, no reminder in 2 hours
    r = Replay(pol, start=dt.datetime(2026, 5, 23, 9, 0, tzinfo=TZ).timestamp())
    r.run(2 * HOUR, [cand("s1")], every=MIN)
    assert [(n.kind, n.receiver) for n in r.sent] == [("firing", "noc")]
    # polling day: the extra receiver too, and reminders every 30 minutes
    r = Replay(pol, start=start.replace(tzinfo=TZ).timestamp() + HOUR)
    r.run(2 * HOUR, [cand("s1")], every=MIN)
    assert sorted(n.receiver for n in r.of("firing")) == ["noc", "so-tttt"]
    assert len(r.of("reminder")) == 2 * 3  # at 30, 60, 90 minutes, to both
    assert pol.period(start.replace(tzinfo=TZ).timestamp() - 1) is None


def test_flap_before_the_resolved_notice_continues_the_episode() -> None:
    r = Replay(policy(default_receiver="noc", group_wait=0, group_interval="5m"))
    c = cand("s1")
    r.run(MIN, [c])
    r.run(10, [])  # resolved, but its notice waits for group_interval
    r.run(10 * MIN, [c])
    assert r.kinds() == ["firing"]
    assert r.state.alerts[c.fingerprint].state == "firing"


def test_heartbeat_goes_out_periodically_to_its_receivers() -> None:
    r = Replay(policy(heartbeat_receivers=["watchdog"], heartbeat_interval="5m"))
    for _ in range(31):
        r.apply(Tick())
        r.now += MIN
    beats = r.of("heartbeat")
    assert len(beats) == 7  # at 0, 5, ..., 30 minutes
    assert {n.receiver for n in beats} == {"watchdog"}
    assert beats[0].alerts[0].name == "Heartbeat"
    assert beats[0].alerts[0].state == "firing"
    assert len({n.id for n in beats}) == 7


def test_notification_ids_are_stable_and_unique() -> None:
    def replay() -> list[str]:
        r = Replay(policy(default_receiver="noc", group_wait=0, group_interval=0, repeat_interval="1h"))
        r.run(3 * HOUR, [cand("s1"), cand("s2", district="d2")], every=MIN)
        r.run(MIN, [])
        return [n.id for n in r.sent]

    first = replay()
    assert first == replay()
    assert len(first) == len(set(first))
