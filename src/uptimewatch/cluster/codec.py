"""Observations on the wire: one MessagePack array per observation, through msgspec.

msgspec rather than JSON: the decoder validates the shape against the struct in the same pass (a
malformed message is an error, not a half-filled Observation), array-like structs drop the field
names from every message, and encoding and decoding cost a few microseconds (bench/cluster_bench.py).
"""

from __future__ import annotations

import math
from typing import Final

import msgspec

from ..model.observation import ErrorKind, FieldValue, Observation, ProbeError

SUBJECT_PREFIX: Final = "uptimewatch.obs"


class WireObservation(msgspec.Struct, array_like=True, frozen=True):
    node: str
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


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(WireObservation)


class CodecError(ValueError):
    """A message on the stream is not an observation."""


def _finite(value: FieldValue) -> FieldValue:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode(node: str, obs: Observation) -> bytes:
    return _encoder.encode(
        WireObservation(
            node,
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
    )


def decode(data: bytes) -> tuple[str, Observation]:
    """``(node, observation)``; :class:`CodecError` for anything else."""
    try:
        wire = _decoder.decode(data)
        error = ProbeError(ErrorKind(wire.error_kind), wire.error_message or "") if wire.error_kind else None
    except (msgspec.DecodeError, ValueError) as exc:
        raise CodecError(f"not an observation: {exc}") from exc
    return wire.node, Observation(
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


def subject(district: str, site_id: str) -> str:
    return f"{SUBJECT_PREFIX}.{_token(district)}.{_token(site_id)}"


__all__ = ["SUBJECT_PREFIX", "CodecError", "WireObservation", "decode", "encode", "subject"]
