"""Label matchers, silences (ad hoc, from the API) and the plain data both are made of."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every matcher's regex matches the whole label value (a missing label reads as "")."""
    return all(_compiled(p).fullmatch(labels.get(k, "")) is not None for k, p in matchers.items())


def check_matchers(matchers: Any) -> dict[str, str]:
    """Validate API input: a non-empty ``{label: regex}`` mapping of strings; raises ValueError."""
    if not isinstance(matchers, Mapping) or not matchers:
        raise ValueError("matchers must be a non-empty mapping of label to regular expression")
    out: dict[str, str] = {}
    for k, v in matchers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError("matcher labels and values must be strings")
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"label '{k}': invalid regular expression {v!r}: {exc}") from None
        out[k] = v
    return out


def new_silence_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: Mapping[str, str]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and matches(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(d["id"]),
            matchers=dict(d["matchers"]),
            starts_at=float(d["starts_at"]),
            ends_at=float(d["ends_at"]),
            created_by=str(d.get("created_by", "")),
            comment=str(d.get("comment", "")),
            created_at=float(d.get("created_at", d["starts_at"])),
        )
