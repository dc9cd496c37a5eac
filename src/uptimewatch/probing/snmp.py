"""The SNMP probe: one poll of one device through its profiles, returned as an Observation.

With profile ``auto`` the first poll GETs the detection OIDs (sysObjectID plus every profile's
``oid_exists``) and matches; the match is cached per device and redone when the device's
sysObjectID changes (a box was swapped) or after a number of polls (firmware added a MIB).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from dataclasses import dataclass

from ..config.resolve import ResolvedDevice, SnmpTarget
from ..export.site_series import SNMP_SERIES
from ..model.checks import SNMP_CHECKS
from ..model.observation import ErrorKind, FieldValue, Observation, ProbeError
from ..profiles import SYS_OBJECT_ID, CompiledProfile, ProfileCatalog, decode
from .protocol import Protocol
from .snmp_types import SnmpResponse, SnmpTransport, Varbind

log = logging.getLogger(__name__)

PROBE = "snmp"
REMATCH_AFTER_POLLS = 60


@dataclass(slots=True)
class _Match:
    catalog: ProfileCatalog
    sys_object_id: str | None
    profiles: tuple[CompiledProfile, ...]
    polls_left: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """What polling a set of profiles asks: the scalars to GET and the tables to walk, worked out
    once per profile set rather than per poll."""

    profiles: tuple[CompiledProfile, ...]
    oids: tuple[str, ...]
    roots: tuple[str, ...]


def _plan_of(profiles: tuple[CompiledProfile, ...], auto: bool) -> _Plan:
    oids = list(dict.fromkeys(o for p in profiles for o in p.scalar_oids))
    if auto and SYS_OBJECT_ID not in oids:
        oids.append(SYS_OBJECT_ID)  # to notice a swapped device even without generic-host
    roots = tuple(dict.fromkeys(r for p in profiles for r in p.walk_roots))
    return _Plan(profiles, tuple(oids), roots)


class _Plans:
    """The plans of one catalog: per explicit profile name, and per matched profile set."""

    __slots__ = ("explicit", "matched")

    def __init__(self) -> None:
        self.explicit: dict[str, _Plan] = {}
        self.matched: dict[tuple[CompiledProfile, ...], _Plan] = {}


#: per catalog (a reload builds a new one; the old one's plans go with it)
_PLANS: weakref.WeakKeyDictionary[ProfileCatalog, _Plans] = weakref.WeakKeyDictionary()


def _plans_for(catalog: ProfileCatalog) -> _Plans:
    plans = _PLANS.get(catalog)
    if plans is None:
        plans = _PLANS[catalog] = _Plans()
    return plans


def _explicit_plan(catalog: ProfileCatalog, name: str) -> _Plan:
    plans = _plans_for(catalog)
    plan = plans.explicit.get(name)
    if plan is None:
        plan = plans.explicit[name] = _plan_of(tuple(catalog.explicit(name)), auto=False)
    return plan


def _matched_plan(catalog: ProfileCatalog, profiles: tuple[CompiledProfile, ...]) -> _Plan:
    plans = _plans_for(catalog)
    plan = plans.matched.get(profiles)
    if plan is None:
        plan = plans.matched[profiles] = _plan_of(profiles, auto=True)
    return plan


class ProfileMatchCache:
    """Which profiles each device matched; one per process, shared by all polls.

    Plain dict, no lock: the event loop runs one poll step at a time.
    """

    def __init__(self, rematch_after: int = REMATCH_AFTER_POLLS) -> None:
        self.rematch_after = rematch_after
        self._entries: dict[tuple[str, str, str], _Match] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, device: ResolvedDevice, catalog: ProfileCatalog) -> _Match | None:
        entry = self._entries.get(_key(device))
        # a reload builds a new catalog: matches against the old one are stale
        if entry is None or entry.catalog is not catalog or entry.polls_left <= 0:
            return None
        entry.polls_left -= 1
        return entry

    def store(
        self,
        device: ResolvedDevice,
        catalog: ProfileCatalog,
        sys_object_id: str | None,
        profiles: list[CompiledProfile],
    ) -> _Match:
        entry = _Match(catalog, sys_object_id, tuple(profiles), self.rematch_after)
        self._entries[_key(device)] = entry
        return entry

    def clear(self) -> None:
        """Forget every match (after a reload; entries would also notice the new catalog)."""
        self._entries.clear()

    def forget(self, device: ResolvedDevice) -> None:
        self._entries.pop(_key(device), None)

    def profile_names(self, device: ResolvedDevice) -> list[str] | None:
        entry = self._entries.get(_key(device))
        return None if entry is None else [p.name for p in entry.profiles]


class _Result:
    """Builds the Observation of one poll: identity and timing filled in once."""

    __slots__ = ("device", "started_at", "t0")

    def __init__(self, device: ResolvedDevice) -> None:
        self.device = device
        self.started_at = time.time()
        self.t0 = time.monotonic()

    def __call__(
        self,
        *,
        fields: dict[str, FieldValue] | None = None,
        error: ProbeError | None = None,
        problems: list[str] | tuple[str, ...] = (),
        profiles: tuple[CompiledProfile, ...] = (),
    ) -> Observation:
        return Observation(
            site_id=self.device.site_id,
            device_id=self.device.device_id,
            probe=PROBE,
            started_at=self.started_at,
            duration_s=time.monotonic() - self.t0,
            fields=fields or {},
            error=error,
            problems=tuple(problems),
            profile=_names(profiles),
        )


@functools.lru_cache(maxsize=1024)
def _names(profiles: tuple[CompiledProfile, ...]) -> str | None:
    """``Observation.profile`` of a profile set (profiles hash by identity: a cheap key)."""
    return ",".join(p.name for p in profiles) or None


def _key(device: ResolvedDevice) -> tuple[str, str, str]:
    return (device.site_id, device.device_id, device.address)


async def probe(
    device: ResolvedDevice,
    catalog: ProfileCatalog,
    transport: SnmpTransport,
    cache: ProfileMatchCache | None = None,
) -> Observation:
    """Polls ``device`` once. Never raises (cancellation aside): failures come back as data.

    The caller owns the deadline (``asyncio.timeout``); the transport applies the target's
    per-request timeout and retries.
    """
    result = _Result(device)
    target = device.snmp
    if target is None:
        return result(error=ProbeError(ErrorKind.INTERNAL, "SNMP is disabled for this device"))
    try:
        return await _probe(
            device, target=target, catalog=catalog, transport=transport, cache=cache, result=result
        )
    except Exception as exc:
        log.exception("SNMP probe of %s/%s (%s) failed", device.site_id, device.device_id, device.address)
        return result(error=ProbeError(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}"))


async def _probe(
    device: ResolvedDevice,
    *,
    target: SnmpTarget,
    catalog: ProfileCatalog,
    transport: SnmpTransport,
    cache: ProfileMatchCache | None,
    result: _Result,
) -> Observation:
    auto = device.profile == "auto"
    if not auto and device.profile not in catalog:
        return result(error=ProbeError(ErrorKind.INTERNAL, f"unknown profile {device.profile!r}"))
    for attempt in range(2):
        entry = cache.lookup(device, catalog) if cache is not None and auto else None
        if entry is not None:
            profiles, expected_sys_oid = entry.profiles, entry.sys_object_id
        elif auto:
            detection = await transport.get(target, catalog.probe_oids)
            if detection.error is not None:
                return result(error=detection.error)
            present = {vb.oid for vb in detection.varbinds if not vb.empty}
            sys_oid = _sys_object_id(detection.varbinds)
            profiles = tuple(catalog.match(sys_oid, present))
            expected_sys_oid = sys_oid
            if cache is not None:
                cache.store(device, catalog, sys_oid, list(profiles))
            log.debug("%s/%s matched %s", device.site_id, device.device_id, [p.name for p in profiles])
        else:
            profiles, expected_sys_oid = (), None
        plan = _matched_plan(catalog, profiles) if auto else _explicit_plan(catalog, device.profile)
        profiles, oids, roots = plan.profiles, plan.oids, plan.roots
        responses: list[SnmpResponse] = []
        if oids:
            got = await transport.get(target, oids)
            if got.error is not None:
                return result(error=got.error, profiles=profiles)
            responses.append(got)
        if roots:
            responses.extend(await asyncio.gather(*(transport.walk(target, root) for root in roots)))

        if entry is not None and cache is not None and responses:
            now = _sys_object_id(responses[0].varbinds)
            if now is not None and now != expected_sys_oid and attempt == 0:
                log.info(
                    "%s/%s sysObjectID changed from %s to %s: matching profiles again",
                    device.site_id,
                    device.device_id,
                    expected_sys_oid,
                    now,
                )
                cache.forget(device)
                continue
        return _observation(responses, roots, profiles, result)
    raise AssertionError("unreachable: the second attempt always returns")


def _observation(
    responses: list[SnmpResponse],
    roots: tuple[str, ...],
    profiles: tuple[CompiledProfile, ...],
    result: _Result,
) -> Observation:
    problems: list[str] = []
    varbinds: list[Varbind] = []
    walks = responses[len(responses) - len(roots) :] if roots else []
    walk_errors: list[ProbeError] = []
    for response in responses:
        varbinds.extend(response.varbinds)
        problems.extend(response.problems)
    for root, response in zip(roots, walks, strict=True):
        if response.error is not None:
            walk_errors.append(response.error)
            problems.append(f"walk of {root} failed: {response.error.kind.value}: {response.error.message}")
        elif response.truncated:
            problems.append(f"walk of {root} stopped at the row or request cap")
    if not responses or (len(walk_errors) == len(responses)):
        # nothing but failed walks: the device did not really answer
        error = walk_errors[0] if walk_errors else ProbeError(ErrorKind.NO_SUCH_OBJECT, "no OIDs to poll")
        return result(error=error, problems=problems, profiles=profiles)
    fields, decode_problems = decode(profiles, varbinds)
    problems.extend(decode_problems)
    # derived fields can hold words like "unknown" even then: what counts is what the agent sent
    if not any(not vb.empty for vb in varbinds):
        names = ", ".join(p.name for p in profiles)
        return result(
            fields=dict(fields),
            error=ProbeError(
                ErrorKind.NO_SUCH_OBJECT, f"the agent answered but holds none of the fields of {names}"
            ),
            problems=problems,
            profiles=profiles,
        )
    return result(fields=dict(fields), problems=problems, profiles=profiles)


def _sys_object_id(varbinds: tuple[Varbind, ...]) -> str | None:
    for vb in varbinds:
        if vb.oid == SYS_OBJECT_ID and not vb.empty and vb.value is not None:
            return str(vb.value).removeprefix(".")
    return None


#: SNMP's registry entry; the daemon polls through its own transport and profile catalog
#: (``probe`` None), and its series are the exporter's built-in families
PROTOCOL = Protocol("snmp", SNMP_CHECKS, series=SNMP_SERIES)
