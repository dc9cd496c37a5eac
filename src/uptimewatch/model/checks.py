"""Checks: turn one device's normalized fields into (state, reason, value) judgements.

Pure functions of (fields, thresholds, role), no state: hysteresis lives in the health model.
Check names are stable identifiers (alerts and metrics key on them); reasons are for people.

Fields read (the normalized names the probes produce): ``icmp.sent``, ``icmp.received``,
``icmp.loss_ratio``, ``icmp.rtt_avg_seconds``; ``power.on_battery``, ``power.on_battery_seconds``,
``power.battery_minutes_remaining``, ``power.battery_charge_percent``, ``power.alarms_active``,
``power.alarm[N]``; ``link.oper_up``, ``link.rx_level_dbm``, ``link.snr_db``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Final

from ..config.models import Role, Thresholds
from ..config.resolve import ResolvedDevice
from ..i18n import N_, Phrase, Text
from .fields import (
    ICMP_LOSS_RATIO,
    ICMP_RTT_AVG,
    ICMP_SENT,
    LINK_OPER_UP,
    LINK_RX_LEVEL,
    LINK_SNR,
    POWER_ALARMS_ACTIVE,
    POWER_BATTERY_CHARGE,
    POWER_BATTERY_MINUTES,
    POWER_ON_BATTERY,
)
from .observation import ErrorKind, FieldValue, Observation


class CheckState(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


#: How bad a state is, for "worst of": UNKNOWN ("we cannot tell") sits between OK and WARNING so
#: a probe we cannot run never hides a real warning, and never makes a site look degraded.
SEVERITY: Final[dict[CheckState, int]] = {
    CheckState.OK: 0,
    CheckState.UNKNOWN: 1,
    CheckState.WARNING: 2,
    CheckState.CRITICAL: 3,
}

#: How a device is named in a sentence about its site.
ROLE_WORDS: Final[dict[str, str]] = {
    Role.BTS.value: N_("base station"),
    Role.POWER.value: N_("power unit"),
    Role.LINK.value: N_("link radio"),
    Role.ROUTER.value: N_("router"),
}

#: (state, reason, value) of one check on one result. Reasons are :class:`Text` (a msgid and its
#: parameters, rounded to what the reader sees, so equal words compare equal), rendered in the
#: reader's language at the edge.
Result = tuple[CheckState, Phrase, FieldValue]

ICMP_REACHABLE = "icmp.reachable"
ICMP_LOSS = "icmp.loss"
ICMP_RTT = "icmp.rtt"
SNMP_REACHABLE = "snmp.reachable"
REACHABILITY_CHECKS: Final = frozenset({ICMP_REACHABLE, SNMP_REACHABLE})

_SEVERITY_WORD: Final[dict[str | None, CheckState]] = {
    "ok": CheckState.OK,
    "warning": CheckState.WARNING,
    "critical": CheckState.CRITICAL,
    None: CheckState.WARNING,
}

NO_DATA: Final = Text(N_("no data"))
ON_MAINS: Final = Text(N_("on mains"))
_ANSWERS_PING: Final = Text(N_("answers ping"))
_NO_REPLY: Final = Text(N_("no reply to ping"))
_SNMP_ANSWERS: Final = Text(N_("SNMP answers"))
_NO_ALARMS: Final = Text(N_("no alarms"))
_RADIO_UP: Final = Text(N_("radio link up"))
_RADIO_DOWN: Final = Text(N_("radio link down"))


@lru_cache(maxsize=16384)
def shared_text(msgid: str, name: str, value: object, code: str = "") -> Text:
    """``Text(msgid, {name: value}, code)``, one object for equal arguments.

    Every device keeps a reason per check, and most are the same few words with a rounded number
    ("battery ~180 min left"): at 300,000 devices, one object each would be a gigabyte of equal
    texts. A Text is never changed once made, so sharing it is safe."""
    return Text(msgid, {name: value}, code)


#: The code of every "on battery" reason, whatever its words (the ledger keys spells on it).
ON_BATTERY_CODE: Final = "power.on_battery"

#: Probe errors that mean "nothing answered"; AUTH and the others mean the agent is alive.
SILENT_ERRORS: Final = frozenset({ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE})
#: Probe errors on our side: they say nothing about the device.
LOCAL_ERRORS: Final = frozenset({ErrorKind.PERMISSION, ErrorKind.INTERNAL})


def role_word(role: str) -> str:
    return ROLE_WORDS.get(role, role)


def role_text(role: str) -> Phrase:
    """The role as a word to translate (``base station`` / ``trạm gốc``); unknown roles as they are."""
    word = ROLE_WORDS.get(role)
    return Text(word) if word is not None else role


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    return float(value)


def _below(value: float, warning: float | None, critical: float | None) -> CheckState:
    if critical is not None and value < critical:
        return CheckState.CRITICAL
    if warning is not None and value < warning:
        return CheckState.WARNING
    return CheckState.OK


def _at_or_above(value: float, warning: float | None, critical: float | None) -> CheckState:
    if critical is not None and value >= critical:
        return CheckState.CRITICAL
    if warning is not None and value >= warning:
        return CheckState.WARNING
    return CheckState.OK


# -- reachability: one per protocol, judged from the observation as a whole ---------------------


def icmp_checks(
    obs: Observation, t: Thresholds, _device: ResolvedDevice | None = None
) -> list[tuple[str, Result]]:
    """``icmp.reachable``, ``icmp.loss`` and (when thresholds are set) ``icmp.rtt``.

    The value of ``icmp.reachable`` is whether anything answered (``None`` when we could not
    ping at all), which is what the device's ``reachable`` comes from.
    """
    err = obs.error
    if err is not None:
        if err.kind in LOCAL_ERRORS:
            why = Text(N_("cannot ping: {error}"), {"error": err.message})
            return [(ICMP_REACHABLE, (CheckState.UNKNOWN, why, None))]
        why = Text(N_("ping failed: {error}"), {"error": err.message})
        return [(ICMP_REACHABLE, (CheckState.CRITICAL, why, False))]
    f = obs.fields
    loss = _num(f.get(ICMP_LOSS_RATIO))
    if loss is None:
        return [(ICMP_REACHABLE, (CheckState.UNKNOWN, NO_DATA, None))]
    sent = _num(f.get(ICMP_SENT))
    out: list[tuple[str, Result]] = []
    if loss >= 1.0:
        if sent:
            why = Text(
                N_("no reply to ping ({lost}/{sent} lost)"), {"lost": round(sent), "sent": round(sent)}
            )
        else:
            why = _NO_REPLY
        out.append((ICMP_REACHABLE, (CheckState.CRITICAL, why, False)))
    else:
        out.append((ICMP_REACHABLE, (CheckState.OK, _ANSWERS_PING, True)))
    state = _at_or_above(loss, t.loss_ratio_warning, t.loss_ratio_critical)
    out.append((ICMP_LOSS, (state, shared_text(N_("packet loss {loss:pct}"), "loss", round(loss, 2)), loss)))
    if t.rtt_ms_warning is not None or t.rtt_ms_critical is not None:
        rtt = _num(f.get(ICMP_RTT_AVG))
        if rtt is None:
            out.append((ICMP_RTT, (CheckState.UNKNOWN, NO_DATA, None)))
        else:
            ms = rtt * 1000.0
            state = _at_or_above(ms, t.rtt_ms_warning, t.rtt_ms_critical)
            out.append((ICMP_RTT, (state, shared_text(N_("round trip {ms} ms"), "ms", round(ms)), rtt)))
    return out


def snmp_check(obs: Observation, role: str) -> Result:
    """``snmp.reachable``; its value is whether the agent answered at all."""
    err = obs.error
    if err is None:
        return (CheckState.OK, _SNMP_ANSWERS, True)
    p = {"device": role_text(role), "error": err.message}
    kind = err.kind
    if kind is ErrorKind.TIMEOUT:
        return (CheckState.CRITICAL, Text(N_("SNMP timeout on {device}"), {"device": p["device"]}), False)
    if kind is ErrorKind.UNREACHABLE:
        return (CheckState.CRITICAL, Text(N_("{device} unreachable: {error}"), p), False)
    if kind is ErrorKind.AUTH:
        return (
            CheckState.CRITICAL,
            Text(N_("SNMP authentication failed: {error}"), {"error": err.message}),
            True,
        )
    if kind is ErrorKind.NO_SUCH_OBJECT:
        why = Text(N_("SNMP agent has none of the polled objects: {error}"), {"error": err.message})
        return (CheckState.WARNING, why, True)
    if kind is ErrorKind.BAD_REPLY:
        # none of the asked objects came back, so nothing says the agent is there and well
        why = Text(N_("SNMP reply does not match the request: {error}"), {"error": err.message})
        return (CheckState.CRITICAL, why, None)
    if kind is ErrorKind.BAD_VALUE:
        return (
            CheckState.WARNING,
            Text(N_("SNMP answer could not be decoded: {error}"), {"error": err.message}),
            True,
        )
    return (CheckState.UNKNOWN, Text(N_("cannot poll SNMP: {error}"), {"error": err.message}), None)


# -- field checks: each reads one primary field and is skipped while that field is unknown ------


def _on_battery(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    if not f.get(POWER_ON_BATTERY):
        return (CheckState.OK, ON_MAINS, False)
    minutes = _num(f.get(POWER_BATTERY_MINUTES))
    seconds = _num(f.get("power.on_battery_seconds"))
    if minutes is not None:
        reason = shared_text(
            N_("on battery, ~{minutes} min left"), "minutes", round(minutes), ON_BATTERY_CODE
        )
    elif seconds is not None:
        reason = Text(N_("on battery since {minutes} min"), {"minutes": round(seconds / 60)}, ON_BATTERY_CODE)
    else:
        reason = Text(N_("on battery"), code=ON_BATTERY_CODE)
    return (_SEVERITY_WORD[t.on_battery], reason, True)


def _battery_minutes(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    minutes = _num(f.get(POWER_BATTERY_MINUTES))
    assert minutes is not None
    state = _below(minutes, t.battery_minutes_warning, t.battery_minutes_critical)
    if f.get(POWER_ON_BATTERY) is False:
        # On mains this is the autonomy the next outage would get: worth a warning when short,
        # but nothing is dark yet.
        state = min(state, CheckState.WARNING)
        return (state, shared_text(N_("battery autonomy ~{minutes} min"), "minutes", round(minutes)), minutes)
    return (state, shared_text(N_("battery ~{minutes} min left"), "minutes", round(minutes)), minutes)


def _battery_charge(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    charge = _num(f.get(POWER_BATTERY_CHARGE))
    assert charge is not None
    state = _below(charge, t.battery_charge_percent_warning, t.battery_charge_percent_critical)
    return (state, shared_text(N_("battery charge {charge}%"), "charge", round(charge)), charge)


def _alarms(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    count = _num(f.get(POWER_ALARMS_ACTIVE))
    assert count is not None
    if count <= 0:
        return (CheckState.OK, _NO_ALARMS, count)
    names: list[str] = []
    for key, value in f.items():
        if key.startswith("power.alarm[") and isinstance(value, str):
            word = value.replace("_", " ")
            if word not in names:
                names.append(word)
    n = round(count)
    # (English picks the plural by n; Vietnamese has one form for both msgids)
    if names:  # the device's own alarm words, quoted as they are
        msgid = N_("{n} alarm: {names}") if n == 1 else N_("{n} alarms: {names}")
        why = Text(msgid, {"n": n, "names": ", ".join(names)})
    else:
        why = Text(N_("{n} alarm") if n == 1 else N_("{n} alarms"), {"n": n})
    return (CheckState.WARNING, why, count)


def _link_oper(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    if f.get(LINK_OPER_UP):
        return (CheckState.OK, _RADIO_UP, True)
    return (CheckState.CRITICAL, _RADIO_DOWN, False)


def _rx_level(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    level = _num(f.get(LINK_RX_LEVEL))
    assert level is not None
    state = _below(level, t.rx_level_dbm_warning, t.rx_level_dbm_critical)
    return (state, shared_text(N_("rx level {dbm} dBm"), "dbm", round(level)), level)


def _snr(f: Mapping[str, FieldValue], t: Thresholds) -> Result:
    snr = _num(f.get(LINK_SNR))
    assert snr is not None
    state = _below(snr, t.snr_db_warning, t.snr_db_critical)
    return (state, shared_text(N_("SNR {db} dB"), "db", round(snr)), snr)


def _always(t: Thresholds) -> bool:
    return True


def _has(*names: str) -> Callable[[Thresholds], bool]:
    def enabled(t: Thresholds) -> bool:
        return any(getattr(t, n) is not None for n in names)

    return enabled


#: judges a device's fields against its thresholds
FieldJudge = Callable[[Mapping[str, FieldValue], Thresholds], Result]

#: (check name, primary field, enabled by thresholds?, judge). Order is the order in reasons.
FIELD_CHECKS: Final[tuple[tuple[str, str, Callable[[Thresholds], bool], FieldJudge], ...]] = (
    ("power.on_battery", POWER_ON_BATTERY, _always, _on_battery),
    (
        "power.battery_minutes",
        POWER_BATTERY_MINUTES,
        _has("battery_minutes_warning", "battery_minutes_critical"),
        _battery_minutes,
    ),
    (
        "power.battery_charge",
        POWER_BATTERY_CHARGE,
        _has("battery_charge_percent_warning", "battery_charge_percent_critical"),
        _battery_charge,
    ),
    ("power.alarms", POWER_ALARMS_ACTIVE, _always, _alarms),
    ("link.oper", LINK_OPER_UP, _always, _link_oper),
    ("link.rx_level", LINK_RX_LEVEL, _has("rx_level_dbm_warning", "rx_level_dbm_critical"), _rx_level),
    ("link.snr", LINK_SNR, _has("snr_db_warning", "snr_db_critical"), _snr),
)


#: the checks one observation of a protocol yields: (check name, result) pairs
Judge = Callable[[Observation, Thresholds, ResolvedDevice], Sequence[tuple[str, Result]]]


@dataclass(frozen=True, slots=True)
class ProbeChecks:
    """What the health model needs to know of one protocol (its part of a registry entry).

    ``judge`` turns an observation of the protocol into checks (None: it yields none of its
    own). ``reachability`` names the check whose value says whether the device answers; among a
    device's protocols that poll it, the lowest ``rank`` decides (ping before a TCP connect before
    SNMP). ``judge_fields``: whether the observation's normalized fields feed the field checks
    (on battery, link down, ...), as the fields of SNMP profiles and telemetry do.
    """

    kind: str
    judge: Judge | None = None
    reachability: str | None = None
    rank: int = 100
    judge_fields: bool = False


def _snmp(obs: Observation, _t: Thresholds, device: ResolvedDevice) -> tuple[tuple[str, Result]]:
    return ((SNMP_REACHABLE, snmp_check(obs, device.role)),)


ICMP_CHECKS: Final = ProbeChecks("icmp", icmp_checks, ICMP_REACHABLE, rank=0)
SNMP_CHECKS: Final = ProbeChecks("snmp", _snmp, SNMP_REACHABLE, rank=50, judge_fields=True)
TELEMETRY_CHECKS: Final = ProbeChecks("telemetry", judge_fields=True)
#: the health model's protocols when it is given none (the daemon passes its registry's)
BUILTIN_CHECKS: Final = (ICMP_CHECKS, SNMP_CHECKS, TELEMETRY_CHECKS)
