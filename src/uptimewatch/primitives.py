"""Value types every layer shares: durations and identifiers.

A leaf on purpose: it imports nothing from uptimewatch, so the configuration models, the alerting
and notify sections and the demo can all use one parser and one id pattern without importing each
other.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field

#: Ids of sites, devices, districts, carriers, receivers, rosters, ...: what metrics labels,
#: API paths and file names can carry unquoted.
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: a hostile file's
    5,000-character value must not become a 5,000-character error line."""
    text = (
        repr(value)
        if not isinstance(value, int) or abs(value) < 10**limit
        else f"<{value.bit_length()}-bit number>"
    )
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def parse_duration(value: Any) -> float:
    """``30``, ``"30s"``, ``"5m"``, ``"250ms"``, ``"1h"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(
            f"invalid duration {shown(value)}: use seconds or a string like '30s', '5m', '250ms'"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {shown(value)}: it must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def valid_port(text: str) -> bool:
    """Whether ``text`` is a TCP/UDP port number, 1 to 65535 (ASCII digits only: ``"²"`` is a digit
    to ``str.isdigit`` but not to ``int``)."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) < 65536


#: A duration in seconds, written as a number or a string like ``"30s"``.
Duration = Annotated[float, BeforeValidator(parse_duration)]
#: A string matching :data:`ID_PATTERN`.
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
