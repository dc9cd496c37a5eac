"""The compiled alerting policy: routes, roster, escalation, maintenance and critical periods.

Built once per (re)load from the configuration; every question the engine asks of it ("who gets
this alert now?", "is it muted?", "which period is on?") is a pure function of labels and time.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config.alerting import ROSTER_PREFIX, AlertingConfig, CriticalPeriod
from .roster import Roster, Window, local_time
from .silences import matches

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EscalationRule:
    key: str  # stable id of the step: "route index/step index"
    after: float
    receiver: str


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    match: Mapping[str, str]
    receiver: str
    cont: bool
    escalation: tuple[EscalationRule, ...]
    repeat_interval: float | None


@dataclass(frozen=True, slots=True)
class Maintenance:
    name: str
    matchers: Mapping[str, str]
    window: Window
    comment: str


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    start: float
    end: float
    battery_minutes: float | None
    loss_ratio: float | None
    rx_level_dbm: float | None
    snr_db: float | None
    repeat_interval: float | None
    receivers: tuple[str, ...]


def _timestamp(value: dt.datetime, tz: zoneinfo.ZoneInfo) -> float:
    return (value if value.tzinfo is not None else value.replace(tzinfo=tz)).timestamp()


def _period(p: CriticalPeriod, tz: zoneinfo.ZoneInfo) -> Period:
    t = p.thresholds
    return Period(
        p.name,
        _timestamp(p.start, tz),
        _timestamp(p.end, tz),
        t.battery_minutes,
        t.loss_ratio,
        t.rx_level_dbm,
        t.snr_db,
        p.repeat_interval,
        tuple(p.receivers),
    )


@dataclass(frozen=True)
class Policy:
    """Everything the engine needs from the configuration, in a form cheap to ask."""

    province: str = "province"
    group_by: tuple[str, ...] = ("district", "carrier")
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    resolve_after: float = 0.0
    retention: float = 86400.0
    default_receiver: str | None = None
    routes: tuple[CompiledRoute, ...] = ()
    roster: Roster = field(default_factory=lambda: Roster((), zoneinfo.ZoneInfo("UTC")))
    maintenance: tuple[Maintenance, ...] = ()
    periods: tuple[Period, ...] = ()
    heartbeat_receivers: tuple[str, ...] = ()
    heartbeat_interval: float = 300.0
    #: display names for titles: {"district": {"d1": "Huyện Mai Châu"}, "carrier": {...}}
    names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        cfg: AlertingConfig,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        province: str = "province",
        names: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Policy:
        tz = zoneinfo.ZoneInfo(timezone)
        routes = tuple(
            CompiledRoute(
                dict(r.match),
                r.receiver,
                r.continue_,
                tuple(EscalationRule(f"{i}/{j}", s.after, s.receiver) for j, s in enumerate(r.escalation)),
                r.repeat_interval,
            )
            for i, r in enumerate(cfg.routes)
        )
        return cls(
            province=province,
            group_by=tuple(cfg.group_by),
            group_wait=cfg.group_wait,
            group_interval=cfg.group_interval,
            repeat_interval=cfg.repeat_interval,
            resolve_after=cfg.resolve_after,
            retention=cfg.history_retention,
            default_receiver=cfg.default_receiver,
            routes=routes,
            roster=Roster(cfg.roster, tz),
            maintenance=tuple(
                Maintenance(m.name, dict(m.matchers), Window.of(m.days, m.from_, m.to), m.comment)
                for m in cfg.maintenance
            ),
            periods=tuple(_period(p, tz) for p in cfg.critical_periods),
            heartbeat_receivers=tuple(cfg.heartbeat_receivers),
            heartbeat_interval=cfg.heartbeat_interval,
            names=names or {},
        )

    # -- questions the engine asks --------------------------------------------------------------

    def period(self, now: float) -> Period | None:
        """The critical period in force (the first listed when several overlap)."""
        return next((p for p in self.periods if p.start <= now < p.end), None)

    def matched_routes(self, labels: Mapping[str, str]) -> list[CompiledRoute]:
        out: list[CompiledRoute] = []
        for route in self.routes:
            if matches(route.match, labels):
                out.append(route)
                if not route.cont:
                    break
        return out

    def expand(self, receiver: str, now: float) -> tuple[str, ...]:
        """A receiver name as is; ``roster:NAME`` as whoever is on shift now."""
        if not receiver.startswith(ROSTER_PREFIX):
            return (receiver,)
        name = receiver.removeprefix(ROSTER_PREFIX)
        on_duty = self.roster.on_duty(name, now)
        if not on_duty:
            fallback = self.default_receiver
            log.warning("nobody on shift in roster %s; notifying %s", name, fallback or "nobody")
            if fallback is None or fallback.startswith(ROSTER_PREFIX):
                return ()
            return (fallback,)
        return on_duty

    def receivers(self, labels: Mapping[str, str], now: float) -> tuple[str, ...]:
        """Who gets a firing notice (or reminder) about an alert with these labels, now."""
        routes = self.matched_routes(labels)
        targets = [r.receiver for r in routes]
        if not targets and self.default_receiver is not None:
            targets = [self.default_receiver]
        period = self.period(now)
        if period is not None:
            targets += period.receivers
        out: list[str] = []
        for target in targets:
            for name in self.expand(target, now):
                if name not in out:
                    out.append(name)
        return tuple(out)

    def escalations(self, labels: Mapping[str, str]) -> tuple[EscalationRule, ...]:
        return tuple(step for r in self.matched_routes(labels) for step in r.escalation)

    def repeat_for(self, labels: Mapping[str, str], now: float) -> float:
        period = self.period(now)
        if period is not None and period.repeat_interval is not None:
            return period.repeat_interval
        for route in self.matched_routes(labels):
            if route.repeat_interval is not None:
                return route.repeat_interval
        return self.repeat_interval

    def maintenance_for(self, labels: Mapping[str, str], now: float) -> str | None:
        """The name of the maintenance window muting these labels now, if any."""
        if not self.maintenance:
            return None
        local = local_time(now, self.roster.tz)
        for m in self.maintenance:
            if m.window.covers(local) and matches(m.matchers, labels):
                return m.name
        return None

    def display(self, label: str, value: str) -> str:
        return self.names.get(label, {}).get(value, value)
