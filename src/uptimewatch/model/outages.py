"""Outages: the root causes in a health snapshot, with the sites, communes and districts each one
cuts off, and the sites still being re-checked after theirs recovered.

Read from a :class:`~uptimewatch.model.health.HealthSnapshot` after the fact, so it sits above both
the health model and :mod:`.topology` (which the health model uses to judge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..i18n import Phrase
from .checks import CheckState
from .health import HealthSnapshot, SiteStatus
from .topology import UpstreamRef

__all__ = ["CutOffCommune", "Outage", "outages", "rechecking"]


@dataclass(frozen=True, slots=True)
class CutOffCommune:
    district: str
    commune: str
    name: str
    sites: int


@dataclass(frozen=True, slots=True)
class Outage:
    """One root cause and everything unreachable behind it."""

    root: str  # "hub-maichau" or "hub-maichau:mw1"
    kind: Literal["site", "link"]
    name: str  # "Trạm HUB Mai Châu" or "Viba Mai Châu at Trạm HUB Mai Châu"
    state: str  # the root site's state, or "down" for a failed link
    reason: Phrase  # why the root failed, in the health model's words
    since: float | None  # when the root site entered its state; the earliest cut-off for a link
    sites: tuple[str, ...]  # cut off behind it, nearest first as listed in the snapshot
    communes: tuple[CutOffCommune, ...]
    districts: tuple[str, ...]


def _root_facts(
    root: str, snap: HealthSnapshot
) -> tuple[Literal["site", "link"], str, str, Phrase, float | None]:
    ref = UpstreamRef.parse(root)
    site = snap.sites.get(ref.site_id)
    if site is None:
        return ("site" if ref.device_id is None else "link"), root, "unknown", "", None
    if ref.device_id is None:
        return "site", site.name, str(site.state), site.reason, site.since
    dev = site.device(ref.device_id)
    if dev is None:
        return "link", f"{ref.device_id} at {site.name}", "down", "", None
    return "link", f"{dev.name} at {site.name}", "down", dev.reason, None


def _root_failing(root: str, snap: HealthSnapshot) -> bool:
    ref = UpstreamRef.parse(root)
    site = snap.sites.get(ref.site_id)
    if site is None:
        return False
    if site.state == "down":
        return True
    if ref.device_id is None:
        return False
    dev = site.device(ref.device_id)
    if dev is None:
        return False
    oper = dev.check("link.oper")
    return dev.reachable is False or (oper is not None and oper.hard_state is CheckState.CRITICAL)


def outages(snap: HealthSnapshot) -> list[Outage]:
    """Current root causes, the most sites cut off first. Sites still unreachable after their root
    cause recovered, waiting for their re-check, are not listed here (see :func:`rechecking`)."""
    behind: dict[str, list[SiteStatus]] = {}
    failing: dict[str, bool] = {}
    for site in snap.sites.values():
        if site.state != "unreachable" or site.rechecking:
            continue
        for root in site.cut_off_by:
            if root not in failing:
                failing[root] = _root_failing(root, snap)
            if failing[root]:
                behind.setdefault(root, []).append(site)
    commune_names = {(r.parent, r.id): r.name for r in snap.rollups_at("commune")}
    district_names = {r.id: r.name for r in snap.rollups_at("district")}
    out: list[Outage] = []
    for root, unsorted in behind.items():
        # a stable order (district, commune, site), whatever order the snapshot holds sites in
        sites = sorted(unsorted, key=lambda s: (s.district, s.commune or "", s.site_id))
        kind, name, state, reason, since = _root_facts(root, snap)
        if since is None:
            since = min((s.since for s in sites if s.since is not None), default=None)
        communes: dict[tuple[str, str], int] = {}
        districts: dict[str, None] = {}
        for s in sites:
            districts.setdefault(district_names.get(s.district, s.district))
            if s.commune:
                key = (s.district, s.commune)
                communes[key] = communes.get(key, 0) + 1
        out.append(
            Outage(
                root=root,
                kind=kind,
                name=name,
                state=state,
                reason=reason,
                since=since,
                sites=tuple(s.site_id for s in sites),
                communes=tuple(
                    CutOffCommune(d, c, commune_names.get((d, c), c), n) for (d, c), n in communes.items()
                ),
                districts=tuple(districts),
            )
        )
    out.sort(key=lambda o: (-len(o.sites), o.root))
    return out


def rechecking(snap: HealthSnapshot) -> list[str]:
    """Sites still shown unreachable although their root cause recovered: being re-checked now,
    or waiting for the site in front of them to be."""
    return [
        s.site_id
        for s in snap.sites.values()
        if s.state == "unreachable"
        and (s.rechecking or not any(_root_failing(r, snap) for r in s.cut_off_by))
    ]
