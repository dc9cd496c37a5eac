"""One alert engine for the whole cluster: the leader steps it, every node holds its state.

Two more replicated KV buckets (same replicas as the others):

* ``uptimewatch_alerts``, key ``engine``: the engine state (alerts, groups, acks, silences) as the
  leader left it after its last step. Followers watch it and show it in their API, so an ack or a
  silence made anywhere is visible everywhere.
* ``uptimewatch_notices``: one key per (notice, channel) not yet delivered. The leader writes them
  with the state, *before* it hands the notices to its own outbox, and deletes a key when its
  delivery left ``pending`` (sent, refused for good, or expired).

When the lease passes to another node (see :mod:`.node`), the new leader adopts the ``engine``
state, enqueues every notice key left in ``uptimewatch_notices`` into its own outbox, and only then
starts stepping the engine and sending. A notice the old leader sent but had not yet deleted is
sent again with the same id (``X-Uptimewatch-Notification-Id`` and a ``Message-ID`` made from it,
the ``id`` field of a webhook's body), so a receiver can drop it: duplicates exist only inside
that send/ack window.

Followers forward acks and silences to the leader over a NATS request (``uptimewatch.alerts.command``),
which only the leader answers; the reply comes after the leader published its new state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from ..alerts.engine import Ack, AckError, Alert, EngineState, Group, SilenceAdded, SilenceExpired
from ..alerts.service import AlertService, NoLeader
from ..alerts.silences import Silence
from ..notify.outbox import Outbox
from ..notify.types import Notification
from .node import ClusterNode, end_task, stop_watcher, watch_keys

log = logging.getLogger(__name__)

ALERTS_BUCKET = "uptimewatch_alerts"
NOTICES_BUCKET = "uptimewatch_notices"
STATE_KEY = "engine"
COMMAND_SUBJECT = "uptimewatch.alerts.command"

_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, asyncio.TimeoutError)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def encode_state(state: EngineState, node: str) -> bytes:
    return _dumps(
        {
            "node": node,
            "alerts": {fp: a.to_dict() for fp, a in state.alerts.items()},
            "groups": {k: g.to_dict() for k, g in state.groups.items()},
            "silences": {k: s.to_dict() for k, s in state.silences.items()},
            "heartbeat_at": state.heartbeat_at,
        }
    )


def decode_state(data: bytes, like: EngineState) -> tuple[str, EngineState]:
    """(the node that wrote it, the state with ``like``'s policy)."""
    doc = json.loads(data)
    return str(doc.get("node", "")), EngineState(
        like.policy,
        {fp: Alert.from_dict(a) for fp, a in doc["alerts"].items()},
        {k: Group.from_dict(g) for k, g in doc["groups"].items()},
        {k: Silence.from_dict(s) for k, s in doc["silences"].items()},
        doc.get("heartbeat_at"),
    )


def notice_key(notification_id: str, channel: str) -> str:
    """A KV key (``[A-Za-z0-9_=-]`` only) for one delivery."""
    return "n_" + hashlib.sha256(f"{notification_id}\0{channel}".encode()).hexdigest()[:40]


async def notice_keys(js: JetStreamContext) -> list[str]:
    """Every key of the notices bucket that has a message, deleted ones included, from the
    stream's own count per subject. ``KeyValue.keys()`` is a watcher that can report the end of
    its replay before the replay has ended (nats-py issue 842): it returned no key while the old
    leader's notices were there, and the new leader never sent them."""
    prefix = f"$KV.{NOTICES_BUCKET}."
    info = await js.stream_info(f"KV_{NOTICES_BUCKET}", subjects_filter=f"{prefix}>")
    return sorted(s[len(prefix) :] for s in (info.state.subjects or {}) if s.startswith(prefix))


def encode_event(event: Ack | SilenceAdded | SilenceExpired) -> bytes:
    if isinstance(event, Ack):
        return _dumps(
            {"type": "ack", "fingerprint": event.fingerprint, "by": event.by, "comment": event.comment}
        )
    if isinstance(event, SilenceAdded):
        return _dumps({"type": "silence", "silence": event.silence.to_dict()})
    return _dumps({"type": "expire", "silence_id": event.silence_id})


def decode_event(data: bytes) -> Ack | SilenceAdded | SilenceExpired:
    doc = json.loads(data)
    kind = doc.get("type")
    if kind == "ack":
        return Ack(str(doc["fingerprint"]), str(doc["by"]), str(doc["comment"]))
    if kind == "silence":
        return SilenceAdded(Silence.from_dict(doc["silence"]))
    if kind == "expire":
        return SilenceExpired(str(doc["silence_id"]))
    raise ValueError(f"unknown alert command {kind!r}")


class AlertReplica:
    """The :class:`~uptimewatch.alerts.service.Replica` of a clustered daemon."""

    def __init__(self, node: ClusterNode, alerts: AlertService, outbox: Outbox) -> None:
        self._node = node
        self._alerts = alerts
        self._outbox = outbox
        self._leading = False
        self._kv_state: KeyValue | None = None
        self._kv_notices: KeyValue | None = None
        self._published: bytes | None = None
        self._unpublished: list[tuple[str, bytes]] = []  # notice keys a failed put left behind
        self._deletes: asyncio.Queue[str] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._takeover: asyncio.Task[None] | None = None
        self._unsubscribing: asyncio.Task[None] | None = None
        self.counters: dict[str, int] = {
            "state_published": 0,
            "notices_published": 0,
            "notices_taken_over": 0,
            "publish_errors": 0,
            "forwarded": 0,
        }
        node.on_leadership = self._on_leadership
        node.on_setup.append(self._setup)
        outbox.add_final_listener(self._delivered)
        alerts.set_replica(self)

    # -- start and stop ---------------------------------------------------------------------

    async def _setup(self) -> None:
        """Called by the node each time it (re)joins NATS."""
        js = self._node.js
        assert js is not None
        replicas = self._node.config.nats.replicas
        buckets: list[KeyValue] = []
        for name in (ALERTS_BUCKET, NOTICES_BUCKET):
            config = api.KeyValueConfig(
                bucket=name, history=1, replicas=replicas, storage=api.StorageType.FILE
            )
            try:
                buckets.append(await js.create_key_value(config))
            except nats.js.errors.BadRequestError:
                buckets.append(await js.key_value(name))
        self._kv_state, self._kv_notices = buckets
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._watch_state(), name="cluster-alert-state"),
                asyncio.create_task(self._delete_loop(), name="cluster-notice-deletes"),
            ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *(t for t in (self._takeover, self._unsubscribing) if t is not None)]
        self._tasks, self._takeover, self._unsubscribing = [], None, None
        await asyncio.gather(*(end_task(task) for task in tasks))
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await self._unsubscribe(sub)
        # deliveries finished while stopping: their keys go before the connection does
        while not self._deletes.empty() and self._kv_notices is not None:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._kv_notices.delete(self._deletes.get_nowait())

    # -- who steps the engine -----------------------------------------------------------------

    def leading(self) -> bool:
        """The lease holder once it took the replicated state over; any node cut off from NATS
        (it alerts locally, degraded, as the node says loudly)."""
        return self._node.started and (bool(self._node.degraded) or self._leading)

    def _on_leadership(self, leading: bool) -> None:
        if self._takeover is not None:
            self._takeover.cancel()
            self._takeover = None
        if leading:
            self._takeover = asyncio.create_task(self._take_over(), name="cluster-alert-takeover")
        else:
            self._leading = False
            if self._sub is not None:
                sub, self._sub = self._sub, None
                self._unsubscribing = asyncio.create_task(self._unsubscribe(sub))

    async def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(*_NATS_ERRORS):
            await sub.unsubscribe()

    async def _take_over(self) -> None:
        while True:
            try:
                await self._take_over_once()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: taking the alert state over failed (%s); again", type(exc).__name__)
                await asyncio.sleep(self._node.config.heartbeat_interval)

    async def _take_over_once(self) -> None:
        kv_state, kv_notices, nc, js = self._kv_state, self._kv_notices, self._node.nc, self._node.js
        if kv_state is None or kv_notices is None or nc is None or js is None:
            raise ConnectionError("not joined yet")
        try:
            entry = await kv_state.get(STATE_KEY)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if entry is not None and entry.value:
            author, state = decode_state(entry.value, self._alerts.state)
            if author != self._node.node_id:
                await self._alerts.adopt(state)
            # else: our own last state; ours here is as new or newer (steps made while degraded)
        pending: list[tuple[Notification, str, str]] = []
        for key in await notice_keys(js):
            try:
                item = await kv_notices.get(key)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # delivered meanwhile
            if not item.value:
                continue
            doc = json.loads(item.value)
            pending.append((Notification.from_dict(doc["notification"]), str(doc["channel"]), key))
        pending.sort(key=lambda p: (p[0].created_at, p[0].id))
        taken = 0
        for notification, channel, key in pending:
            if await self._outbox.is_final(notification.id, channel):
                self._deletes.put_nowait(key)  # we delivered it ourselves, before
                continue
            taken += await self._outbox.enqueue_to(notification, [channel])
        self.counters["notices_taken_over"] += taken
        self._sub = await nc.subscribe(COMMAND_SUBJECT, cb=self._on_command)
        self._published = None  # publish our first step in full
        self._leading = True
        self._takeover = None
        log.warning(
            "cluster: node %s runs the alert engine: %d alerts, %d silences, %d pending notices taken over",
            self._node.node_id,
            len(self._alerts.state.alerts),
            len(self._alerts.state.silences),
            taken,
        )

    # -- the leader's side ----------------------------------------------------------------------

    async def publish(self, state: EngineState, notes: Sequence[Notification]) -> None:
        """Replicate one step: its notices first, then the state. A failure is retried at the next
        step; the notices still leave from this node's own outbox."""
        for n in notes:
            for channel in self._outbox.routes.get(n.receiver, ()):
                self._unpublished.append(
                    (notice_key(n.id, channel), _dumps({"channel": channel, "notification": n.to_dict()}))
                )
        kv_state, kv_notices = self._kv_state, self._kv_notices
        if kv_state is None or kv_notices is None or not self._node.nats_ready:
            return
        try:
            while self._unpublished:
                key, value = self._unpublished[0]
                await kv_notices.put(key, value)
                self._unpublished.pop(0)
                self.counters["notices_published"] += 1
            data = encode_state(state, self._node.node_id)
            if data != self._published:
                await kv_state.put(STATE_KEY, data)
                self._published = data
                self.counters["state_published"] += 1
        except _NATS_ERRORS as exc:
            self.counters["publish_errors"] += 1
            log.warning(
                "cluster: alert state not replicated (%s); again at the next step", type(exc).__name__
            )

    def _delivered(self, notification_id: str, channel: str) -> None:
        self._deletes.put_nowait(notice_key(notification_id, channel))

    async def _delete_loop(self) -> None:
        while True:
            key = await self._deletes.get()
            while True:
                kv = self._kv_notices
                if kv is None:
                    break
                try:
                    await kv.delete(key)
                    break
                except _NATS_ERRORS:
                    await asyncio.sleep(self._node.config.heartbeat_interval)

    async def _on_command(self, msg: Msg) -> None:
        if not self._leading:
            return  # a former leader's late delivery: the new one answers
        try:
            await self._alerts.apply(decode_event(msg.data))
            answer: dict[str, Any] = {"ok": True}
        except AckError as exc:
            answer = {"error": str(exc)}
        except Exception as exc:
            log.exception("cluster: alert command from another node failed")
            answer = {"error": f"{type(exc).__name__}"}
        with contextlib.suppress(*_NATS_ERRORS):
            await msg.respond(_dumps(answer))

    # -- the followers' side ----------------------------------------------------------------------

    async def forward(self, event: Ack | SilenceAdded | SilenceExpired) -> None:
        nc = self._node.nc
        if nc is None or not nc.is_connected:
            raise NoLeader("this node reaches no NATS server, so not the alert leader; try another node")
        try:
            reply = await nc.request(
                COMMAND_SUBJECT, encode_event(event), timeout=self._node.config.nats.request_timeout
            )
        except _NATS_ERRORS as exc:
            raise NoLeader(
                f"no alert leader answered ({type(exc).__name__}); a new one is elected within"
                f" {self._node.config.leader_timeout:g} s, try again then"
            ) from exc
        answer = json.loads(reply.data)
        if "error" in answer:
            raise AckError(str(answer["error"]))
        self.counters["forwarded"] += 1
        await self._refresh()

    async def _refresh(self) -> None:
        """Read the leader's state now (the watch may lag behind the reply)."""
        if self._kv_state is None:
            return
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, *_NATS_ERRORS):
            entry = await self._kv_state.get(STATE_KEY)
            if entry.value and not self.leading():
                await self._alerts.adopt(decode_state(entry.value, self._alerts.state)[1])

    async def _watch_state(self) -> None:
        while True:
            kv = self._kv_state
            watcher: KeyValue.KeyWatcher | None = None
            try:
                assert kv is not None
                watcher = await watch_keys(kv, STATE_KEY)
                async for entry in watcher:
                    if entry is None or not entry.value or self.leading():
                        continue
                    try:
                        _, state = decode_state(entry.value, self._alerts.state)
                    except (ValueError, KeyError, TypeError):
                        log.warning("cluster: unreadable alert state in %s; ignored", ALERTS_BUCKET)
                        continue
                    await self._alerts.adopt(state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: alert state watch ended (%s); watching again", type(exc).__name__)
            finally:
                if watcher is not None:  # its subscription's tasks end with it
                    await stop_watcher(watcher)
            await asyncio.sleep(self._node.config.heartbeat_interval)


__all__ = ["AlertReplica", "decode_event", "decode_state", "encode_event", "encode_state", "notice_key"]
