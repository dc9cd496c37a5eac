"""Several vantage points, one verdict: the stage between the observation stream and the health model.

Each site is polled by its vantage points (:mod:`.sharding`). For every (site, device, probe) this
keeps the latest observation of each node and hands the health model one observation per round:

* the round is the *lead* vantage point's poll (the first healthy poller with a fresh result), so
  hysteresis counts rounds exactly as on a single node, not once per node;
* "no answer" counts only when at least ``quorum`` of the healthy vantage points saw it, and the
  reason says so ("2 of 2 probe nodes: ..."); otherwise the freshest answer from a node that did
  reach the device is passed on;
* observations of nodes that are not healthy (isolated, dead, unknown) are kept but never vote.

Pure and synchronous; time is the observations' own ``started_at`` and the ``now`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import msgspec

from ..model.observation import Observation, ProbeError
from ..probing.registry import builtin

Key = tuple[str, str, str]  # (site, device, probe)


#: whether an observation says its device did not answer, as the shipped protocols declare it
#: (``Registry.silence()``: an error of the silent kinds, or ICMP's burst that lost every reply)
is_silent: Callable[[Observation], bool] = builtin().silence()


@dataclass(frozen=True, slots=True)
class Disagreement:
    site_id: str
    device_id: str
    probe: str
    silent: tuple[str, ...]  # nodes that got no answer
    answered: tuple[str, ...]  # nodes that did


class VantageMerge:
    def __init__(self, silent: Callable[[Observation], bool] = is_silent) -> None:
        """``silent``: the daemon's registry's ``silence()``; by default the shipped protocols'."""
        self._silent = silent
        self._last: dict[Key, dict[str, Observation]] = {}
        self._disagree: dict[Key, Disagreement] = {}

    def offer(
        self,
        node: str,
        obs: Observation,
        *,
        pollers: Sequence[str],
        healthy: Collection[str],
        quorum: int,
        max_age: float,
        now: float,
    ) -> Observation | None:
        """Record ``node``'s observation; return what the health model should ingest, if anything."""
        key = (obs.site_id, obs.device_id, obs.probe)
        seen = self._last.get(key)
        if seen is None:
            seen = self._last[key] = {}
        seen[node] = obs
        if len(pollers) == 1 and pollers[0] == node and node in healthy:
            # one vantage point (the usual case with vantage_points 1): its result is the verdict;
            # the general path below would come to the same after three passes over one node
            self._disagree.pop(key, None)
            if self._silent(obs) and now - obs.started_at <= max_age:
                return _annotated(obs, pollers, pollers)
            return obs if now - obs.started_at <= max_age else None
        voters = [n for n in pollers if n in healthy]
        if not voters:
            # nobody healthy is assigned (a cold start, or the cluster is being rebuilt): pass it on
            self._disagree.pop(key, None)
            return obs if node in healthy or not pollers else None
        fresh = [n for n in voters if n in seen and now - seen[n].started_at <= max_age]
        silent = [n for n in fresh if self._silent(seen[n])]
        answered = [n for n in fresh if n not in silent]
        self._note(key, silent, answered)
        if not fresh or fresh[0] != node:
            return None  # not the lead's round
        needed = max(1, min(quorum, len(voters)))
        if len(silent) >= needed:
            return _annotated(obs if obs in (seen[n] for n in silent) else seen[silent[0]], silent, voters)
        if answered:
            return max((seen[n] for n in answered), key=lambda o: o.started_at)
        return None  # one node saw nothing and the others have not confirmed yet

    def _note(self, key: Key, silent: Sequence[str], answered: Sequence[str]) -> None:
        if silent and answered:
            self._disagree[key] = Disagreement(*key, tuple(silent), tuple(answered))
        else:
            self._disagree.pop(key, None)

    def disagreements(self) -> list[Disagreement]:
        return sorted(self._disagree.values(), key=lambda d: (d.site_id, d.device_id, d.probe))

    def forget_sites(self, keep: Collection[str]) -> None:
        """Drop what is kept for sites no longer in the configuration."""
        for key in [k for k in self._last if k[0] not in keep]:
            del self._last[key]
            self._disagree.pop(key, None)


def _annotated(obs: Observation, silent: Sequence[str], voters: Sequence[str]) -> Observation:
    count = f"{len(silent)} of {len(voters)} probe nodes"
    if obs.error is not None:
        return msgspec.structs.replace(obs, error=ProbeError(obs.error.kind, f"{count}: {obs.error.message}"))
    return msgspec.structs.replace(obs, problems=(*obs.problems, f"{count}: no reply"))


__all__ = ["Disagreement", "VantageMerge", "is_silent"]
