"""The simulator's BER codec is the project's one SNMP codec, :mod:`uptimewatch.probing.ber`; this
name stays so the demo modules read as before."""

from __future__ import annotations

from ..probing.ber import *  # noqa: F403
