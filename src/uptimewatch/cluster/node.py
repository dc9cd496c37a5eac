"""This process as one node of the cluster: heartbeats, the leader lease, sharding and the stream.

NATS JetStream provides everything shared, so there is no gossip or consensus code here:

* ``uptimewatch_nodes`` (KV, replicated): one heartbeat per node, watched by every node.
* ``uptimewatch_leases`` (KV, replicated): the ``leader`` key, taken with ``create`` (put if absent)
  and renewed or taken over with ``update(..., last=revision)`` (compare and swap).
* ``UPTIMEWATCH_OBS`` (stream, replicated): ``uptimewatch.obs.<node>``, every node's
  observations in batches (:mod:`.codec`), read by every node so each one holds the whole province.

A node ingests its own observations directly and publishes them; the others' arrive through the
stream. When NATS is unreachable for longer than ``node_timeout`` the node polls every site on its
own and keeps alerting locally, and says so (``degraded``) in the log, the API and the metrics.
A node that reaches no NATS server, no other node and none of its canaries is ``isolated``: it
keeps polling, but its verdicts count as unknown, so a cut uplink does not turn into 120 alerts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from .. import __version__
from ..config.cluster import ClusterConfig
from ..model.observation import Observation
from . import codec, sharding
from .membership import Heartbeat, MemberTable, MemberView, decode_heartbeat, encode_heartbeat
from .quorum import Disagreement, VantageMerge

log = logging.getLogger(__name__)

NODES_BUCKET = "uptimewatch_nodes"
LEASES_BUCKET = "uptimewatch_leases"
STREAM = "UPTIMEWATCH_OBS"
LEADER_KEY = "leader"
#: observations published and not yet acknowledged, at most (nats-py allows 4,000)
PUBLISH_WINDOW = 1024
#: seconds the publisher waits, once an observation is ready, for others to share its message.
#: Every message costs the same whatever it holds (the publish, its ack, a delivery to every node,
#: the author's own copy read back): without the wait a node busy polling sent a message per turn
#: of its event loop, half as full on each of two nodes as on one (bench/cluster_bench.py: 75
#: against 146 observations a message), so two nodes paid twice the per-message cost per
#: observation. Far below any poll interval, it delays no verdict that matters.
PUBLISH_LINGER = 0.02

#: NATS errors that mean "the cluster cannot answer now": the node carries on and retries.
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, asyncio.TimeoutError)


async def end_task(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end, even if the caller is cancelled meanwhile (the
    caller's cancellation is raised once it has). Cancel again while it runs: nats-py awaits
    through ``asyncio.wait_for``, which on Python 3.11 can swallow a cancellation that races its
    result (gh-86296), and a task that lost its cancellation would wait on its queue for good."""
    interrupted = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=0.1)
        except asyncio.CancelledError:
            interrupted = True
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("cluster: task %s ended with %s", task.get_name(), type(exc).__name__)
    if interrupted:
        raise asyncio.CancelledError


async def watch_keys(bucket: KeyValue, keys: str = ">") -> KeyValue.KeyWatcher:
    """``bucket.watch(keys)``, but a cancellation that lands while it sets up lets it finish and
    stops what it made: its subscription's heartbeat task would otherwise outlive the node."""
    setup = asyncio.ensure_future(bucket.watch(keys))
    try:
        return await asyncio.shield(setup)
    except asyncio.CancelledError:
        with contextlib.suppress(*_NATS_ERRORS, asyncio.CancelledError):
            await stop_watcher(await setup)
        raise


async def stop_watcher(watcher: KeyValue.KeyWatcher) -> None:
    """Stop a KV watcher and wait until its subscription's delivery task has ended.

    nats-py cancels that task once; while it sits in the watcher's ``asyncio.wait_for`` for the
    set-up to finish, CPython 3.11's ``wait_for`` can swallow the cancellation (gh-86296), and the
    task then waits on a queue nobody feeds for good. The one private read of nats-py here, kept
    in this function: the task that delivers the subscription's messages."""
    try:
        with contextlib.suppress(*_NATS_ERRORS):
            await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated
    finally:
        delivery = getattr(watcher._sub, "_wait_for_msgs_task", None)
        if isinstance(delivery, asyncio.Task):
            await end_task(delivery)


@dataclass(frozen=True, slots=True)
class SiteRef:
    """What sharding needs of a site: its id, district (for the subject) and poll interval."""

    site_id: str
    district: str
    max_age: float  # how old a vantage point's last result may be and still vote


class _Lease(msgspec.Struct, frozen=True):
    node: str
    at: float
    term: int


def _safe(url: str) -> str:
    """A NATS URL without credentials, for logs."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class ClusterNode:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        url: str,
        sites: Callable[[], Sequence[SiteRef]],
        ingest: Callable[[Observation], None],
        on_assignment: Callable[[], None],
        ping: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self._ping = ping  # the daemon's ICMP, for the canaries; None: none can be reached
        self.node_id = config.node_id
        self.url = config.url or url
        self._sites = sites
        self._ingest = ingest
        self._on_assignment = on_assignment
        self._members = MemberTable(config.node_timeout, config.join_grace)
        self._merge = VantageMerge()
        self._started_at = time.time()
        self._seq = 0
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._kv_nodes: KeyValue | None = None
        self._kv_leases: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None  # of the nodes bucket, once joined
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._publish_queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize=100_000)
        self._last_nats_ok = time.monotonic()
        self._nats_ready = False
        # decided once per heartbeat round, with isolation, so the two never disagree in between
        self._nats_lost = True  # not reached yet: a node never connected is degraded
        self._refs: Mapping[str, SiteRef] = {}
        self._refs_of: Sequence[SiteRef] | None = None  # the list ``_refs`` was built from
        self._assignment: dict[str, tuple[str, ...]] = {}
        self._owned: frozenset[str] | None = None  # None: every site (alone, or degraded)
        self._primary: frozenset[str] = frozenset()  # sites whose first vantage point we are
        self._healthy: frozenset[str] = frozenset({self.node_id})
        self._vantage = 1
        self._quorum = 1
        self._isolated = False
        self._peers_reached = 0
        self._canaries_reached = 0
        self._leader: str | None = None
        self._lease_revision: int | None = None  # ours, while we lead
        self._lease_seen: tuple[int, float] | None = None  # (revision, monotonic) last seen
        self._lease_renewed = 0.0
        self.leader_since: float | None = None
        self.on_leadership: Callable[[bool], None] = lambda leading: None
        #: run at the end of each (re)join, e.g. the alert replica's buckets
        self.on_setup: list[Callable[[], Awaitable[None]]] = []
        self.counters: dict[str, int] = {
            "published": 0,
            "publish_errors": 0,
            "received": 0,
            "decode_errors": 0,
            "dropped": 0,
            "leader_changes": 0,
        }
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False
        self.started = False  # start() tried to join (whether or not NATS answered)

    # -- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and join. NATS being down is not fatal: the node starts degraded and retries."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5))
        try:
            await self._connect()
        except _NATS_ERRORS as exc:
            log.error(
                "cluster: cannot reach NATS (%s): node %s starts DEGRADED, polling every site on its own",
                type(exc).__name__,
                self.node_id,
            )
        except BaseException:
            await self.stop()  # nothing of a failed start stays open
            raise
        self._nats_lost = not self._nats_fresh()
        self._recompute()
        self.started = True
        self._tasks += [
            asyncio.create_task(self._tick_loop(), name="cluster-tick"),
            asyncio.create_task(self._publish_loop(), name="cluster-publish"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._tasks, *([self._watch] if self._watch is not None else [])]
        self._tasks, self._watch = [], None
        await asyncio.gather(*(end_task(task) for task in tasks))
        if self._subscription is not None:
            # its heartbeat and flow-control tasks end with it, not with the connection
            with contextlib.suppress(*_NATS_ERRORS):
                await self._subscription.unsubscribe()
            self._subscription = None
        # leave cleanly: the others take our sites and the lease at once instead of after timeouts
        if self._kv_nodes is not None and self._nats_ready:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._kv_nodes.delete(self.node_id)
        if self._kv_leases is not None and self._lease_revision is not None:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._kv_leases.delete(LEADER_KEY, last=self._lease_revision)
        if self._nc is not None:
            with contextlib.suppress(*_NATS_ERRORS):
                await self._nc.close()
        if self._http is not None:
            await self._http.close()

    async def _connect(self) -> None:
        nats_cfg = self.config.nats

        async def on_error(exc: Exception) -> None:
            log.warning("cluster: NATS: %s", type(exc).__name__)

        async def on_disconnect() -> None:
            if not self._stopping:
                log.warning("cluster: disconnected from NATS; reconnecting")

        async def on_reconnect() -> None:
            log.info("cluster: reconnected to NATS")

        self._nc = await nats.connect(
            servers=list(nats_cfg.servers),
            user=nats_cfg.user,
            password=nats_cfg.password.get_secret_value() if nats_cfg.password else None,
            token=nats_cfg.token.get_secret_value() if nats_cfg.token else None,
            name=f"uptimewatch-{self.node_id}",
            connect_timeout=max(1, round(nats_cfg.connect_timeout)),
            reconnect_time_wait=1,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        self._js = self._nc.jetstream(timeout=nats_cfg.request_timeout)
        await self._setup()

    async def _setup(self) -> None:
        """Buckets and stream (creating them is idempotent), then the watch and the subscription."""
        assert self._js is not None
        js, cfg = self._js, self.config
        replicas = cfg.nats.replicas
        self._kv_nodes = await self._bucket(
            api.KeyValueConfig(
                bucket=NODES_BUCKET,
                history=1,
                replicas=replicas,
                ttl=max(60.0, 6 * cfg.node_timeout),  # sweeps keys of nodes gone for good
                storage=api.StorageType.FILE,
            )
        )
        self._kv_leases = await self._bucket(
            api.KeyValueConfig(
                bucket=LEASES_BUCKET, history=1, replicas=replicas, storage=api.StorageType.FILE
            )
        )
        stream = api.StreamConfig(
            name=STREAM,
            subjects=[f"{codec.SUBJECT_PREFIX}.>"],
            num_replicas=replicas,
            max_age=cfg.nats.stream_max_age,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
        )
        try:
            await js.add_stream(stream)
        except nats.js.errors.BadRequestError:
            await js.stream_info(STREAM)  # exists with other limits: use it as it is
            log.warning("cluster: stream %s exists with other settings; using it as it is", STREAM)
        for hook in self.on_setup:
            await hook()
        await self._beat()
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_nodes(), name="cluster-watch")
        if self._subscription is not None:  # a set-up that failed after subscribing, retried
            with contextlib.suppress(*_NATS_ERRORS):
                await self._subscription.unsubscribe()
        self._subscription = await js.subscribe(
            f"{codec.SUBJECT_PREFIX}.>",
            stream=STREAM,
            cb=self._on_message,
            ordered_consumer=True,
            idle_heartbeat=5.0,
            deliver_policy=api.DeliverPolicy.NEW,
        )
        self._nats_ready = True
        self._last_nats_ok = time.monotonic()
        log.info(
            "cluster: node %s joined through %s",
            self.node_id,
            ", ".join(_safe(u) for u in cfg.nats.servers),
        )

    async def _bucket(self, config: api.KeyValueConfig) -> KeyValue:
        assert self._js is not None
        try:
            return await self._js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            return await self._js.key_value(config.bucket)  # exists with other limits

    # -- the periodic work ------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.heartbeat_interval
        while True:
            started = time.monotonic()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: heartbeat round failed")
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - started)))

    async def _tick(self) -> None:
        if not self._nats_ready:
            if self._nc is None or self._nc.is_closed:
                with contextlib.suppress(*_NATS_ERRORS):
                    await self._connect()
            elif self._js is not None:
                with contextlib.suppress(*_NATS_ERRORS):
                    await self._setup()
        else:
            try:
                await self._beat()
                self._last_nats_ok = time.monotonic()
            except _NATS_ERRORS as exc:
                log.warning("cluster: heartbeat not written: %s", type(exc).__name__)
            with contextlib.suppress(*_NATS_ERRORS):
                await self._lease()
        await self._check_reach()
        self._recompute()

    async def _beat(self) -> None:
        assert self._kv_nodes is not None
        self._seq += 1
        hb = Heartbeat(
            id=self.node_id,
            pid=os.getpid(),
            url=self.url,
            started_at=self._started_at,
            at=time.time(),
            seq=self._seq,
            isolated=self._isolated,
            degraded=self.degraded,
            sites=len(self.owned_sites()),
            version=__version__,
        )
        await self._kv_nodes.put(self.node_id, encode_heartbeat(hb))
        # our own beat counts at once; the watch may lag behind
        self._members.update(hb, mono_now=time.monotonic(), wall_now=time.time())

    async def _watch_nodes(self) -> None:
        while not self._stopping:
            assert self._kv_nodes is not None
            watcher: KeyValue.KeyWatcher | None = None
            try:
                watcher = await watch_keys(self._kv_nodes)
                async for entry in watcher:
                    if entry is None:
                        continue  # the end of the initial values
                    if entry.operation in ("DEL", "PURGE"):
                        if entry.key != self.node_id:
                            log.info("cluster: node %s left", entry.key)
                            self._members.remove(entry.key)
                            self._recompute()
                        continue
                    hb = decode_heartbeat(entry.value or b"")
                    if hb is None:
                        continue
                    fresh = hb.id not in self._members
                    self._members.update(hb, mono_now=time.monotonic(), wall_now=time.time())
                    if fresh and hb.id != self.node_id:
                        log.info("cluster: node %s seen (%s)", hb.id, hb.url)
                        self._recompute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster: node watch ended (%s); watching again", type(exc).__name__)
            finally:
                if watcher is not None:  # its subscription's tasks end with it
                    await stop_watcher(watcher)
            await asyncio.sleep(self.config.heartbeat_interval)

    # -- the leader lease ---------------------------------------------------------------------

    async def _lease(self) -> None:
        """Renew the lease while we hold it; take it over when its holder stopped renewing."""
        kv = self._kv_leases
        assert kv is not None
        now_mono = time.monotonic()
        term = self.counters["leader_changes"]
        value = msgspec.json.encode(_Lease(self.node_id, time.time(), term))
        if self._lease_revision is not None:
            try:
                self._lease_revision = await kv.update(LEADER_KEY, value, last=self._lease_revision)
                self._lease_renewed = now_mono
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                self._set_leader(None, "another node took the lease")
            except _NATS_ERRORS:
                if (
                    now_mono - self._lease_renewed
                    > self.config.leader_timeout - self.config.heartbeat_interval
                ):
                    self._set_leader(None, "could not renew the lease")
                raise
        try:
            entry = await kv.get(LEADER_KEY)
        except nats.js.errors.KeyNotFoundError:  # also deleted: a leader that stopped cleanly
            entry = None
        if entry is None or entry.value is None or entry.operation in ("DEL", "PURGE"):
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                revision = (
                    await kv.create(LEADER_KEY, value)
                    if entry is None or entry.revision is None
                    else await kv.update(LEADER_KEY, value, last=entry.revision)
                )
                self._took(revision, now_mono)
            return
        assert entry.revision is not None
        holder = msgspec.json.decode(entry.value, type=_Lease)
        if self._lease_seen is None or self._lease_seen[0] != entry.revision:
            self._lease_seen = (entry.revision, now_mono)
        if holder.node == self.node_id:
            # ours from before a restart: take it back with the revision we read
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                self._took(await kv.update(LEADER_KEY, value, last=entry.revision), now_mono)
            return
        if now_mono - self._lease_seen[1] > self.config.leader_timeout:
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                self._took(await kv.update(LEADER_KEY, value, last=entry.revision), now_mono)
                log.warning("cluster: took the lease over from %s, silent for a leader timeout", holder.node)
                return
        self._set_leader(holder.node, "")

    def _took(self, revision: int, now_mono: float) -> None:
        self._lease_revision = revision
        self._lease_renewed = now_mono
        self._set_leader(self.node_id, "")

    def _set_leader(self, node: str | None, why: str) -> None:
        if node != self.node_id:
            self._lease_revision = None
        if node == self._leader:
            return
        was_leading = self._leader == self.node_id
        self._leader = node
        self.counters["leader_changes"] += 1
        if node == self.node_id:
            self.leader_since = time.time()
            log.warning("cluster: node %s is now the leader", self.node_id)
            self.on_leadership(True)
        elif was_leading:
            self.leader_since = None
            log.warning("cluster: node %s is no longer the leader: %s", self.node_id, why)
            self.on_leadership(False)
        elif node is not None:
            log.info("cluster: leader is %s", node)

    # -- reachability -------------------------------------------------------------------------

    def _nats_fresh(self) -> bool:
        return self._nats_ready and time.monotonic() - self._last_nats_ok <= self.config.node_timeout

    async def _check_reach(self) -> None:
        peers = [m for m in self._views() if m.id != self.node_id]
        reached_peers = await asyncio.gather(*(self._reach_peer(m.heartbeat.url) for m in peers))
        self._peers_reached = sum(reached_peers)
        self._canaries_reached = 0
        if self.config.canaries and self._ping is not None:
            reached = await asyncio.gather(*(self._ping(a) for a in self.config.canaries))
            self._canaries_reached = sum(reached)
        # NATS is judged after the probes above (which take up to their timeouts) and in the same
        # step as isolation: were "degraded" read from the clock meanwhile, a node that just lost its
        # uplink would for one round judge alone, not yet isolated, and take its own silence for
        # sites down
        nats_ok = self._nats_fresh()
        self._nats_lost = not nats_ok
        isolated = (
            not nats_ok
            and self._peers_reached == 0
            and (not self.config.canaries or self._canaries_reached == 0)
        )
        if isolated != self._isolated:
            if isolated:
                log.error(
                    "cluster: node %s is ISOLATED (no NATS server, no other node%s): its verdicts count "
                    "as unknown until it is back",
                    self.node_id,
                    ", no canary" if self.config.canaries else "",
                )
            else:
                log.warning("cluster: node %s is reachable again", self.node_id)
            self._isolated = isolated

    async def _reach_peer(self, url: str) -> bool:
        if self._http is None or not url:
            return False
        try:
            async with self._http.get(f"{url.rstrip('/')}/healthz") as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    # -- who polls what -----------------------------------------------------------------------

    def _views(self) -> list[MemberView]:
        return self._members.views(mono_now=time.monotonic(), wall_now=time.time())

    @property
    def degraded(self) -> str:
        if not self._nats_lost:
            return ""
        return "NATS unreachable: polling every site and alerting locally"

    def _recompute(self) -> None:
        views = self._views()
        self._members.forget_dead(time.monotonic(), keep=max(60.0, 6 * self.config.node_timeout))
        eligible = sorted(m.id for m in views if m.eligible)
        self._healthy = frozenset(m.id for m in views if m.alive and not m.isolated)
        sites = self._sites()
        if self.degraded or not eligible:
            owned: frozenset[str] | None = None
            self._assignment = {}
            self._vantage, self._quorum = 1, 1
            self._healthy = frozenset() if self._isolated else frozenset({self.node_id})
        else:
            self._vantage = sharding.vantage_points(self.config.vantage_points, len(eligible))
            self._quorum = sharding.quorum(self.config.quorum, self._vantage)
            self._assignment = sharding.assign((s.site_id for s in sites), eligible, self._vantage)
            owned = frozenset(s for s, nodes in self._assignment.items() if self.node_id in nodes)
            primary = frozenset(s for s, nodes in self._assignment.items() if nodes[:1] == (self.node_id,))
            if primary != self._primary:
                self._primary = primary  # replaced only on change: the metrics' view caches on it
        if owned != self._owned:
            before = self._owned
            self._owned = owned
            if owned is None:
                log.info("cluster: node %s polls every site", self.node_id)
            else:
                gained = len(owned - before) if before is not None else len(owned)
                lost = len(before - owned) if before is not None else len(sites) - len(owned)
                log.info(
                    "cluster: node %s polls %d of %d sites (%d more, %d fewer) with %d nodes",
                    self.node_id,
                    len(owned),
                    len(sites),
                    gained,
                    lost,
                    len(eligible),
                )
            self._on_assignment()

    def owns(self, site_id: str) -> bool:
        return self._owned is None or site_id in self._owned

    def owned_sites(self) -> frozenset[str]:
        if self._owned is None:
            return frozenset(s.site_id for s in self._sites())
        return self._owned

    def primary_sites(self) -> frozenset[str] | None:
        """The sites this node exports on ``/metrics``: those it is the first vantage point of.
        None: every site (alone or degraded, this node is the only one that judges them)."""
        return None if self._owned is None else self._primary

    def pollers(self, site_id: str) -> tuple[str, ...]:
        return self._assignment.get(site_id, (self.node_id,) if self._owned is None else ())

    def reconfigure(self) -> None:
        """The site list changed (a reload): reassign, and forget the sites that are gone."""
        self._merge.forget_sites({s.site_id for s in self._sites()})
        self._recompute()

    # -- observations ---------------------------------------------------------------------------

    def observe(self, obs: Observation, ref: SiteRef | None) -> None:
        """One of our own polls finished: judge it with the others' and put it on the stream."""
        self._judge(self.node_id, obs, ref, time.time())
        if self._nats_ready and ref is not None:
            try:
                self._publish_queue.put_nowait(obs)
            except asyncio.QueueFull:
                self.counters["dropped"] += 1

    async def _on_message(self, msg: Msg) -> None:
        try:
            # our own batches come back too: judged when they were made, so only counted
            node, count, batch = codec.decode(msg.data, skip_node=self.node_id)
        except codec.CodecError:
            self.counters["decode_errors"] += 1
            return
        self.counters["received"] += count
        if not batch:
            return
        refs = self._site_refs()
        judge = self._judge
        now = time.time()  # one batch, one moment: its observations are judged together
        for obs in batch:
            judge(node, obs, refs.get(obs.site_id), now)

    def _site_refs(self) -> Mapping[str, SiteRef]:
        """The configured sites by id, rebuilt when the site list is replaced (a reload)."""
        sites = self._sites()
        if self._refs_of is not sites:
            self._refs = {s.site_id: s for s in sites}
            self._refs_of = sites
        return self._refs

    def _judge(self, node: str, obs: Observation, ref: SiteRef | None, now: float) -> None:
        if ref is None:
            return  # a site this node's configuration does not have (a reload in progress)
        verdict = self._merge.offer(
            node,
            obs,
            pollers=self.pollers(obs.site_id),
            healthy=self._healthy,
            quorum=self._quorum,
            max_age=ref.max_age,
            now=now,
        )
        if verdict is not None:
            self._ingest(verdict)

    async def _publish_loop(self) -> None:
        """Publish without waiting for each acknowledgement, at most :data:`PUBLISH_WINDOW` unacked.

        One publish awaited at a time ran at the round trip to the stream's replicas: under 800 a
        second on an idle loop and a few a second on a loop busy polling (bench/cluster_bench.py),
        far below what one node polls. Acks are counted as they come back; one not back within
        ``nats.request_timeout`` is given up and counted as an error, as a failed publish was.
        The window stays below nats-py's own limit of pending acks, so publishing never waits on
        it (its wait is through ``asyncio.wait_for``, a trip round the event loop per message)."""
        pending: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        timeout = self.config.nats.request_timeout
        queue = self._publish_queue
        while True:
            batch = [await queue.get()]
            if queue.qsize() < codec.BATCH_MAX:
                await asyncio.sleep(PUBLISH_LINGER)
            while len(batch) < codec.BATCH_MAX and not queue.empty():
                batch.append(queue.get_nowait())
            if self._js is None or self._nc is None:
                continue
            limit = max(1024, self._nc.max_payload - 1024)  # room for the headers NATS adds
            for count, data in codec.encode_within(self.node_id, batch, limit):
                while pending and pending[0][1].done():
                    pending.popleft()
                while len(pending) >= PUBLISH_WINDOW:
                    sent, oldest = pending.popleft()
                    if not oldest.done():
                        left = sent + timeout - time.monotonic()
                        if left > 0:
                            await asyncio.wait({oldest}, timeout=left)
                        oldest.cancel()  # no ack in time: its slot back, counted by _acked
                try:
                    # no Nats-Expected-Stream header: these subjects are the stream's alone, and
                    # the header was a third of every stored message
                    ack = await self._js.publish_async(codec.subject(self.node_id), data)
                except _NATS_ERRORS:
                    self.counters["publish_errors"] += count
                    continue
                ack.add_done_callback(functools.partial(self._acked, count))
                pending.append((time.monotonic(), ack))

    def _acked(self, count: int, ack: asyncio.Future[Any]) -> None:
        if not ack.cancelled() and ack.exception() is None:
            self.counters["published"] += count
        else:
            self.counters["publish_errors"] += count

    # -- what the API shows ---------------------------------------------------------------------

    @property
    def nc(self) -> NatsClient | None:
        return self._nc

    @property
    def js(self) -> JetStreamContext | None:
        return self._js

    @property
    def nats_ready(self) -> bool:
        return self._nats_ready

    @property
    def leader(self) -> str | None:
        return None if self.degraded else self._leader

    @property
    def is_leader(self) -> bool:
        """Whether this node runs the alert engine: the lease holder, or anyone on its own."""
        return bool(self.degraded) or self._leader == self.node_id

    @property
    def isolated(self) -> bool:
        return self._isolated

    def disagreements(self) -> list[Disagreement]:
        return self._merge.disagreements()

    def status(self) -> dict[str, Any]:
        views = self._views()
        counts: dict[str, int] = {}
        for nodes in self._assignment.values():
            for n in nodes:
                counts[n] = counts.get(n, 0) + 1
        nodes_out = []
        for m in views:
            hb = m.heartbeat
            mine = m.id == self.node_id
            nodes_out.append(
                {
                    "id": m.id,
                    "alive": m.alive if not mine else True,
                    "isolated": self._isolated if mine else m.isolated,
                    "pid": hb.pid,
                    "url": hb.url,
                    "sites": len(self.owned_sites()) if mine else counts.get(m.id, hb.sites),
                    "last_heartbeat": hb.at,
                    "eligible": m.eligible,
                    "degraded": self.degraded if mine else hb.degraded,
                }
            )
        if not any(n["id"] == self.node_id for n in nodes_out):
            nodes_out.append(
                {
                    "id": self.node_id,
                    "alive": True,
                    "isolated": self._isolated,
                    "pid": os.getpid(),
                    "url": self.url,
                    "sites": len(self.owned_sites()),
                    "last_heartbeat": None,
                    "eligible": False,
                    "degraded": self.degraded,
                }
            )
        # as `uptimewatch cluster status`: a lease whose holder is seen dead names no leader
        alive = {n["id"] for n in nodes_out if n["alive"]}
        return {
            "leader": self.leader if self.leader in alive else None,
            "node": self.node_id,
            "degraded": self.degraded,
            "vantage_points": self._vantage,
            "quorum": self._quorum,
            "nodes": nodes_out,
            "disagreements": [
                {
                    "site_id": d.site_id,
                    "device_id": d.device_id,
                    "probe": d.probe,
                    "silent": list(d.silent),
                    "answered": list(d.answered),
                }
                for d in self.disagreements()
            ],
        }

    def owners(self) -> Mapping[str, tuple[str, ...]]:
        return self._assignment


__all__ = ["ClusterNode", "SiteRef"]
