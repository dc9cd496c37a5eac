"""Which nodes poll which site: rendezvous (highest-random-weight) hashing over the healthy nodes.

A site is the unit (its devices stay together, so the site rollup and topology see one picture),
and each site goes to the ``vantage_points`` nodes with the highest score for it. Because a score
depends only on (site, node), a node joining or leaving moves only the sites whose top list it
enters or leaves: about ``k/N`` of them, never a reshuffle. Pure functions, identical in every
process (blake2b, not the per-process ``hash()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

Assignment = Mapping[str, tuple[str, ...]]


def score(site_id: str, node_id: str) -> int:
    digest = hashlib.blake2b(f"{site_id}\0{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owners(site_id: str, nodes: Iterable[str], k: int) -> tuple[str, ...]:
    """The ``k`` nodes that poll ``site_id``, best first (the first is its primary)."""
    ranked = sorted(nodes, key=lambda n: (score(site_id, n), n), reverse=True)
    return tuple(ranked[: max(k, 0)])


def assign(site_ids: Iterable[str], nodes: Sequence[str], k: int) -> dict[str, tuple[str, ...]]:
    return {site: owners(site, nodes, k) for site in site_ids}


def vantage_points(configured: int | None, healthy: int) -> int:
    """How many nodes poll each site: as configured (default 2), never more than there are."""
    wanted = configured if configured is not None else 2
    return max(1, min(wanted, healthy))


def quorum(configured: int | None, vantage: int) -> int:
    """How many vantage points must agree on "down": as configured (default a majority), capped."""
    wanted = configured if configured is not None else vantage // 2 + 1
    return max(1, min(wanted, vantage))


def moved(before: Assignment, after: Assignment) -> set[str]:
    """Sites whose set of pollers changed."""
    return {s for s in set(before) | set(after) if set(before.get(s, ())) != set(after.get(s, ()))}


__all__ = ["Assignment", "assign", "moved", "owners", "quorum", "score", "vantage_points"]
