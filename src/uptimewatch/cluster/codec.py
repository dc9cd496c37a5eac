"""Observations on the wire: one MessagePack array per batch of observations, through msgspec.

A batch is what one node's publisher found waiting when it was free to send, and what joined it
within ``node.PUBLISH_LINGER`` (20 ms): one observation on a quiet node, up to :data:`BATCH_MAX`
on a busy one. Each NATS message costs the same on every hop (the publish, its acknowledgement,
the replicas' writes, the delivery to every node) whatever it holds, so a busy node pays that once
per batch.

msgspec rather than JSON: the decoder validates the shape against the struct in the same pass (a
malformed message is an error, not a half-filled Observation), array-like structs drop the field
names from every message, and a batch decodes straight into the observations the health model
takes, with no Python code per observation (bench/cluster_bench.py measures both sides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from ..model.observation import Observation, finite

SUBJECT_PREFIX: Final = "uptimewatch.obs"


#: observations in one message, at most (about 300 bytes each: well under NATS's 1 MB payload)
BATCH_MAX: Final = 256


class WireBatch(msgspec.Struct, array_like=True, frozen=True):
    """On the wire: ``[node, [observation, ...]]``, each observation the array of its fields
    (:class:`~uptimewatch.model.observation.Observation` is an array-like struct)."""

    node: str
    observations: list[Observation]


class _WireHead(msgspec.Struct, array_like=True, frozen=True):
    """A batch with its observations left undecoded: enough to tell whose it is."""

    node: str
    observations: msgspec.Raw


_encoder: Final = msgspec.msgpack.Encoder()
_head_decoder: Final = msgspec.msgpack.Decoder(_WireHead)
_observations_decoder: Final = msgspec.msgpack.Decoder(list[Observation])
_count_decoder: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])


class CodecError(ValueError):
    """A message on the stream is not an observation."""


def _finite(obs: Observation) -> Observation:
    """``obs`` with NaN and infinities as None ("the device could not tell"), which a reader's
    thresholds can take; the same object when it has none, as nearly every observation."""
    for value in obs.fields.values():
        if value.__class__ is float and not math.isfinite(value):
            fields = {k: finite(v) for k, v in obs.fields.items()}
            return msgspec.structs.replace(obs, fields=fields)
    return obs


def encode(node: str, observations: Sequence[Observation]) -> bytes:
    return _encoder.encode(WireBatch(node, [_finite(obs) for obs in observations]))


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
        observations = _observations_decoder.decode(head.observations)
        return head.node, len(observations), observations
    except (msgspec.DecodeError, ValueError) as exc:
        raise CodecError(f"not an observation batch: {exc}") from exc


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
    "decode",
    "encode",
    "encode_within",
    "subject",
]
