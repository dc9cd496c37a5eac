"""The alert engine as a daemon component: evaluates the rules over the health snapshot, drives
the pure engine with the clock, persists every step, then hands the notices to the sink.

Only this module does I/O for the engine. One lock serializes steps, so an ack from the API and
an evaluation never interleave; each step is written (state, history and notices in one
transaction) before its notices leave, see :mod:`uptimewatch.alerts.store` for why that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from .. import executors
from ..clock import WallSteps
from ..config.alerting import AlertingConfig
from ..config.loader import LoadedConfig
from ..config.models import Config
from ..model.health import HealthSnapshot, StateChange
from ..model.stats import AlertStats
from ..notify.types import Notification
from ..store import SqliteStore
from ..supervisor import Supervisor
from .auth import Authenticator
from .engine import (
    Ack,
    AckError,
    Alert,
    EngineState,
    Event,
    Reconfigured,
    SilenceAdded,
    SilenceExpired,
    Tick,
    muted_by,
    rebase,
    step,
)
from .routing import Policy
from .rules import Evaluator, MonitorView, PowerView
from .silences import Silence, new_silence_id
from .store import AlertStore

log = logging.getLogger(__name__)

STATES = ("pending", "firing", "resolved")
SEVERITIES = ("critical", "warning", "info")
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
#: An evaluation that health changes ask for comes at most this often.
MIN_EVALUATION_GAP = 1.0


class NotificationSink(Protocol):
    """Where notices go: the durable outbox. ``enqueue`` returns once they are stored, and drops
    a notice whose ``id`` it already holds (the engine re-hands notices after a crash)."""

    async def enqueue(self, notifications: Sequence[Notification]) -> object: ...


class Replica(Protocol):
    """The replicated alert state of a cluster (``uptimewatch.cluster.alerts``): only the leader
    steps the engine; it publishes every step before handing its notices over, and the other
    nodes forward acks and silences to it."""

    def leading(self) -> bool: ...
    async def publish(self, state: EngineState, notes: Sequence[Notification]) -> None: ...
    async def forward(self, event: Ack | SilenceAdded | SilenceExpired) -> None: ...


class NoLeader(RuntimeError):
    """A follower could not reach the leader to apply an ack or a silence."""


class LoggingSink:
    """Used when no outbox is wired in: notices at least reach the log."""

    async def enqueue(self, notifications: Sequence[Notification]) -> None:
        for n in notifications:
            log.warning("alert notice %s to %s: %s (no outbox configured)", n.kind, n.receiver, n.title)


def policy_of(config: Config) -> Policy:
    names = {
        "district": {d.id: d.name for d in config.districts},
        "carrier": {c.id: c.name for c in config.carriers},
        "site": {s.id: s.name for s in config.sites},
    }
    return Policy.from_config(
        config.alerting, timezone=config.province.timezone, province=config.province.id, names=names
    )


class AlertService:
    def __init__(
        self,
        store: SqliteStore,
        loaded: LoadedConfig,
        snapshot: Callable[[], HealthSnapshot],
        *,
        sink: NotificationSink | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        tick_interval: float = 1.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.sink: NotificationSink = sink if sink is not None else LoggingSink()
        self._db = AlertStore(store)
        self._snapshot = snapshot
        self._clock = clock
        # durations run on the monotonic clock: a stepped wall clock moves the engine's stamps
        self._steps = WallSteps(clock, monotonic)
        self._monotonic = self._steps.monotonic
        self._step = 0.0  # a wall-clock step not yet applied to the engine state
        self._tick = tick_interval
        self._cfg: AlertingConfig = loaded.config.alerting
        self._base_dir = loaded.source.resolve().parent
        self._evaluator = Evaluator(self._cfg, loaded.config.province.id)
        self._state = EngineState(policy_of(loaded.config))
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._unhanded = False
        self._last_evaluation = float("-inf")  # monotonic
        self.heartbeat_at: float | None = None
        self.notices: dict[str, int] = {}
        self.authenticator: Authenticator | None = None
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self.replica: Replica | None = None

    # -- start and stop ----------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Restore the state, re-hand notices left over by a crash, start the loop (``background``;
        tests drive :meth:`evaluate` and :meth:`apply` themselves with an injected clock)."""
        self.authenticator = await executors.CONFIG.run(
            Authenticator.from_config, self._cfg.auth, self._base_dir
        )
        await self._db.open()
        self._state = await self._db.load(self._state.policy)
        await self._hand_leftovers()
        if background:
            # the loop evaluates every rule, TimeToDarkSoon included: without it nobody hears of anything
            self._task = self._supervisor.spawn("alert-engine", self._run, vital=True)
        log.info(
            "alert engine started: %d alerts restored (%d firing), %d silences",
            len(self._state.alerts),
            sum(1 for a in self._state.alerts.values() if a.state == "firing"),
            len(self._state.silences),
        )

    async def stop(self) -> None:
        if self._task is not None:
            # the flag ends the loop even if a cancel is lost in a timeout race (Python 3.11)
            self._stopping = True
            self._wake.set()
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                log.error("alert engine did not stop within 5 s; abandoning it")
            self._task = None

    async def prepare_auth(self, loaded: LoadedConfig) -> Authenticator | None:
        """The credentials of ``loaded`` (reads ``bearer_token_file``); ``ValueError`` when they
        cannot be read, which fails the reload."""
        try:
            return await executors.CONFIG.run(
                Authenticator.from_config, loaded.config.alerting.auth, self._base_dir
            )
        except ValueError as exc:
            raise ValueError(f"alerting.auth: {exc}") from exc

    async def reconfigure(self, loaded: LoadedConfig, authenticator: Authenticator | None = None) -> None:
        """Swap in a reloaded configuration; alert state, acks and silences carry over.
        ``authenticator``: from :meth:`prepare_auth` (read here when not given)."""
        cfg = loaded.config.alerting
        if authenticator is None and cfg.auth is not None:
            authenticator = await self.prepare_auth(loaded)
        self.authenticator = authenticator
        self._cfg = cfg
        evaluator = Evaluator(cfg, loaded.config.province.id)
        evaluator.adopt(self._evaluator)
        self._evaluator = evaluator
        await self.apply(Reconfigured(policy_of(loaded.config)))
        self._wake.set()

    def set_replica(self, replica: Replica) -> None:
        """Several nodes: this engine steps only while ``replica.leading()``."""
        self.replica = replica

    def _following(self) -> bool:
        return self.replica is not None and not self.replica.leading()

    async def adopt(self, state: EngineState) -> None:
        """Take the leader's state (alerts, groups, silences) as ours; the policy stays ours."""
        async with self._lock:
            old = self._state
            new = EngineState(old.policy, state.alerts, state.groups, state.silences, state.heartbeat_at)
            await self._db.save(old, new, (), self._now())
            self._state = new

    def set_sink(self, sink: NotificationSink) -> None:
        self.sink = sink

    def set_power_view(self, power: PowerView) -> None:
        """Where TimeToDarkSoon reads its estimates; kept across reloads."""
        self._evaluator.power = power

    def set_monitor_view(self, monitor: MonitorView) -> None:
        """Where MonitorOverloaded reads the event loop's lag; kept across reloads."""
        self._evaluator.monitor = monitor

    # -- the loop ----------------------------------------------------------------------------------

    def notice(self, changes: Iterable[StateChange]) -> None:
        """Health changes: evaluate soon instead of waiting for the next interval."""
        if changes:
            self._wake.set()

    def _now(self) -> float:
        """Wall time now; a step of the wall clock since the last reading is noted for the engine
        state (moved at the next step, under the lock) and applied to the evaluator at once."""
        now, stepped = self._steps.read()
        if stepped:
            log.warning("the wall clock stepped by %+.1f s; alert timers keep their time left", stepped)
            self._evaluator.rebase(stepped)
            self._step += stepped
        return now

    async def _run(self) -> None:
        next_evaluation = float("-inf")  # on the monotonic clock
        while not self._stopping:
            try:
                mono = self._monotonic()
                if self._following():
                    # another node runs the engine; ours shows its replicated state
                    self._wake.clear()
                    await asyncio.sleep(self._tick)
                    continue
                if self._unhanded:
                    await self._hand_leftovers()
                due = mono >= next_evaluation or (
                    self._wake.is_set() and mono - self._last_evaluation >= MIN_EVALUATION_GAP
                )
                if self._cfg.enabled and due:
                    self._wake.clear()
                    await self.evaluate()
                    next_evaluation = mono + self._cfg.evaluation_interval
                else:
                    if not self._cfg.enabled:
                        self._wake.clear()
                    await self.apply(Tick())
            except Exception:
                # one bad step must not end alerting for the rest of the run
                log.exception("alert engine step failed")
            if self._wake.is_set():
                # news came too soon after the last evaluation: wait out the gap, not spin on it
                gap = self._last_evaluation + MIN_EVALUATION_GAP - self._monotonic()
                await asyncio.sleep(min(max(gap, 0.01), self._tick))
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel stop() sends
            # when the event is set at the same moment, and the loop would never end
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick):
                    await self._wake.wait()

    async def evaluate(self) -> list[Notification]:
        """Evaluate the rules over the current snapshot and step the engine with the result."""
        now = self._now()
        evaluation = self._evaluator.evaluate(self._snapshot(), now, self._state.policy.period(now))
        self._last_evaluation = self._monotonic()
        notes = await self.apply(evaluation)
        self.heartbeat_at = now
        return notes

    async def apply(self, event: Event) -> list[Notification]:
        """One engine step: decide, persist (and replicate), then hand the notices over. On a
        follower, acks and silences go to the leader; other events do nothing there."""
        if self._following():
            assert self.replica is not None
            if isinstance(event, Ack | SilenceAdded | SilenceExpired):
                await self.replica.forward(event)
            return []
        async with self._lock:
            now = self._now()
            old = self._state
            base = old
            if self._step:
                base, self._step = rebase(old, self._step), 0.0
            # saved against ``old``: the moved stamps are written too
            new, notes = step(base, event, now)
            await self._db.save(old, new, notes, now)
            self._state = new
            if self.replica is not None:
                # before the notices leave: a new leader finds them even if this node dies now
                await self.replica.publish(new, notes)
            if notes:
                await self._hand(notes)
            return notes

    async def _hand(self, notes: Sequence[Notification]) -> None:
        try:
            await self.sink.enqueue(notes)
        except Exception:
            # they stay in alert_outbound and are handed again on the next loop
            log.exception("cannot hand %d alert notices to the outbox; will retry", len(notes))
            self._unhanded = True
            return
        await self._db.handed(n.id for n in notes)
        for n in notes:
            self.notices[n.kind] = self.notices.get(n.kind, 0) + 1
            log.info("alert notice %s to %s: %s", n.kind, n.receiver, n.title)

    async def _hand_leftovers(self) -> None:
        leftovers = await self._db.outbound()
        self._unhanded = False
        if leftovers:
            log.info("handing %d alert notices decided before the last stop to the outbox", len(leftovers))
            await self._hand(leftovers)

    # -- what the API calls ------------------------------------------------------------------------

    def find(self, alert_id: str) -> Alert | None:
        """An alert by fingerprint, or by a unique prefix of one (at least 4 characters)."""
        alerts = self._state.alerts
        if alert_id in alerts:
            return alerts[alert_id]
        if len(alert_id) < 4:
            return None
        found = [a for fp, a in alerts.items() if fp.startswith(alert_id)]
        return found[0] if len(found) == 1 else None

    async def ack(self, alert_id: str, by: str, comment: str) -> Alert:
        alert = self.find(alert_id)
        if alert is None or alert.state == "resolved":
            raise AckError(f"no active alert '{alert_id}'")
        await self.apply(Ack(alert.fingerprint, by, comment))
        return self._state.alerts[alert.fingerprint]

    async def add_silence(
        self,
        matchers: Mapping[str, str],
        *,
        starts_at: float | None,
        ends_at: float,
        created_by: str,
        comment: str,
    ) -> Silence:
        now = self._clock()
        silence = Silence(
            new_silence_id(),
            dict(matchers),
            starts_at if starts_at is not None else now,
            ends_at,
            created_by,
            comment,
            now,
        )
        await self.apply(SilenceAdded(silence))
        return silence

    async def expire_silence(self, silence_id: str) -> bool:
        if silence_id not in self._state.silences:
            return False
        await self.apply(SilenceExpired(silence_id))
        return True

    async def history(self, fingerprint: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        return await self._db.history(fingerprint, limit)

    def now(self) -> float:
        return self._clock()

    @property
    def state(self) -> EngineState:
        return self._state

    def alert_view(self, a: Alert, now: float | None = None) -> dict[str, Any]:
        now = self._clock() if now is None else now
        st = self._state
        return {
            "id": a.fingerprint,
            "name": a.name,
            "state": a.state,
            "severity": a.severity,
            "labels": dict(a.labels),
            "summary": str(a.summary),
            "description": str(a.description),
            "value": a.value,
            "active_since": a.active_since,
            "fired_at": a.fired_at,
            "resolved_at": a.resolved_at,
            "ack": None if a.ack_by is None else {"by": a.ack_by, "comment": a.ack_comment, "at": a.ack_at},
            "muted_by": None if a.state == "resolved" else muted_by(a, st.silences, now, st.policy),
            "notified": list(a.notified),
        }

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        now = self._clock()
        chosen = [a for a in self._state.alerts.values() if state is None or a.state == state]
        chosen.sort(
            key=lambda a: (
                a.state == "resolved",
                _SEVERITY_ORDER.get(a.severity, 9),
                -(a.fired_at or a.active_since),
            )
        )
        return [self.alert_view(a, now) for a in chosen]

    def silences(self) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for s in sorted(self._state.silences.values(), key=lambda s: s.starts_at):
            d = s.to_dict()
            d["state"] = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
            out.append(d)
        return out

    def stats(self) -> AlertStats:
        counts = {(st, sev): 0 for st in STATES for sev in SEVERITIES}
        for a in self._state.alerts.values():
            key = (a.state, a.severity)
            counts[key] = counts.get(key, 0) + 1
        return AlertStats(
            counts=counts, notifications=dict(self.notices), heartbeat_timestamp=self.heartbeat_at
        )
