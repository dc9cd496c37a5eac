"""What one probe saw of one device at one time.

Observations are the boundary between polling and judging. They are plain, frozen and
serializable (``to_dict``/``from_dict``), so that they can cross a process or an MQTT broker
when several probe nodes share the work.

They are msgspec structs rather than dataclasses: one is built for every poll, and in a cluster
for every observation of every other node too, where a frozen dataclass's ``__init__`` (one
``object.__setattr__`` a field) was a tenth of reading a peer's observation. ``array_like`` is the
shape on the cluster's stream (:mod:`uptimewatch.cluster.codec` decodes a batch straight into
them, with their types checked); ``gc=False`` because they hold only plain values, so the cycle
collector has nothing to find in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec

#: A normalized field value. ``None`` means "the device could not tell", never a sentinel number.
FieldValue = float | int | str | bool | None


class ErrorKind(StrEnum):
    """Why a probe did not get an answer. Health reasons and metrics use these words."""

    TIMEOUT = "timeout"  # no answer within the deadline
    AUTH = "auth"  # SNMPv3 user/keys rejected, or reports say so
    NO_SUCH_OBJECT = "no_such_object"  # agent answered but holds none of the asked OIDs
    BAD_VALUE = "bad_value"  # answer could not be decoded
    BAD_REPLY = "bad_reply"  # an answer, but not to what was asked (other OIDs, other count)
    OVERLOADED = "overloaded"  # timed out while our own event loop ran late: unknown, no verdict
    UNREACHABLE = "unreachable"  # network said no (ICMP unreachable, no route)
    PERMISSION = "permission"  # local socket could not be opened (raw ICMP without CAP_NET_RAW)
    INTERNAL = "internal"  # a bug on our side; logged with a traceback


class ProbeError(msgspec.Struct, frozen=True, gc=False, array_like=True):
    kind: ErrorKind
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "message": self.message}


class Observation(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One probe result for one device.

    ``fields`` holds normalized fields (``power.on_battery``, ``icmp.loss_ratio``,
    ``if.oper_up[3]``...). ``error`` is set when the probe got nothing usable; ``problems``
    lists softer findings (an implausible value dropped, a table cut at its row cap).
    """

    site_id: str
    device_id: str
    probe: str  # "snmp", "icmp", "mqtt": the registry name of the protocol
    started_at: float  # unix time, seconds
    duration_s: float
    fields: Mapping[str, FieldValue] = msgspec.field(default_factory=dict)
    error: ProbeError | None = None
    problems: tuple[str, ...] = ()
    profile: str | None = None  # names of the profiles that produced the fields, comma-joined

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "device_id": self.device_id,
            "probe": self.probe,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "fields": {k: finite(v) for k, v in self.fields.items()},
            "error": self.error.to_dict() if self.error else None,
            "problems": list(self.problems),
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        err = data.get("error")
        return cls(
            site_id=str(data["site_id"]),
            device_id=str(data["device_id"]),
            probe=str(data["probe"]),
            started_at=float(data["started_at"]),
            duration_s=float(data["duration_s"]),
            fields=dict(data.get("fields") or {}),
            error=ProbeError(ErrorKind(err["kind"]), str(err["message"])) if err else None,
            problems=tuple(data.get("problems") or ()),
            profile=data.get("profile"),
        )


def finite(value: FieldValue) -> FieldValue:
    """NaN and infinities as None ("the device could not tell"): neither JSON nor a reader's
    thresholds take them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
