"""Drains the outbox: one worker task per channel, so channels never wait on each other.

A worker goes through its channel's pending rows oldest first. It sends a row only when no older
pending row of the same channel shares one of its alerts (a resolved notice never overtakes its
firing one), bounds every send with the channel's ``timeout``, and after a send that may succeed
later (network, 4xx SMTP, 5xx HTTP, timeout) backs off exponentially, with jitter, before it tries
the channel again. A peer that refuses a message for good (5xx SMTP, 4xx HTTP) fails that row
only. A channel that has been failing for ``channel_failure_alert_after`` raises a ChannelFailing
notice through every other channel, and a resolved one when it works again.

Time comes from the outbox's ``clock``: tests move it by hours and call :meth:`Dispatcher.wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from ..redact import redact
from ..supervisor import Supervisor
from .base import Channel, ChannelContext, ChannelStats, Delivery, DeliveryError
from .config import NotifyConfig, OutboxSettings
from .outbox import ChannelState, Outbox, PendingRow
from .registry import CHANNEL_TYPES
from .types import AlertInfo, Notification

log = logging.getLogger(__name__)

FAILING_ALERT = "ChannelFailing"


@dataclass(frozen=True, slots=True)
class ConfiguredChannel:
    key: str  # "<receiver>/<kind>"
    receiver: str
    kind: str
    channel: Channel
    timeout: float


def build_channels(config: NotifyConfig, context: ChannelContext) -> dict[str, ConfiguredChannel]:
    """Every channel of every receiver, constructed (no I/O: connections open on first send)."""
    out: dict[str, ConfiguredChannel] = {}
    for receiver in config.receivers:
        for kind, settings in receiver.channels():
            key = f"{receiver.name}/{kind}"
            channel = CHANNEL_TYPES[kind].create(settings, context)
            timeout = float(getattr(settings, "timeout", 30.0))
            out[key] = ConfiguredChannel(key, receiver.name, kind, channel, timeout)
    return out


async def prepare_channels(channels: Mapping[str, ConfiguredChannel]) -> None:
    """Load what each channel needs before it is used (CA files, TLS contexts), so a broken one
    fails the start or the reload, not every send. Raises ``ValueError`` naming the channel."""
    for key, spec in channels.items():
        prepare = getattr(spec.channel, "prepare", None)
        if prepare is None:
            continue
        try:
            await prepare()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ValueError(f"notify channel {key}: {exc}") from exc


async def close_channels(channels: Mapping[str, ConfiguredChannel]) -> None:
    for key, spec in channels.items():
        try:
            await spec.channel.close()
        except Exception:
            log.exception("closing channel %s", key)


@dataclass
class _Counters:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    expired: int = 0


@dataclass
class _Worker:
    spec: ConfiguredChannel
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    retry_at: float = 0.0  # the channel is not tried again before this (clock time)
    failures: int = 0  # transient failures in a row, for the backoff
    state: ChannelState = field(default_factory=lambda: ChannelState(None, None, None))


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        settings: OutboxSettings,
        *,
        max_sleep: float = 30.0,
        rng: Callable[[], float] = random.random,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self.outbox = outbox
        self.settings = settings
        self._max_sleep = max_sleep  # a worker re-reads its rows at least this often (real seconds)
        self._rng = rng
        self._workers: dict[str, _Worker] = {}
        self._counters: dict[str, _Counters] = {}
        self._depths: dict[str, tuple[int, float]] = {}
        self._depth_task: asyncio.Task[None] | None = None
        self._depth_again = False
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopping = False
        #: whether this process sends now; several nodes: only the alert leader does
        self.sending: Callable[[], bool] = lambda: True
        outbox.add_listener(self.wake)

    @property
    def clock(self) -> Callable[[], float]:
        return self.outbox.clock

    # -- start, stop, reload -------------------------------------------------------------------

    async def start(self, channels: Mapping[str, ConfiguredChannel]) -> None:
        self._stopping = False
        states = await self.outbox.channel_states()
        self.outbox.set_routes(_routes(channels))
        self._workers = {}
        for key, spec in channels.items():
            worker = _Worker(spec, state=states.get(key, ChannelState(None, None, None)))
            self._counters.setdefault(key, _Counters())
            self._workers[key] = worker
            worker.task = self._supervisor.spawn(
                f"outbox:{key}", functools.partial(self._run, worker), vital=True, context=f"channel {key}"
            )
        self._housekeeping = self._supervisor.spawn("outbox-housekeeping", self._housekeep)
        self._refresh_depths()
        pending = sum(n for key, (n, _) in self._depths.items() if key in channels)
        log.info("outbox: %d channels started%s", len(channels), f", {pending} pending" if pending else "")

    async def reconfigure(self, settings: OutboxSettings, channels: Mapping[str, ConfiguredChannel]) -> None:
        """Swap in a reloaded configuration: workers finish their current send, then restart."""
        await self.stop()
        self.settings = settings
        await self.start(channels)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking rows, let sends in flight finish for ``grace`` seconds, then cancel them
        (a cancelled send stays pending and goes out after the next start)."""
        self._stopping = True
        # the workers stay listed (for stats) until the next start replaces them
        workers = list(self._workers.values())
        for w in workers:
            w.wake.set()
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for extra in (self._housekeeping, self._depth_task):
            if extra is not None:
                extra.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await extra
        self._housekeeping = self._depth_task = None
        for w in workers:
            try:
                await w.spec.channel.close()
            except Exception:
                log.exception("closing channel %s", w.spec.key)

    def wake(self, channels: Collection[str] | None = None) -> None:
        """Look at the rows now (after an enqueue, or after a test moved the clock)."""
        for key, w in self._workers.items():
            if channels is None or key in channels:
                w.wake.set()
        self._refresh_depths()

    # -- metrics ---------------------------------------------------------------------------------

    def stats(self) -> list[ChannelStats]:
        now = self.clock()
        out = []
        for key, w in sorted(self._workers.items()):
            c = self._counters[key]
            depth, oldest = self._depths.get(key, (0, None))
            out.append(
                ChannelStats(
                    receiver=w.spec.receiver,
                    channel=w.spec.kind,
                    sent=c.sent,
                    failed=c.failed,
                    retried=c.retried,
                    expired=c.expired,
                    depth=depth,
                    oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
                    failing_since=w.state.failing_since,
                )
            )
        return out

    def _refresh_depths(self) -> None:
        # coalesced: at most one query in flight, and one more after it if asked meanwhile
        if self._depth_task is not None and not self._depth_task.done():
            self._depth_again = True
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to refresh yet
            self._depth_task = asyncio.get_running_loop().create_task(self._query_depths())

    async def _query_depths(self) -> None:
        while True:
            self._depth_again = False
            try:
                self._depths = await self.outbox.depths()
            except Exception:
                log.exception("outbox: reading the queue depths")
            if not self._depth_again:
                return

    # -- one channel -----------------------------------------------------------------------------

    async def _run(self, w: _Worker) -> None:
        while not self._stopping:
            w.wake.clear()
            now = self.clock()
            due: float | None = w.retry_at
            if now >= w.retry_at:
                try:
                    due = await self._pass(w)
                except Exception:
                    # the store or a bug: keep the worker alive, look again later
                    log.exception("outbox: channel %s", w.spec.key)
                    due = self.clock() + self.settings.retry_initial
                self._refresh_depths()
            if self._stopping:
                return
            delay = self._max_sleep if due is None else min(max(due - self.clock(), 0.0), self._max_sleep)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await w.wake.wait()

    async def _pass(self, w: _Worker) -> float | None:
        """Send what is due; returns when the next row falls due (None: nothing pending)."""
        if not self.sending():
            return self.clock() + 1.0  # another node sends; look again when we may lead
        rows = await self.outbox.pending(w.spec.key)
        blocked: set[str] = set()
        next_due: float | None = None
        for row in rows:
            if self._stopping:
                return None
            now = self.clock()
            if now - row.created_at >= self.settings.expire_after:
                await self._expire(w, row, now)
                continue
            if row.order_keys & blocked or row.next_attempt > now:
                # an older notice of the same alert is still on its way: this one waits behind it
                if not row.order_keys & blocked:
                    next_due = row.next_attempt if next_due is None else min(next_due, row.next_attempt)
                blocked |= row.order_keys
                continue
            retry_at = await self._attempt(w, row)
            if retry_at is not None:
                # the channel (not this row) is the likely problem: stop here, back off
                return retry_at
        return next_due

    async def _attempt(self, w: _Worker, row: PendingRow) -> float | None:
        spec = w.spec
        n = row.notification
        delivery = Delivery(row.id, spec.key, n, row.attempts + 1, row.thread_root)
        permanent = False
        try:
            async with asyncio.timeout(spec.timeout):
                await spec.channel.send(delivery)
        except DeliveryError as exc:
            error, permanent = str(exc), exc.permanent
        except TimeoutError:
            error = f"no answer within {spec.timeout:g} s"
        except Exception as exc:  # a channel bug must not stop the worker; the row is retried
            log.exception("channel %s: sending notice %s", spec.key, n.id)
            error = f"{type(exc).__name__}: {exc}"
        else:
            await self.outbox.finish(row, "sent")
            self._counters[spec.key].sent += 1
            log.debug("notice %s sent through %s (attempt %d)", n.id, spec.key, delivery.attempt)
            w.failures = 0
            await self._channel_ok(w)
            return None
        # a peer's or a library's words may carry the URL's token or a password: not past here
        error = redact(error)
        now = self.clock()
        if permanent:
            await self.outbox.finish(row, "failed", error)
            self._counters[spec.key].failed += 1
            log.error(
                "notice %s (%s, receiver %s) refused by %s, not retried: %s",
                n.id,
                n.title,
                n.receiver,
                spec.key,
                error,
            )
            return None
        w.failures += 1
        backoff = min(self.settings.retry_initial * 2.0 ** min(w.failures - 1, 60), self.settings.retry_max)
        backoff *= 0.8 + 0.4 * self._rng()  # jitter, so channels sharing a relay do not retry in step
        # never retry later than the row's expiry: it is then expired on time, not a backoff late
        expires = row.created_at + self.settings.expire_after
        retry_at = min(now + min(backoff, self.settings.retry_max), max(expires, now))
        await self.outbox.record_retry(row.id, retry_at, error)
        self._counters[spec.key].retried += 1
        w.retry_at = retry_at
        log.warning(
            "notice %s through %s failed (attempt %d), retry in %.0f s: %s",
            n.id,
            spec.key,
            delivery.attempt,
            retry_at - now,
            error,
        )
        await self._channel_failed(w, error, now)
        return retry_at

    async def _expire(self, w: _Worker, row: PendingRow, now: float) -> None:
        await self.outbox.finish(row, "expired", f"expired after {row.attempts} attempts")
        self._counters[w.spec.key].expired += 1
        n = row.notification
        log.error(
            "notice %s (%s %s, receiver %s, group %s) expired undelivered through %s after %d attempts, "
            "%.0f s after it was queued",
            n.id,
            n.kind,
            n.title,
            n.receiver,
            n.group_key,
            w.spec.key,
            row.attempts,
            now - row.created_at,
        )

    # -- a failing channel, told through the others --------------------------------------------

    async def _channel_failed(self, w: _Worker, error: str, now: float) -> None:
        state = w.state
        since = state.failing_since if state.failing_since is not None else now
        announced = state.announced_id
        if announced is None and now - since >= self.settings.channel_failure_alert_after:
            announced = await self._announce(w, since, error, "firing")
        w.state = ChannelState(since, error, announced)
        await self.outbox.save_channel_state(w.spec.key, w.state)

    async def _channel_ok(self, w: _Worker) -> None:
        state = w.state
        if state.failing_since is None:
            return
        if state.announced_id is not None:
            await self._announce(w, state.failing_since, state.last_error or "", "resolved")
        log.info("channel %s works again (failing since %.0f)", w.spec.key, state.failing_since)
        w.state = ChannelState(None, None, None)
        await self.outbox.save_channel_state(w.spec.key, w.state)

    async def _announce(self, w: _Worker, since: float, error: str, state: str) -> str:
        key = w.spec.key
        now = self.clock()
        fingerprint = hashlib.sha256(f"{FAILING_ALERT}\0{key}".encode()).hexdigest()[:16]
        incident = f"{fingerprint}-{int(since)}"
        minutes = (now - since) / 60
        alert = AlertInfo(
            fingerprint=fingerprint,
            name=FAILING_ALERT,
            severity="critical",
            state="resolved" if state == "resolved" else "firing",
            labels={"receiver": w.spec.receiver, "channel": w.spec.kind},
            summary=(
                f"Notification channel {key} works again after {minutes:.0f} min"
                if state == "resolved"
                else f"Notification channel {key} failing for {minutes:.0f} min: {error}"
            ),
            description=f"Last error: {error}" if error else "",
            starts_at=since,
            ends_at=now if state == "resolved" else None,
        )
        routes = self.outbox.routes
        for receiver, channels in routes.items():
            targets = [c for c in channels if c != key]
            if not targets:
                continue
            n = Notification(
                id=f"channelfailing-{incident}-{state}-{receiver}",
                kind="resolved" if state == "resolved" else "firing",
                receiver=receiver,
                group_key=f"alertname={FAILING_ALERT},channel={key}",
                title=f"{FAILING_ALERT}: {key}",
                alerts=(alert,),
                created_at=now,
                labels={"alertname": FAILING_ALERT, "channel": key},
            )
            await self.outbox.enqueue_to(n, targets)
        log.error(
            "channel %s failing since %.0f: %s notice sent through the other channels", key, since, state
        )
        return incident

    # -- housekeeping ----------------------------------------------------------------------------

    async def _housekeep(self) -> None:
        while True:
            try:
                now = self.clock()
                orphans = await self.outbox.expire_orphans(self._workers, now - self.settings.expire_after)
                if orphans:
                    log.error("outbox: %d notices for channels no longer configured expired", orphans)
                await self.outbox.purge(now - self.settings.keep_history)
            except Exception:
                log.exception("outbox housekeeping")
            await asyncio.sleep(3600)


def _routes(channels: Mapping[str, ConfiguredChannel]) -> dict[str, list[str]]:
    routes: dict[str, list[str]] = {}
    for key, spec in channels.items():
        routes.setdefault(spec.receiver, []).append(key)
    return routes
