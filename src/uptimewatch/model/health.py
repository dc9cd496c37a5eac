"""The health model: observations in, check -> device -> site states and rollups out.

Pure and synchronous: no I/O, and time comes from each observation's ``started_at`` (or the
injected clock for snapshots and reloads), so tests replay hours of history instantly.

Rules, in the words an operator would use:

* **Hysteresis.** A check's state counts ("hard") only after ``hard_after`` results in a row
  agree; recovery needs the same. The first result a check ever gets is hard at once, so a
  fresh start shows the network after one cycle. Soft states are visible (``hard=False``)
  but move neither the device nor the site.
* **Reachable.** Ping decides when the device has ICMP configured and we could ping; otherwise
  whether the SNMP agent answered (an authentication failure still counts as an answer).
* **Device state** is its worst hard check (UNKNOWN ranks between OK and WARNING).
* **Site down** means "the base station is off the air": every *core* device is unreachable.
  Core devices are the site's ``bts`` devices; a site without one uses its ``router`` devices;
  a site with neither uses all of its devices. **Degraded**: any device has a hard WARNING or
  CRITICAL check, or a non-core device is unreachable. **Up**: every hard check OK.
  **Unknown**: nothing polled yet.
* **Topology** (:mod:`.topology`): a site that would be down while every upstream (hub site or
  link device) is down or cut off is **unreachable**, its reason naming the root cause; a site that
  lost one of two uplinks is degraded. After the upstream recovers, the site stays unreachable
  until a poll started after the recovery is judged (:meth:`HealthModel.take_rechecks` lists the
  sites to poll at once).
* **One incident per root cause, whatever the poll order.** A site found down while an upstream
  still counts as up is not down yet: it keeps its state until that upstream has been polled again
  (:meth:`HealthModel.take_polls` lists its chain, to poll at once), as Icinga re-checks parents.
  The upstream answers: the site is down. It does not: the site is unreachable behind it. Either
  way the new state dates from the site's failed poll. Likewise a site that goes down with sites
  behind it says so (``root_in_doubt``) until those have been polled again, so the alerts
  know whether it is one site down or the root of an outage; and a site behind a down hub that
  answers again has the hub polled at once (``root_in_doubt`` until it was), so the hub's
  recovery is not first shown as "down, nothing cut off".
* **Thresholds**: built-in defaults, then the device's probe profile, then everything the
  configuration sets explicitly (global, district, site and device ``thresholds``). A profile
  therefore changes only what the configuration leaves alone.

Cost: ``ingest`` is O(checks of the device + devices of its site); ``snapshot`` rebuilds only
the sites touched since the last one and is cached until something changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

import msgspec

from ..config.models import Config, District, Role, Site, Thresholds
from ..config.resolve import ResolvedDevice
from ..gcpause import no_cycle_collection, promote
from ..i18n import N_, Phrase, Text, joined
from .checks import (
    BUILTIN_CHECKS,
    FIELD_CHECKS,
    NO_DATA,
    SEVERITY,
    CheckState,
    FieldJudge,
    ProbeChecks,
    Result,
    role_text,
    shared_text,
)
from .observation import ErrorKind, FieldValue, Observation
from .topology import Topology, UplinkState, UplinkView, UpstreamRef
from .topology import judge as topology_verdict

__all__ = [
    "CheckState",
    "CheckStatus",
    "DeviceStatus",
    "HealthModel",
    "HealthSnapshot",
    "ProbeRecord",
    "Rollup",
    "RollupLevel",
    "SiteState",
    "SiteStatus",
    "StateChange",
]

log = logging.getLogger(__name__)


class SiteState(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNREACHABLE = "unreachable"  # cut off behind a down hub or link (see .topology)
    UNKNOWN = "unknown"  # not polled yet


#: "Worst" order for sites, used by rollups.
SITE_SEVERITY: Final[dict[SiteState, int]] = {
    SiteState.UP: 0,
    SiteState.UNKNOWN: 1,
    SiteState.DEGRADED: 2,
    SiteState.UNREACHABLE: 3,
    SiteState.DOWN: 4,
}

RollupLevel = Literal["commune", "district", "carrier", "province"]
ROLLUP_LEVELS: Final[tuple[RollupLevel, ...]] = ("province", "district", "commune", "carrier")

#: How many device reasons a site reason quotes before "+N more".
SITE_REASON_PARTS: Final = 3
NOT_POLLED: Final = Text(N_("not polled yet"))
ALL_CHECKS_OK: Final = Text(N_("all checks OK"))

_EMPTY: Final[Mapping[str, FieldValue]] = MappingProxyType({})
_BAD: Final = SEVERITY[CheckState.WARNING]


def _device_reason(label: Phrase, reason: Phrase) -> Phrase:
    return Text(N_("{device}: {reason}"), {"device": label, "reason": reason})


# -- the public, frozen picture -----------------------------------------------------------------
# The records ingest builds for every observation (a probe's last result, a check whose value
# moved) are msgspec structs: built and compared in C, about ten times faster than a frozen
# dataclass, and left out of the cycle collector (plain values only), whose passes walk every
# object a poll leaves alive.


class CheckStatus(msgspec.Struct, frozen=True, gc=False):
    """One check of one device. ``state`` is the latest result; ``hard_state`` the one that counts.

    ``since`` is when the latest result's state began (first of the streak); ``attempts`` how many
    results in a row had it, counted up to ``hard_after``.
    """

    name: str
    state: CheckState
    hard: bool
    reason: Phrase
    since: float
    attempts: int
    value: FieldValue
    hard_state: CheckState


class ProbeRecord(msgspec.Struct, frozen=True, gc=False):
    """The last result of one probe on one device."""

    probe: str
    at: float
    duration_s: float
    error_kind: ErrorKind | None
    error_message: str | None
    profile: str | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error_kind is None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    site_id: str
    device_id: str
    role: Role
    name: str
    address: str
    reachable: bool | None  # None: not polled yet, or no probe could tell
    state: CheckState  # worst hard check
    reason: Phrase
    checks: tuple[CheckStatus, ...]
    fields: Mapping[str, FieldValue]  # last known values, merged across probes
    probes: Mapping[str, ProbeRecord]

    def check(self, name: str) -> CheckStatus | None:
        return next((c for c in self.checks if c.name == name), None)


@dataclass(frozen=True, slots=True)
class SiteStatus:
    site_id: str
    name: str
    district: str
    commune: str | None
    carrier: str
    priority: str
    upstream: tuple[str, ...]
    state: SiteState
    reason: Phrase
    since: float | None  # when the current state began; None before the first poll
    devices: tuple[DeviceStatus, ...]
    #: unreachable: the failed hubs or links at the top of the chain (``site`` or ``site:device``)
    cut_off_by: tuple[str, ...] = ()
    #: the upstream entries currently down while another path still works (state degraded)
    lost_uplinks: tuple[str, ...] = ()
    #: unreachable only until a poll started after the upstream's recovery has been judged
    rechecking: bool = False
    #: a device was found silent, and the site keeps its state until its other devices, and if it
    #: is down its upstream, have been polled again (cut off, down, or one device lost?)
    confirming: bool = False
    #: down, and fresh polls are awaited to tell whether it is one site down, the root of an
    #: outage, or up again: of the sites behind it (it just went down), or its own (one of them
    #: answers again)
    root_in_doubt: bool = False

    def device(self, device_id: str) -> DeviceStatus | None:
        return next((d for d in self.devices if d.device_id == device_id), None)


@dataclass(frozen=True, slots=True)
class Rollup:
    """How many sites of one commune / district / carrier / the province are in each state."""

    level: RollupLevel
    id: str
    name: str
    counts: Mapping[SiteState, int]  # every SiteState present, zeros included
    state: SiteState  # the worst state among its sites; unknown when it has none
    parent: str | None = None  # the district of a commune (commune ids are only unique within one)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    generated_at: float
    sites: Mapping[str, SiteStatus]
    rollups: tuple[Rollup, ...]

    def site(self, site_id: str) -> SiteStatus | None:
        return self.sites.get(site_id)

    def rollups_at(self, level: RollupLevel) -> tuple[Rollup, ...]:
        return tuple(r for r in self.rollups if r.level == level)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A hard transition: what the alert engine and the availability ledger consume."""

    kind: Literal["check", "device", "site"]
    site_id: str
    device_id: str | None
    check: str | None
    old: CheckState | SiteState
    new: CheckState | SiteState
    reason: Phrase
    at: float


# -- mutable working state, private ------------------------------------------------------------


class _Check:
    __slots__ = (
        "count",
        "hard_reason",
        "hard_state",
        "hard_value",
        "name",
        "since",
        "source",
        "state",
        "status",
    )

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source  # the probe whose results feed it
        self.state = CheckState.UNKNOWN
        self.count = 0
        self.since = 0.0
        self.hard_state = CheckState.UNKNOWN
        self.hard_reason: Phrase = NO_DATA
        self.hard_value: FieldValue = None
        self.status: CheckStatus | None = None


class _Device:
    __slots__ = (
        "cfg",
        "checks",
        "field_checks",
        "field_checks_of",
        "fields_by_probe",
        "polled",
        "probes",
        "reachable",
        "reason",
        "state",
        "status",
        "thr_key",
        "thresholds",
    )

    def __init__(self, cfg: ResolvedDevice) -> None:
        self.cfg = cfg
        self.checks: dict[str, _Check] = {}
        self.fields_by_probe: dict[str, Mapping[str, FieldValue]] = {}
        self.probes: dict[str, ProbeRecord] = {}
        self.polled = False
        self.state = CheckState.UNKNOWN
        self.reachable: bool | None = None
        self.reason: Phrase = NOT_POLLED
        self.status: DeviceStatus | None = None
        self.thresholds: Thresholds | None = None
        self.thr_key: str | None = None
        # FIELD_CHECKS with whether ``field_checks_of`` enables each: thresholds change only with
        # a reload or a new profile, and asking them on every observation was a third of judging
        self.field_checks: tuple[tuple[str, str, FieldJudge, bool], ...] = ()
        self.field_checks_of: Thresholds | None = None


class _Site:
    __slots__ = (
        "carrier",
        "cfg",
        "challenged_since",
        "commune",
        "core",
        "cut_off",
        "devices",
        "district",
        "down_check_since",
        "held_since",
        "labels",
        "lost",
        "lost_seen",
        "name",
        "priority",
        "reason",
        "recheck_since",
        "since",
        "site_id",
        "state",
        "upstream",
        "view",
    )

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        self.cfg: Site | None = None  # the configuration object it was configured from
        self.name = site_id
        self.district = ""
        self.commune: str | None = None
        self.carrier = ""
        self.priority = "normal"
        self.upstream: tuple[str, ...] = ()
        self.devices: list[_Device] = []
        self.core: list[_Device] = []
        self.labels: dict[str, Phrase] = {}
        self.state = SiteState.UNKNOWN
        self.reason: Phrase = NOT_POLLED
        self.since: float | None = None
        self.cut_off: tuple[tuple[str, Phrase], ...] = ()  # root causes (ref, label) while unreachable
        self.lost: tuple[str, ...] = ()
        self.recheck_since: float | None = None  # when the upstream came back, while re-checking
        self.held_since: float | None = None  # found down, waiting for its upstream's verdict
        self.down_check_since: float | None = None  # went down, waiting for the sites behind it
        self.challenged_since: float | None = None  # down, yet a site behind it answers
        self.lost_seen: frozenset[str] = frozenset()  # devices silent at the last verdict given
        self.view: object = None  # what children last saw of this site

    def meta(self) -> tuple[object, ...]:
        return (self.name, self.district, self.commune, self.carrier, self.priority, self.upstream)

    def configure(self, cfg: Site, devices: list[_Device]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.district = cfg.district
        self.commune = cfg.commune
        self.carrier = cfg.carrier
        self.priority = cfg.priority
        self.upstream = tuple(cfg.upstream)
        self.devices = devices
        bts = [d for d in devices if d.cfg.role is Role.BTS]
        routers = [d for d in devices if d.cfg.role is Role.ROUTER]
        self.core = bts or routers or list(devices)
        per_role: dict[Role, int] = {}
        for d in devices:
            per_role[d.cfg.role] = per_role.get(d.cfg.role, 0) + 1
        self.labels = {
            d.cfg.device_id: role_text(d.cfg.role)
            if per_role[d.cfg.role] == 1
            else Text(N_("{role} {device}"), {"role": role_text(d.cfg.role), "device": d.cfg.name})
            for d in devices
        }


def _same_members(old: list[_Device], new: list[_Device]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))


def _link_down(dev: _Device) -> bool:
    """A link device as an upstream: down when it does not answer or reports its link down."""
    if dev.reachable is False:
        return True
    oper = dev.checks.get("link.oper")
    return oper is not None and oper.hard_state is CheckState.CRITICAL


#: (reachability check, protocol kind), the one deciding first first
Reach = tuple[tuple[str, str], ...]


def _reach_order(sources: Iterable[ProbeChecks]) -> Reach:
    ranked = sorted((s for s in sources if s.reachability is not None), key=lambda s: s.rank)
    return tuple((s.reachability, s.kind) for s in ranked if s.reachability is not None)


def _reachability(dev: _Device, reach: Reach, *, hard: bool) -> _Check | None:
    """The reachability check that decides whether ``dev`` answers: the best-ranked one with a
    value (the hard one with ``hard``) of a protocol that polls the device, else the best-ranked
    one with a value at all (a protocol turned off by a reload keeps its last word until another
    one speaks). Without ``hard``, any check that exists counts."""
    checks = dev.checks
    cfg = dev.cfg
    fallback: _Check | None = None
    for name, kind in reach:
        chk = checks.get(name)
        if chk is None or (hard and chk.hard_value is None):
            continue
        if cfg.polls(kind):
            return chk
        if fallback is None:
            fallback = chk
    return fallback


def _answers_now(dev: _Device, reach: Reach) -> bool:
    """What the latest (possibly soft) reachability result says, decided as for ``reachable``."""
    chk = _reachability(dev, reach, hard=False)
    if chk is None or chk.status is None:
        return False
    return chk.status.value is True


def _unsettled(dev: _Device, since: float, reach: Reach) -> bool:
    """Whether ``dev`` has yet to tell whether it answers: no result started at or after
    ``since``, or its latest reachability result disagrees with the one hysteresis still holds."""
    if not any(p.at >= since for p in dev.probes.values()):
        return True
    for name, _kind in reach:
        chk = dev.checks.get(name)
        if chk is not None and (SEVERITY[chk.state] >= _BAD) != (SEVERITY[chk.hard_state] >= _BAD):
            return True
    return False


def _fresh(dev: _Device, since: float, reach: Reach, *, strict: bool) -> bool:
    """Whether ``dev`` has a result started at or after ``since``: of the protocol whose result
    decides whether it answers with ``strict``, of any protocol without."""
    probes = dev.probes
    if strict and (decider := _reachability(dev, reach, hard=False)) is not None:
        record = probes.get(decider.source)
        return record is not None and record.at >= since
    return any(p.at >= since for p in probes.values())


def _hold_limit(devices: Iterable[_Device]) -> float:
    """How long a verdict may wait for ``devices``: the time they need to turn hard (``hard_after``
    polls) and one more interval, so that a device never polled holds nothing forever."""
    return max((d.cfg.interval * (d.cfg.hard_after + 1) + d.cfg.timeout for d in devices), default=0.0)


def _rollup_keys(site: _Site, province: str) -> tuple[tuple[str, ...], ...]:
    keys: tuple[tuple[str, ...], ...] = (
        ("province", province),
        ("district", site.district),
        ("carrier", site.carrier),
    )
    if site.commune:
        keys += (("commune", site.district, site.commune),)
    return keys


class HealthModel:
    """Judges observations; holds the current state of every configured device and site."""

    def __init__(
        self,
        config: Config,
        devices: Sequence[ResolvedDevice],
        profile_thresholds: Callable[[str | None], Thresholds | None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        probe_checks: Sequence[ProbeChecks] = BUILTIN_CHECKS,
    ) -> None:
        self._profile_thresholds = profile_thresholds
        #: what each protocol's observations yield (``probing.registry.Registry.checks()``)
        self._sources = {source.kind: source for source in probe_checks}
        self._reach = _reach_order(probe_checks)
        self._clock = clock
        self._devices: dict[tuple[str, str], _Device] = {}
        self._sites: dict[str, _Site] = {}
        self._site_status: dict[str, SiteStatus] = {}
        self._dirty_sites: set[str] = set()
        self._counts: dict[tuple[str, ...], dict[SiteState, int]] = {}
        self._rollup_meta: list[tuple[RollupLevel, str, str, str | None, tuple[str, ...]]] = []
        self._snapshot: HealthSnapshot | None = None
        self._topology = Topology(())
        self._propagate = True
        self._rechecks: list[str] = []
        #: site id -> the sites whose pending verdict a new result of this site may settle
        self._waiters: dict[str, set[str]] = {}
        self._polls: list[tuple[str, str]] = []
        #: when the observation being ingested was complete (its start plus its duration)
        self._result_end = 0.0
        self._apply_config(config, devices)

    # -- observations in ------------------------------------------------------------------------

    def ingest(self, obs: Observation) -> list[StateChange]:
        """Judge one observation; returns the hard transitions it caused (checks, device, site)."""
        dev = self._devices.get((obs.site_id, obs.device_id))
        if dev is None:
            log.debug("observation for unconfigured device %s/%s ignored", obs.site_id, obs.device_id)
            return []
        err = obs.error
        if err is not None and err.kind is ErrorKind.OVERLOADED:
            # the monitor was too late to tell (its loop lagged past the deadline): no verdict, so
            # no check moves, hysteresis counts nothing and the last result stands
            return []
        at = obs.started_at
        self._result_end = at + obs.duration_s
        cfg = dev.cfg
        changes: list[StateChange] = []
        # copied on write, so the status objects share it instead of copying it each
        dev.probes = probes = dict(dev.probes)
        probes[obs.probe] = ProbeRecord(
            obs.probe,
            at,
            obs.duration_s,
            err.kind if err else None,
            err.message if err else None,
            obs.profile,
            obs.problems,
        )
        hard = 0
        source = self._sources.get(obs.probe)
        judge = source.judge if source is not None else None
        # a protocol nobody registered (an older node's observation) is judged by its fields
        by_fields = err is None and (source is None or source.judge_fields)
        if judge is not None or by_fields:
            t = self._thresholds(dev, obs.profile)
            if judge is not None:
                for name, result in judge(obs, t, cfg):
                    hard += self._judge(dev, name, obs.probe, result, at=at, changes=changes)
            if by_fields:
                hard += self._judge_fields(dev, obs, t, changes)
        if err is None:
            dev.fields_by_probe[obs.probe] = obs.fields
        first = not dev.polled
        dev.polled = True
        dev.status = None
        site = self._sites.get(cfg.site_id)
        if site is not None:
            self._dirty_sites.add(site.site_id)
        self._snapshot = None
        if hard or first:
            self._derive_device(dev, at, changes)
            if site is not None:
                self._derive_site(site, at, changes)
        elif site is not None and (site.recheck_since is not None or site.held_since is not None):
            # a re-check waits for fresh results, not for a hard flip; so does a held verdict
            self._derive_site(site, at, changes)
        waiting = self._waiters.pop(cfg.site_id, None)
        if waiting:
            self._settle(waiting, at, changes)
        if site is not None and site.challenged_since is not None:
            since = site.challenged_since
            if at - since > _hold_limit(site.core) or not any(
                _unsettled(d, since, self._reach) for d in site.core
            ):
                site.challenged_since = None
        return changes

    def take_polls(self) -> list[tuple[str, str]]:
        """(site, device) pairs to poll now, out of cycle, so that a pending verdict is settled:
        the upstream chain of a site found down, the sites behind a site gone down."""
        out, self._polls = self._polls, []
        return out

    def take_rechecks(self) -> list[str]:
        """Sites whose upstream just recovered: poll their devices now (then the list is empty)."""
        out, self._rechecks = self._rechecks, []
        return out

    def _settle(self, waiting: Iterable[str], at: float, changes: list[StateChange]) -> None:
        """A result came in that the verdicts of ``waiting`` wait for: judge them again."""
        for site_id in waiting:
            site = self._sites.get(site_id)
            if site is None:
                continue
            if site.held_since is not None:
                self._derive_site(site, at, changes)
            if site.down_check_since is not None:
                self._check_downstream(site)

    @property
    def topology(self) -> Topology:
        return self._topology

    def _judge_fields(self, dev: _Device, obs: Observation, t: Thresholds, changes: list[StateChange]) -> int:
        fields = obs.fields
        probe = obs.probe
        at = obs.started_at
        hard = 0
        if dev.field_checks_of is not t:
            dev.field_checks = tuple(
                (name, key, judge, enabled(t)) for name, key, enabled, judge in FIELD_CHECKS
            )
            dev.field_checks_of = t
        for name, key, judge, enabled in dev.field_checks:
            value = fields.get(key)
            if value is None or not enabled:
                # a field another probe feeds is none of this probe's business
                existing = dev.checks.get(name)
                if existing is not None and existing.source == probe:
                    hard += self._judge(
                        dev, name, probe, (CheckState.UNKNOWN, "no data", None), at=at, changes=changes
                    )
                continue
            hard += self._judge(dev, name, probe, judge(fields, t), at=at, changes=changes)
        return hard

    def _judge(
        self, dev: _Device, name: str, source: str, result: Result, *, at: float, changes: list[StateChange]
    ) -> int:
        """Apply one result with hysteresis.

        Returns 1 when the device's derived state or reason may have moved (a hard transition, or
        new words for the hard state), so ingest re-derives the device and its site only then.
        """
        state, reason, value = result
        chk = dev.checks.get(name)
        if chk is not None and (st := chk.status) is not None:
            count = chk.count
            if (
                state == chk.state
                and state == chk.hard_state
                and count >= dev.cfg.hard_after
                and chk.source == source
                and st.state == state
                and st.hard
                and st.attempts == count
                and st.hard_state == state
                and st.since == chk.since
                and st.value == value
                and st.reason == reason
            ):
                # the same result as the last one, settled: what the steps below would come to,
                # without their stores (most results of a quiet province are this)
                chk.hard_reason = reason
                chk.hard_value = value
                return 0
        new_check = chk is None
        if chk is None:
            chk = dev.checks[name] = _Check(name, source)
        chk.source = source
        need = dev.cfg.hard_after
        if state == chk.state and not new_check:
            if chk.count < need:
                chk.count += 1
        else:
            chk.state = state
            chk.count = 1
            chk.since = at
        flipped = 0
        if state == chk.hard_state:
            chk.hard_reason = reason
            chk.hard_value = value
        elif new_check or chk.count >= need:
            old = chk.hard_state
            chk.hard_state = state
            chk.hard_reason = reason
            chk.hard_value = value
            flipped = 1
            changes.append(
                StateChange("check", dev.cfg.site_id, dev.cfg.device_id, name, old, state, reason, at)
            )
        if new_check and state == CheckState.UNKNOWN:
            # an UNKNOWN first result is no news, but the check must exist from now on
            flipped = 1
        hard = state == chk.hard_state
        attempts = chk.count
        st = chk.status
        if (
            st is None
            or st.state != state
            or st.hard != hard
            or st.reason != reason
            or st.value != value
            or st.attempts != attempts
            or st.hard_state != chk.hard_state
            or st.since != chk.since
        ):
            chk.status = CheckStatus(name, state, hard, reason, chk.since, attempts, value, chk.hard_state)
        if flipped == 0 and hard and st is not None and st.reason != reason:
            # same hard state, new words ("~38 min left" -> "~35 min left"): the reasons above move
            flipped = 1
        return flipped

    # -- derived device and site state ------------------------------------------------------------

    def _derive_device(self, dev: _Device, at: float, changes: list[StateChange]) -> None:
        checks = dev.checks
        worst = CheckState.OK if checks else CheckState.UNKNOWN
        for chk in checks.values():
            if SEVERITY[chk.hard_state] > SEVERITY[worst]:
                worst = chk.hard_state
        decider = _reachability(dev, self._reach, hard=True)
        reachable = None if decider is None else bool(decider.hard_value)

        reason: Phrase
        if reachable is False and decider is not None:
            reason = decider.hard_reason
        else:
            bad = [c for c in checks.values() if SEVERITY[c.hard_state] >= _BAD]
            if len(bad) > 1 and any(c.name == "power.on_battery" for c in bad):
                # "on battery, ~38 min left" already says what the minutes check would repeat
                bad = [c for c in bad if c.name != "power.battery_minutes"]
            if bad:
                bad.sort(key=lambda c: -SEVERITY[c.hard_state])
                reason = joined([c.hard_reason for c in bad[:SITE_REASON_PARTS]])
            elif worst == CheckState.UNKNOWN:
                unknown = [c.hard_reason for c in checks.values() if c.hard_state == CheckState.UNKNOWN]
                reason = unknown[0] if unknown else NO_DATA
            else:
                reason = ALL_CHECKS_OK
        dev.reachable = reachable
        dev.reason = reason
        if worst != dev.state:
            changes.append(
                StateChange("device", dev.cfg.site_id, dev.cfg.device_id, None, dev.state, worst, reason, at)
            )
            dev.state = worst

    def _derive_site(self, site: _Site, at: float, changes: list[StateChange]) -> None:
        devices = site.devices
        polled = [d for d in devices if d.polled]
        reason: Phrase
        if not polled:
            state = SiteState.UNKNOWN
            reason = Text(N_("no devices configured")) if not devices else NOT_POLLED
        else:
            core = site.core
            core_ids = {id(d) for d in core}
            down = bool(core) and all(d.reachable is False for d in core)
            problems = [
                d
                for d in devices
                if SEVERITY[d.state] >= _BAD or (d.reachable is False and id(d) not in core_ids)
            ]
            if down:
                state = SiteState.DOWN
            elif problems:
                state = SiteState.DEGRADED
            else:
                state = SiteState.UP
            if down or problems:
                problems = [d for d in devices if d.reachable is False or SEVERITY[d.state] >= _BAD]
                problems.sort(
                    key=lambda d: (d.reachable is not False, id(d) not in core_ids, -SEVERITY[d.state])
                )
                parts: list[Phrase] = [
                    _device_reason(site.labels[d.cfg.device_id], d.reason)
                    for d in problems[:SITE_REASON_PARTS]
                ]
                if len(problems) > SITE_REASON_PARTS:
                    parts.append(Text(N_("+{n} more"), {"n": len(problems) - SITE_REASON_PARTS}))
                reason = joined(parts)
            elif len(polled) < len(devices):
                reason = Text(
                    N_("{polled} of {total} devices OK, the others not polled yet"),
                    {"polled": len(polled), "total": len(devices)},
                )
            elif len(devices) > 1:
                reason = shared_text(N_("all {n} devices OK"), "n", len(devices))
            else:
                reason = Text(N_("device OK"))
        state, reason, at = self._confirm(site, state, reason, at)
        site.reason = reason
        went_down = state is SiteState.DOWN and site.state is not SiteState.DOWN
        if state != site.state:
            changes.append(StateChange("site", site.site_id, None, None, site.state, state, reason, at))
            self._count(site, site.state, -1)
            self._count(site, state, +1)
            site.state = state
            site.since = at
        self._dirty_sites.add(site.site_id)
        self._snapshot = None
        children = self._topology.children.get(site.site_id)
        if children:
            view = (state, site.cut_off, self._links_down(site))
            if view != site.view:
                site.view = view
                if self._propagate:
                    for child_id in children:
                        child = self._sites.get(child_id)
                        if child is not None:
                            self._derive_site(child, at, changes)
            if went_down:
                site.down_check_since = at
                for child_id in children:
                    child = self._sites.get(child_id)
                    if child is not None:
                        self._polls.extend((child_id, d.cfg.device_id) for d in child.core)
            if state is not SiteState.DOWN:
                site.down_check_since = None
                site.challenged_since = None
            if site.down_check_since is not None:
                self._check_downstream(site)

    def _confirm(
        self, site: _Site, state: SiteState, reason: Phrase, at: float
    ) -> tuple[SiteState, Phrase, float]:
        """The site's state, reason and since-when once its devices' word is weighed against the
        others': a device newly found silent is believed only once the site's other devices have
        been heard since (the polls of one cycle finish in any order); then the topology rule, which
        may wait for the upstream in turn. A verdict that waits keeps the site's state; once given,
        it dates from the poll that found the silence."""
        held, site.held_since = site.held_since, None
        since = held if held is not None else at
        lost = frozenset(d.cfg.device_id for d in site.devices if d.reachable is False)
        topo = self._topology
        # in the topology (behind an upstream, or with sites behind it), a silent device may be the
        # first sign of a cut path: one cause, which must not read as several
        if lost - site.lost_seen and (site.site_id in topo.upstreams or site.site_id in topo.children):
            # a device never polled yet has nothing to take back (a start shows the first cycle)
            doubt = [
                d
                for d in site.devices
                if d.polled and d.reachable is not False and _unsettled(d, since, self._reach)
            ]
            if doubt and at - since <= _hold_limit(doubt):
                site.held_since = since
                if held is None:
                    self._polls.extend((site.site_id, d.cfg.device_id) for d in doubt)
                    self._want_chain(topo.upstreams.get(site.site_id, ()))
                return site.state, Text(N_("{reason}; re-checking its other devices"), {"reason": reason}), at
        if site.site_id in topo.upstreams:
            state, reason = self._apply_topology(site, state, reason, at, since, first=held is None)
        if site.held_since is not None:
            return state, reason, at
        site.lost_seen = lost
        return state, reason, (held if held is not None else at)

    # -- topology -------------------------------------------------------------------------------

    def _apply_topology(
        self, site: _Site, state: SiteState, reason: Phrase, at: float, since: float, *, first: bool
    ) -> tuple[SiteState, Phrase]:
        """The site's state and reason with what its upstreams say. ``since``: when the failure
        being confirmed was found (``at`` unless a verdict is already waiting); ``first``: no
        verdict was waiting."""
        refs = self._topology.upstreams[site.site_id]
        views = [self._uplink(ref) for ref in refs]
        verdict = topology_verdict(state.value, views)
        if verdict.kind == "unreachable":
            site.cut_off = verdict.roots
            site.lost = ()
            site.recheck_since = None
            return SiteState.UNREACHABLE, verdict.reason
        if state in (SiteState.UP, SiteState.DEGRADED):
            self._challenge(site, refs)
        # (a verdict that waited for the upstream is this re-check's outcome, not a new outage's end)
        if first and site.recheck_since is None and site.state is SiteState.UNREACHABLE and site.cut_off:
            # the path is back, but this site's device states date from the outage. Only results
            # started once the one that showed the path back was complete count: a burst started
            # while the upstream's was still waiting for its late reply saw the path still cut
            site.recheck_since = max(at, self._result_end)
            self._rechecks.append(site.site_id)
        if site.recheck_since is not None:
            if not self._rechecked(site, site.recheck_since, state, at):
                labels = [label for _ref, label in site.cut_off]
                msgid = (
                    N_("{uplinks:and} is back; re-checking this site")
                    if len(labels) == 1
                    else N_("{uplinks:and} are back; re-checking this site")
                )
                return SiteState.UNREACHABLE, Text(msgid, {"uplinks": labels})
            site.recheck_since = None
        if state is SiteState.DOWN and site.state is not SiteState.DOWN:
            doubt = [
                ref
                for ref, view in zip(refs, views, strict=True)
                if view.state is UplinkState.UP and self._in_doubt(ref, since, at)
            ]
            if doubt:
                # cut off, or down on its own? Its upstream's next result tells; until then the
                # site keeps its state, as a check keeps its hard state during hysteresis
                site.held_since = since
                for ref in doubt:
                    self._waiters.setdefault(ref.site_id, set()).add(site.site_id)
                if first:
                    self._want_chain(refs)
                names = [self._sites[r.site_id].name for r in doubt if r.site_id in self._sites]
                if not names:
                    return site.state, Text(N_("{reason}; re-checking upstream first"), {"reason": reason})
                return site.state, Text(
                    N_("{reason}; re-checking upstream {uplinks:list}"), {"reason": reason, "uplinks": names}
                )
        site.cut_off = ()
        site.lost = verdict.lost
        if verdict.kind == "degraded":
            if state is SiteState.DEGRADED:
                return SiteState.DEGRADED, joined([verdict.reason, reason])
            return SiteState.DEGRADED, verdict.reason
        return state, reason

    def _in_doubt(self, ref: UpstreamRef, since: float, now: float) -> bool:
        """Whether an upstream that counts as up has yet to be heard from since ``since``.

        Not longer than its devices need to turn hard down (``hard_after`` polls) and one more
        interval: an upstream that is never polled (no probe it can be polled with) does not hold
        the site forever.
        """
        up = self._sites.get(ref.site_id)
        if up is None:
            return False
        if ref.device_id is not None:
            link = self._devices.get((ref.site_id, ref.device_id))
            devices = [link] if link is not None else []
        else:
            devices = up.core
        if not devices or now - since > _hold_limit(devices):
            return False
        if up.held_since is not None:
            return True  # found down itself, waiting for its own upstream
        return any(_unsettled(d, since, self._reach) for d in devices)

    def _challenge(self, site: _Site, refs: Iterable[UpstreamRef]) -> None:
        """This site answers: an upstream hub still judged down on older results is polled at once,
        and says it is in doubt until then."""
        heard = max((p.at for d in site.core for p in d.probes.values()), default=None)
        if heard is None:
            return
        for ref in refs:
            up = self._sites.get(ref.site_id)
            if up is None or up.state is not SiteState.DOWN or up.challenged_since is not None:
                continue
            if not any(_unsettled(d, heard, self._reach) for d in up.core):
                continue  # its own latest results are as fresh as this one: it is down
            up.challenged_since = heard
            self._polls.extend((up.site_id, d.cfg.device_id) for d in up.core)
            self._dirty_sites.add(up.site_id)
            self._snapshot = None

    def _want_chain(self, refs: Iterable[UpstreamRef]) -> None:
        """Ask for polls of every upstream up the chain: the hubs' core devices, or the links."""
        upstreams = self._topology.upstreams
        seen: set[str] = set()
        stack = list(refs)
        while stack:
            ref = stack.pop()
            if ref.ref in seen:
                continue
            seen.add(ref.ref)
            up = self._sites.get(ref.site_id)
            if up is None:
                continue
            if ref.device_id is not None:
                self._polls.append((ref.site_id, ref.device_id))
            else:
                self._polls.extend((ref.site_id, d.cfg.device_id) for d in up.core)
            stack.extend(upstreams.get(ref.site_id, ()))

    def _check_downstream(self, site: _Site) -> None:
        """A site gone down waits until every site directly behind it has told whether it still
        answers (or is down or cut off itself)."""
        since = site.down_check_since
        assert since is not None
        pending = []
        for child_id in self._topology.children.get(site.site_id, ()):
            child = self._sites.get(child_id)
            if child is None or child.state in (SiteState.DOWN, SiteState.UNREACHABLE):
                continue
            if child.held_since is not None or any(_unsettled(d, since, self._reach) for d in child.core):
                pending.append(child_id)
        for child_id in pending:
            self._waiters.setdefault(child_id, set()).add(site.site_id)
        if not pending:
            site.down_check_since = None
            self._dirty_sites.add(site.site_id)
            self._snapshot = None

    def _rechecked(self, site: _Site, since: float, state: SiteState, at: float) -> bool:
        """Every core device has a result started after ``since`` of the protocol that decides
        whether it answers; and if they still count as unreachable, the latest results agree (the
        others are being confirmed by hysteresis).

        That protocol's, not any one's: an SNMP answer that came back first left the ping's result
        from the outage deciding, and the site turned down for a poll. Past the time its devices
        need to turn hard, a fresh result of any protocol does (a protocol that stopped reporting
        must not keep the site waiting)."""
        strict = at - since <= _hold_limit(site.core)
        for d in site.core:
            if not _fresh(d, since, self._reach, strict=strict):
                return False
        if state is SiteState.DOWN:
            return not any(_answers_now(d, self._reach) for d in site.core)
        return True

    def _uplink(self, ref: UpstreamRef) -> UplinkView:
        up = self._sites.get(ref.site_id)
        if up is None:
            return UplinkView(ref.ref, ref.ref, UplinkState.UP)
        if up.state is SiteState.UNREACHABLE:
            return UplinkView(
                ref.ref, Text(N_("{site} (cut off)"), {"site": up.name}), UplinkState.CUT_OFF, up.cut_off
            )
        hub_down = Text(N_("{site} (hub down)"), {"site": up.name})
        if ref.device_id is None:
            if up.state is SiteState.DOWN:
                return UplinkView(ref.ref, hub_down, UplinkState.DOWN, ((ref.site_id, hub_down),))
            return UplinkView(ref.ref, up.name, UplinkState.UP)
        dev = self._devices.get((ref.site_id, ref.device_id))
        label = Text(
            N_("{device} at {site}"), {"device": dev.cfg.name if dev else ref.device_id, "site": up.name}
        )
        if dev is None or not _link_down(dev):
            return UplinkView(ref.ref, label, UplinkState.UP)
        if up.state is SiteState.DOWN:
            return UplinkView(ref.ref, hub_down, UplinkState.DOWN, ((ref.site_id, hub_down),))
        down = Text(N_("{link} (link down)"), {"link": label})
        return UplinkView(ref.ref, down, UplinkState.DOWN, ((ref.ref, down),))

    def _links_down(self, site: _Site) -> tuple[bool, ...]:
        links = self._topology.links.get(site.site_id)
        if not links:
            return ()
        return tuple(
            (d := self._devices.get((site.site_id, device_id))) is not None and _link_down(d)
            for device_id in links
        )

    def _count(self, site: _Site, state: SiteState, delta: int) -> None:
        for key in _rollup_keys(site, self._province_id):
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = dict.fromkeys(SiteState, 0)
            counts[state] += delta

    # -- thresholds -----------------------------------------------------------------------------

    def _thresholds(self, dev: _Device, obs_profile: str | None) -> Thresholds:
        cfg = dev.cfg
        key = cfg.profile if cfg.profile != "auto" else (obs_profile or dev.thr_key)
        if dev.thresholds is not None and key == dev.thr_key:
            return dev.thresholds
        t = cfg.thresholds
        if self._profile_thresholds is not None and key:
            t = self._with_profile(cfg, key, t)
        dev.thresholds = t
        dev.thr_key = key
        return t

    def _with_profile(self, cfg: ResolvedDevice, profiles: str, t: Thresholds) -> Thresholds:
        assert self._profile_thresholds is not None
        updates: dict[str, object] = {}
        # an observation names every profile that contributed, comma-joined; later ones win
        for name in profiles.split(","):
            prof = self._profile_thresholds(name.strip())
            if prof is None:
                continue
            for field in Thresholds.model_fields:
                value = getattr(prof, field)
                if value is not None:
                    updates[field] = value
        if not updates:
            return t
        for field in self._explicit_thresholds(cfg):
            updates.pop(field, None)
        return t.model_copy(update=updates) if updates else t

    def _explicit_thresholds(self, cfg: ResolvedDevice) -> set[str]:
        """Threshold names the configuration sets anywhere in this device's cascade."""
        site = self._site_cfg.get(cfg.site_id)
        blocks: list[Thresholds | None] = [self._config.defaults.thresholds]
        if site is not None:
            district = self._district_cfg.get(site.district)
            if district is not None and district.defaults is not None:
                blocks.append(district.defaults.thresholds)
            if site.defaults is not None:
                blocks.append(site.defaults.thresholds)
            own = next((d for d in site.devices if d.id == cfg.device_id), None)
            if own is not None:
                blocks.append(own.thresholds)
        return {
            name
            for block in blocks
            if block is not None
            for name in block.model_fields_set
            if getattr(block, name) is not None
        }

    # -- configuration --------------------------------------------------------------------------

    def reconfigure(self, config: Config, devices: Sequence[ResolvedDevice]) -> list[StateChange]:
        """Swap in a new configuration: devices that remain keep their state, removed ones are
        dropped, new ones start unknown. Returns the site transitions the change itself caused."""
        return self._apply_config(config, devices)

    def _apply_config(self, config: Config, devices: Sequence[ResolvedDevice]) -> list[StateChange]:
        self._config = config
        self._province_id = config.province.id
        self._site_cfg: dict[str, Site] = {s.id: s for s in config.sites}
        self._district_cfg: dict[str, District] = {d.id: d for d in config.districts}

        old_devices = self._devices
        new_devices: dict[tuple[str, str], _Device] = {}
        by_site: dict[str, list[_Device]] = {}
        changed_devices: set[str] = set()
        for rd in devices:
            key = rd.key
            dev = old_devices.get(key)
            if dev is not None and dev.cfg is rd:  # unchanged (a reload parses only what changed)
                new_devices[key] = dev
                by_site.setdefault(rd.site_id, []).append(dev)
                continue
            if dev is None:
                dev = _Device(rd)
                changed_devices.add(rd.site_id)
            elif dev.cfg is not rd:
                old = dev.cfg
                if (old.role, old.name, old.address) != (rd.role, rd.name, rd.address):
                    dev.status = None
                    changed_devices.add(rd.site_id)
                # which protocols poll it may change who decides whether it answers
                protocols_changed = not old.same_protocols(rd)
                dev.cfg = rd
                dev.thresholds = None  # thresholds or profile may have changed: recomputed lazily
                if protocols_changed and dev.polled:
                    self._derive_device(dev, self._clock(), [])
                    changed_devices.add(rd.site_id)
            new_devices[key] = dev
            by_site.setdefault(rd.site_id, []).append(dev)
        self._devices = new_devices

        now = self._clock()
        changes: list[StateChange] = []
        old_sites = self._sites
        new_sites: dict[str, _Site] = {}
        site_status: dict[str, SiteStatus] = {}
        topology = Topology(config.sites)
        topology_changed = topology != self._topology
        self._topology = topology
        # sites are judged in file order here; the topology pass below redoes them upstreams first
        self._propagate = False
        touched: set[str] = set()
        for cfg in config.sites:
            site = old_sites.get(cfg.id)
            members = by_site.pop(cfg.id, [])
            if site is None:
                site = _Site(cfg.id)
                site.configure(cfg, members)
                self._dirty_sites.add(cfg.id)
                if members:
                    self._derive_site_quiet(site, now, changes)
                    touched.add(cfg.id)
            elif site.cfg is cfg and cfg.id not in changed_devices and _same_members(site.devices, members):
                # the same site object with the same devices: nothing of it changed
                site.devices = members
                if cfg.id in self._site_status:
                    site_status[cfg.id] = self._site_status[cfg.id]
            else:
                before = (site.meta(), [id(d) for d in site.devices])
                site.configure(cfg, members)
                if before != (site.meta(), [id(d) for d in members]) or cfg.id in changed_devices:
                    self._dirty_sites.add(cfg.id)
                    self._derive_site_quiet(site, now, changes)
                    touched.add(cfg.id)
                elif cfg.id in self._site_status:
                    site_status[cfg.id] = self._site_status[cfg.id]
            new_sites[cfg.id] = site
        for site_id in by_site:
            log.warning("devices of unknown site %s ignored", site_id)
        self._sites = new_sites
        self._site_status = site_status
        self._dirty_sites = {s for s in self._dirty_sites if s in new_sites} | (
            new_sites.keys() - site_status.keys()
        )
        try:
            self._rederive_topology(topology_changed, touched, now, changes)
        finally:
            self._propagate = True

        self._counts = {}
        for site in new_sites.values():
            self._count(site, site.state, +1)
        self._rollup_meta = self._build_rollup_meta(config, new_sites.values())
        self._snapshot = None
        return changes

    def _derive_site_quiet(self, site: _Site, at: float, changes: list[StateChange]) -> None:
        # counts are rebuilt from scratch after a reload, so keep _derive_site from touching them
        saved = self._counts
        self._counts = {}
        try:
            self._derive_site(site, at, changes)
        finally:
            self._counts = saved

    def _rederive_topology(
        self, changed: bool, touched: set[str], at: float, changes: list[StateChange]
    ) -> None:
        """After a reload, judge again (upstreams first) every site the topology may see differently."""
        topo = self._topology
        if changed:
            todo = topo.order()
        elif touched:
            behind = {c for sid in touched for c in topo.downstream(sid)}
            todo = topo.order(behind | (touched & topo.upstreams.keys()))
        else:
            return
        for sid in todo:
            site = self._sites.get(sid)
            if site is not None and site.devices:
                self._derive_site_quiet(site, at, changes)

    @staticmethod
    def _build_rollup_meta(
        config: Config, sites: Iterable[_Site]
    ) -> list[tuple[RollupLevel, str, str, str | None, tuple[str, ...]]]:
        meta: list[tuple[RollupLevel, str, str, str | None, tuple[str, ...]]] = [
            ("province", config.province.id, config.province.name, None, ("province", config.province.id))
        ]
        districts = {d.id: d.name for d in config.districts}
        communes = {(d.id, c.id): c.name for d in config.districts for c in d.communes}
        carriers = {c.id: c.name for c in config.carriers}
        for site in sites:  # ids a site uses but the lists do not declare still get a rollup
            districts.setdefault(site.district, site.district)
            carriers.setdefault(site.carrier, site.carrier)
            if site.commune:
                communes.setdefault((site.district, site.commune), site.commune)
        meta += [("district", i, n, None, ("district", i)) for i, n in districts.items()]
        meta += [("commune", c, n, d, ("commune", d, c)) for (d, c), n in communes.items()]
        meta += [("carrier", i, n, None, ("carrier", i)) for i, n in carriers.items()]
        return meta

    # -- snapshot out ---------------------------------------------------------------------------

    def refresh(self, limit: int) -> bool:
        """Bring up to ``limit`` changed sites' status objects up to date, without publishing a
        snapshot; True while changed sites remain. A caller on the event loop calls it between
        yields, so that the :meth:`snapshot` after it has little left to do in one piece (a full
        cycle of changes at 100,000 devices is a second of work)."""
        dirty = self._dirty_sites
        with no_cycle_collection():
            for _ in range(min(limit, len(dirty))):
                site_id = dirty.pop()
                site = self._sites.get(site_id)
                if site is not None:
                    self._site_status[site_id] = self._site_status_of(site)
        promote()  # the step's status objects live on: out of the collector's later passes
        return bool(dirty)

    def site(self, site_id: str) -> SiteStatus | None:
        """One site's current status, as ``snapshot().site(site_id)`` gives it, but brought up to
        date alone: the cost of its devices, not of a snapshot of every site (the notifiers ask
        once per site that changed)."""
        if site_id in self._dirty_sites:
            site = self._sites.get(site_id)
            self._dirty_sites.discard(site_id)
            if site is not None:
                self._site_status[site_id] = self._site_status_of(site)
        return self._site_status.get(site_id) if site_id in self._sites else None

    def snapshot(self) -> HealthSnapshot:
        """The current picture; the same object until something changes."""
        if self._snapshot is not None:
            return self._snapshot
        # Hundreds of thousands of small acyclic objects in one go: letting the cycle collector
        # walk the whole model several times meanwhile doubles the cost and finds nothing.
        with no_cycle_collection():
            for site_id in self._dirty_sites:
                site = self._sites.get(site_id)
                if site is not None:
                    self._site_status[site_id] = self._site_status_of(site)
        dirty = bool(self._dirty_sites)
        self._dirty_sites.clear()
        if dirty:
            promote()
        empty = dict.fromkeys(SiteState, 0)
        rollups = []
        for level, rid, name, parent, key in self._rollup_meta:
            counts = self._counts.get(key, empty)
            worst = SiteState.UNKNOWN
            present = [s for s, n in counts.items() if n > 0]
            if present:
                worst = max(present, key=SITE_SEVERITY.__getitem__)
            rollups.append(Rollup(level, rid, name, MappingProxyType(dict(counts)), worst, parent))
        snap = HealthSnapshot(
            generated_at=self._clock(),
            sites=MappingProxyType(dict(self._site_status)),
            rollups=tuple(rollups),
        )
        self._snapshot = snap
        return snap

    def _site_status_of(self, site: _Site) -> SiteStatus:
        return SiteStatus(
            site.site_id,
            site.name,
            site.district,
            site.commune,
            site.carrier,
            site.priority,
            site.upstream,
            site.state,
            site.reason,
            site.since,
            tuple([self._device_status_of(d) for d in site.devices]),
            tuple(ref for ref, _label in site.cut_off) if site.state is SiteState.UNREACHABLE else (),
            site.lost,
            site.recheck_since is not None,
            site.held_since is not None,
            site.down_check_since is not None or site.challenged_since is not None,
        )

    @staticmethod
    def _device_status_of(dev: _Device) -> DeviceStatus:
        if dev.status is not None:
            return dev.status
        by_probe = dev.fields_by_probe
        fields: Mapping[str, FieldValue]
        if not by_probe:
            fields = _EMPTY
        elif len(by_probe) == 1:
            # observations are immutable by contract, so their fields can be shared
            fields = next(iter(by_probe.values()))
        else:
            # a fresh dict nobody else holds: read-only in practice, without a proxy per device
            merged: dict[str, FieldValue] = {}
            for part in by_probe.values():
                merged.update(part)
            fields = merged
        cfg = dev.cfg
        status = DeviceStatus(
            cfg.site_id,
            cfg.device_id,
            cfg.role,
            cfg.name,
            cfg.address,
            dev.reachable,
            dev.state,
            dev.reason,
            tuple([c.status for c in dev.checks.values() if c.status is not None]),
            fields,
            dev.probes,
        )
        dev.status = status
        return status
