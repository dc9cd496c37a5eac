"""Observations on the wire: one MessagePack array per batch of observations, through msgspec.

A batch is what one node's publisher found waiting when it was free to send: one observation on a
quiet node, up to :data:`BATCH_MAX` on a busy one. Each NATS message costs the same on every hop
(the publish, its acknowledgement, the replicas' writes, the delivery to every node) whatever it
holds, so a busy node pays that once per batch, and a quiet one waits for nothing.

msgspec rather than JSON: the decoder validates the shape against the struct in the same pass (a
malformed message is an error, not a half-filled Observation), array-like structs drop the field
names from every message, and encoding and decoding cost a few microseconds (bench/cluster_bench.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from ..model.observation import ErrorKind, FieldValue, Observation, ProbeError

SUBJECT_PREFIX: Final = "uptimewatch.obs"


#: observations in one message, at most (about 300 bytes each: well under NATS's 1 MB payload)
BATCH_MAX: Final = 256


class WireObservation(msgspec.Struct, array_like=True, frozen=True):
    site_id: str
    device_id: str
    probe: str
    started_at: float
    duration_s: float
    fields: dict[str, float | int | str | bool | None]
    error_kind: str | None
    error_message: str | None
    problems: tuple[str, ...]
    profile: str | None


class WireBatch(msgspec.Struct, array_like=True, frozen=True):
    node: str
    observations: list[WireObservation]


class _WireHead(msgspec.Struct, array_like=True, frozen=True):
    """A batch with its observations left undecoded: enough to tell whose it is."""

    node: str
    observations: msgspec.Raw


_encoder: Final = msgspec.msgpack.Encoder()
_head_decoder: Final = msgspec.msgpack.Decoder(_WireHead)
_observations_decoder: Final = msgspec.msgpack.Decoder(list[WireObservation])
_count_decoder: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])


class CodecError(ValueError):
    """A message on the stream is not an observation."""


def _finite(value: FieldValue) -> FieldValue:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _wire(obs: Observation) -> WireObservation:
    return WireObservation(
        obs.site_id,
        obs.device_id,
        obs.probe,
        obs.started_at,
        obs.duration_s,
        {k: _finite(v) for k, v in obs.fields.items()},
        obs.error.kind.value if obs.error else None,
        obs.error.message if obs.error else None,
        obs.problems,
        obs.profile,
    )


def encode(node: str, observations: Sequence[Observation]) -> bytes:
    return _encoder.encode(WireBatch(node, [_wire(obs) for obs in observations]))


def encode_within(node: str, observations: Sequence[Observation], limit: int) -> list[tuple[int, bytes]]:
    """``(count, message)`` pairs of at most ``limit`` bytes each (the server's max_payload): a batch
    too large is halved until it fits, so an agent with long tables cannot make every batch it falls
    in a refused publish. One observation alone over the limit stays one (refused, and counted)."""
    data = encode(node, observations)
    if len(data) <= limit or len(observations) <= 1:
        return [(len(observations), data)]
    half = len(observations) // 2
    return encode_within(node, observations[:half], limit) + encode_within(node, observations[half:], limit)


def decode(data: bytes, *, skip_node: str | None = None) -> tuple[str, int, list[Observation]]:
    """``(node, count, observations)``; :class:`CodecError` for anything else (one bad observation
    rejects its whole batch: a publisher that wrote it is broken, and half a batch is not news).

    A batch of ``skip_node`` (a node's own, read back from the stream) is only counted: its
    observations come back empty, undecoded."""
    try:
        head = _head_decoder.decode(data)
        if head.node == skip_node:
            return head.node, len(_count_decoder.decode(head.observations)), []
        wires = _observations_decoder.decode(head.observations)
        return head.node, len(wires), [_observation(wire) for wire in wires]
    except (msgspec.DecodeError, ValueError) as exc:
        raise CodecError(f"not an observation batch: {exc}") from exc


def _observation(wire: WireObservation) -> Observation:
    error = ProbeError(ErrorKind(wire.error_kind), wire.error_message or "") if wire.error_kind else None
    return Observation(
        site_id=wire.site_id,
        device_id=wire.device_id,
        probe=wire.probe,
        started_at=wire.started_at,
        duration_s=wire.duration_s,
        fields=wire.fields,
        error=error,
        problems=wire.problems,
        profile=wire.profile,
    )


def _token(value: str) -> str:
    """One subject token: ids may hold dots, which NATS reads as separators."""
    return value.replace("%", "%25").replace(".", "%2E").replace("*", "%2A").replace(">", "%3E")


def subject(node: str) -> str:
    """The subject of a node's batches: ``uptimewatch.obs.<node>``."""
    return f"{SUBJECT_PREFIX}.{_token(node)}"


__all__ = [
    "BATCH_MAX",
    "SUBJECT_PREFIX",
    "CodecError",
    "WireBatch",
    "WireObservation",
    "decode",
    "encode",
    "encode_within",
    "subject",
]
