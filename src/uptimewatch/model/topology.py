"""Topology: which hubs and links each site is reached through, and what follows when they fail.

A site declares up to two ``upstream`` entries: a hub site id (``hub-maichau``), or one link device
at a site (``hub-maichau:mw1``, the radio or fibre terminal that carries the traffic). From that:

* A site whose own core devices do not answer, while every one of its upstreams is down or itself
  cut off, is **unreachable**, not down: we cannot tell whether it is on the air. Its reason names
  the *root cause* (the failed hub or link at the top of the chain), however many levels up.
* A site that still answers but lost one of its two uplinks is **degraded** ("lost uplink via ...").
* After an upstream recovers, a site that was cut off stays unreachable until a poll started after
  the recovery has been judged (see :mod:`.health`); otherwise every child would flash ``down`` on
  the stale results of the outage and page the duty operator for each one.

This module is pure: the graph and the rule (:func:`judge`). The health model holds the states and
calls :func:`judge`; :mod:`.outages` reads the root causes back from a health snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal

from ..i18n import N_, Phrase, Text

if TYPE_CHECKING:
    from ..config.models import Site

__all__ = [
    "Topology",
    "UplinkState",
    "UplinkView",
    "UpstreamRef",
    "Verdict",
    "judge",
]

LINK_SEPARATOR: Final = ":"


@dataclass(frozen=True, slots=True)
class UpstreamRef:
    """One upstream entry: a site, or one link device at a site."""

    site_id: str
    device_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> UpstreamRef:
        site_id, sep, device_id = text.partition(LINK_SEPARATOR)
        return cls(site_id, device_id if sep else None)

    @property
    def ref(self) -> str:
        return self.site_id if self.device_id is None else f"{self.site_id}{LINK_SEPARATOR}{self.device_id}"


class Topology:
    """The upstream graph of a configuration: who is behind whom. Cycles are rejected at load."""

    __slots__ = ("children", "links", "upstreams")

    def __init__(self, sites: Iterable[Site]) -> None:
        upstreams: dict[str, tuple[UpstreamRef, ...]] = {}
        children: dict[str, list[str]] = {}
        links: dict[str, list[str]] = {}
        for site in sites:
            refs = tuple(UpstreamRef.parse(u) for u in site.upstream)
            if not refs:
                continue
            upstreams[site.id] = refs
            for r in refs:
                kids = children.setdefault(r.site_id, [])
                if site.id not in kids:
                    kids.append(site.id)
                if r.device_id is not None and r.device_id not in links.setdefault(r.site_id, []):
                    links[r.site_id].append(r.device_id)
        #: site id -> its upstream entries (only sites that have some)
        self.upstreams: Mapping[str, tuple[UpstreamRef, ...]] = upstreams
        #: site id -> the sites directly behind it or behind one of its link devices
        self.children: Mapping[str, tuple[str, ...]] = {k: tuple(v) for k, v in children.items()}
        #: site id -> its devices that other sites name as their upstream link
        self.links: Mapping[str, tuple[str, ...]] = {k: tuple(v) for k, v in links.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topology) and self.upstreams == other.upstreams

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.upstreams.items())))

    def downstream(self, site_id: str) -> list[str]:
        """Every site reached through ``site_id``, nearest first (not including it)."""
        out: list[str] = []
        seen = {site_id}
        frontier = [site_id]
        while frontier:
            nxt: list[str] = []
            for sid in frontier:
                for child in self.children.get(sid, ()):
                    if child not in seen:
                        seen.add(child)
                        out.append(child)
                        nxt.append(child)
            frontier = nxt
        return out

    def order(self, site_ids: Iterable[str] | None = None) -> list[str]:
        """Sites with upstreams, each after all of its upstreams (those of ``site_ids`` only, if given)."""
        wanted = set(self.upstreams if site_ids is None else site_ids) & self.upstreams.keys()
        out: list[str] = []
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for start in sorted(wanted):
            if state.get(start) == 2:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            while stack:
                sid, i = stack.pop()
                ups = self.upstreams.get(sid, ())
                if i == 0:
                    if state.get(sid) is not None:
                        continue
                    state[sid] = 1
                if i < len(ups):
                    stack.append((sid, i + 1))
                    up = ups[i].site_id
                    if state.get(up) is None and up in self.upstreams:
                        stack.append((up, 0))
                else:
                    state[sid] = 2
                    if sid in wanted:
                        out.append(sid)
        return out


class UplinkState(StrEnum):
    UP = "up"
    DOWN = "down"  # the hub (all its core devices) or the link device itself failed
    CUT_OFF = "cut_off"  # the upstream is itself unreachable: the failure is further up


@dataclass(frozen=True, slots=True)
class UplinkView:
    """How one upstream of a site looks right now, as the health model sees it."""

    ref: str
    label: Phrase  # for people: "Trạm HUB Mai Châu (hub down)"
    state: UplinkState
    #: the failures at the top of the chain, as (ref, label) pairs; empty while the uplink is up
    roots: tuple[tuple[str, Phrase], ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What topology makes of a site's own state. ``own``: nothing to add."""

    kind: Literal["own", "unreachable", "degraded"]
    reason: Phrase = ""
    roots: tuple[tuple[str, Phrase], ...] = ()  # unreachable: the root causes (ref, label)
    lost: tuple[str, ...] = ()  # degraded: the refs of the uplinks lost


OWN: Final = Verdict("own")


def judge(own_state: str, uplinks: Sequence[UplinkView]) -> Verdict:
    """The topology rule for one site, from its own state (a ``SiteState`` value) and its uplinks.

    A site whose own devices still answer keeps its own verdict even when every uplink we know of
    is down: what it says beats what the configuration assumes about its paths.
    """
    if not uplinks:
        return OWN
    bad = [u for u in uplinks if u.state is not UplinkState.UP]
    if not bad:
        return OWN
    if len(bad) == len(uplinks):
        if own_state != "down":
            return OWN
        roots: dict[str, Phrase] = {}
        for u in bad:
            for ref, label in u.roots or ((u.ref, u.label),):
                roots.setdefault(ref, label)
        return Verdict(
            "unreachable",
            Text(N_("cut off behind {uplinks:and}"), {"uplinks": list(roots.values())}),
            roots=tuple(roots.items()),
        )
    if own_state in ("up", "degraded"):
        return Verdict(
            "degraded",
            Text(N_("lost uplink via {uplinks:and}"), {"uplinks": [u.label for u in bad]}),
            lost=tuple(u.ref for u in bad),
        )
    return OWN
