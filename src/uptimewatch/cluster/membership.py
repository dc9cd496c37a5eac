"""Who is in the cluster: heartbeats as seen by this node. Pure; the NATS side lives in :mod:`.node`.

Each node writes a :class:`Heartbeat` under its id in the replicated ``uptimewatch_nodes`` bucket
every ``heartbeat_interval``. NATS 2.9 has no per-key TTL, so liveness is judged here: a peer is
alive while its heartbeat keeps changing, timed on *this* node's monotonic clock when the update
arrives (so clock skew between hosts does not matter); a heartbeat met for the first time is aged
by its own wall-clock stamp, so a long-dead node's last key is not taken for a live one. The bucket's
``max_age`` only sweeps keys of nodes gone for good.

**Eligible** nodes get sites: alive, not isolated, and up for ``join_grace`` (a node that flaps
does not reshuffle the province). When no alive node is that old (a cold start of the whole
cluster), every alive node is eligible at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec


class Heartbeat(msgspec.Struct, frozen=True):
    id: str
    pid: int
    url: str
    started_at: float  # wall time, seconds
    at: float  # wall time of this beat
    seq: int
    isolated: bool = False
    degraded: str = ""  # why the node works on its own (NATS lost), empty when it does not
    sites: int = 0  # how many sites it polls
    version: str = ""


_hb_encoder = msgspec.json.Encoder()
_hb_decoder = msgspec.json.Decoder(Heartbeat)


def encode_heartbeat(hb: Heartbeat) -> bytes:
    return _hb_encoder.encode(hb)


def decode_heartbeat(data: bytes) -> Heartbeat | None:
    try:
        return _hb_decoder.decode(data)
    except msgspec.DecodeError:
        return None


@dataclass(slots=True)
class Member:
    heartbeat: Heartbeat
    seen_at: float  # this node's monotonic time when the heartbeat last changed


@dataclass(frozen=True, slots=True)
class MemberView:
    id: str
    alive: bool
    isolated: bool
    eligible: bool
    heartbeat: Heartbeat
    age_s: float  # seconds since its heartbeat last changed, on this node's clock


class MemberTable:
    def __init__(self, node_timeout: float, join_grace: float) -> None:
        self.node_timeout = node_timeout
        self.join_grace = join_grace
        self._members: dict[str, Member] = {}

    def update(self, hb: Heartbeat, *, mono_now: float, wall_now: float) -> None:
        known = self._members.get(hb.id)
        if known is None:
            age = max(0.0, wall_now - hb.at)
            self._members[hb.id] = Member(hb, mono_now - age)
        elif known.heartbeat != hb:
            known.heartbeat = hb
            known.seen_at = mono_now

    def remove(self, node_id: str) -> None:
        self._members.pop(node_id, None)

    def forget_dead(self, mono_now: float, keep: float) -> None:
        """Drop members silent for longer than ``keep`` (their keys expire from the bucket too)."""
        for node_id in [n for n, m in self._members.items() if mono_now - m.seen_at > keep]:
            del self._members[node_id]

    def views(self, *, mono_now: float, wall_now: float) -> list[MemberView]:
        alive = {n: mono_now - m.seen_at <= self.node_timeout for n, m in self._members.items()}
        healthy = [n for n, m in self._members.items() if alive[n] and not m.heartbeat.isolated]
        seasoned = {n for n in healthy if wall_now - self._members[n].heartbeat.started_at >= self.join_grace}
        eligible = seasoned or set(healthy)
        return [
            MemberView(
                n,
                alive[n],
                m.heartbeat.isolated,
                n in eligible,
                m.heartbeat,
                max(0.0, mono_now - m.seen_at),
            )
            for n, m in sorted(self._members.items())
        ]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members


__all__ = ["Heartbeat", "Member", "MemberTable", "MemberView", "decode_heartbeat", "encode_heartbeat"]
