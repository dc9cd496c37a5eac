"""The ``alerting:`` section: rules, grouping, routes, duty roster, escalation, critical periods,
maintenance windows, heartbeat and API authentication.

``uptimewatch.config.models`` hangs :class:`AlertingConfig` on ``Config``; durations and ids use
the shared :mod:`uptimewatch.primitives`.

Cross-references that need the whole file (receivers defined under ``notify:``, roster names,
labels, time zone, secret files) are checked by :func:`check_references`, which the loader calls.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from ..primitives import ID_PATTERN, Duration

Severity = Literal["critical", "warning", "info"]
Op = Literal["<", "<=", ">", ">=", "==", "!="]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: The built-in rules, in the order docs/alerts.md describes them.
BUILTIN_RULES: Final = (
    "SiteDown",
    "UpstreamDown",
    "DeviceDown",
    "OnBattery",
    "BatteryLow",
    "TimeToDarkSoon",
    "HighPacketLoss",
    "LinkRxLevelLow",
    "LinkSnrLow",
    "DeviceRebooted",
    "SnmpAuthFailure",
    "MonitorOverloaded",
)
#: Built-ins that compare a value with a threshold of their own when one is set.
THRESHOLD_RULES: Final = frozenset({"BatteryLow", "HighPacketLoss", "LinkRxLevelLow", "LinkSnrLow"})

#: Labels every alert carries (device labels only on device alerts); user rules may add more.
KNOWN_LABELS: Final = (
    "alertname",
    "severity",
    "province",
    "district",
    "commune",
    "carrier",
    "site",
    "device",
    "role",
    "priority",
    "kind",  # UpstreamDown: whether the root cause is a hub site or a link device
)

ROSTER_PREFIX: Final = "roster:"
_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def _clock(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:00 as a base-60 integer (480)
        value = f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"invalid time of day {value!r}: use HH:MM, 00:00 to 24:00")
    return value


Clock = Annotated[str, BeforeValidator(_clock)]


def clock_minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _regexes(value: dict[str, str]) -> dict[str, str]:
    for label, pattern in value.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"label '{label}': invalid regular expression {pattern!r}: {exc}") from None
    return value


#: ``{label: value}``; each value is a regular expression matched against the whole label value,
#: so a plain word matches itself.
Matchers = Annotated[dict[str, str], AfterValidator(_regexes)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Scope(_Strict):
    """Which devices a user rule looks at; an empty list means all."""

    districts: list[str] = Field(default_factory=list, description="District ids.")
    carriers: list[str] = Field(default_factory=list, description="Carrier ids.")
    priorities: list[Literal["critical", "high", "normal", "low"]] = Field(
        default_factory=list, description="Site priorities."
    )
    roles: list[Literal["bts", "power", "link", "router"]] = Field(
        default_factory=list, description="Device roles."
    )
    sites: list[str] = Field(default_factory=list, description="Site ids.")


class Annotations(_Strict):
    summary: str | None = Field(
        default=None,
        description=(
            "One line for a person; placeholders: {site_name}, {site}, {device}, {device_name}, "
            "{district}, {carrier}, {value}, {field}, {threshold}."
        ),
    )
    description: str = Field(default="", description="Longer text, same placeholders.")


class UserRule(_Strict):
    """An alert on one normalized field of every device in scope."""

    name: str = Field(pattern=_NAME, description="Alert name, e.g. `BatteryVoltageLow`; unique.")
    field: str = Field(
        min_length=1,
        description=(
            "A normalized field (`power.battery_voltage_volts`, `icmp.loss_ratio`, ...), or "
            "`device.reachable`, `device.state`, `site.state`."
        ),
    )
    op: Op = Field(description="Comparison of the field's value with `value`.")
    value: bool | float | str = Field(description="The threshold; strings and booleans take == and != only.")
    for_: Duration = Field(
        default=0.0, alias="for", description="Duration (`for:` in YAML) the condition must hold."
    )
    severity: Severity = Field(default="warning", description="Severity of the alert.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels for routing.")
    annotations: Annotations = Field(default=Annotations(), description="Text for people.")
    scope: Scope = Field(default=Scope(), description="Which devices the rule watches.")

    @model_validator(mode="after")
    def _check(self) -> UserRule:
        if self.name in BUILTIN_RULES or self.name == "Heartbeat":
            raise ValueError(f"'{self.name}' is a built-in rule: configure it under builtins")
        if not isinstance(self.value, float) and self.op not in ("==", "!="):
            raise ValueError(f"op '{self.op}' needs a number; strings and booleans take == or !=")
        clash = set(self.labels) & set(KNOWN_LABELS)
        if clash:
            raise ValueError(f"labels may not override built-in labels: {', '.join(sorted(clash))}")
        return self


class BuiltinRule(_Strict):
    enabled: bool = Field(default=True, description="`false` turns the rule off.")
    severity: Severity | None = Field(default=None, description="Severity, over the rule's own.")
    for_: Duration | None = Field(
        default=None,
        alias="for",
        description="Duration (`for:` in YAML) before it fires, over the rule's own.",
    )
    threshold: float | None = Field(
        default=None,
        description=(
            "BatteryLow (minutes), HighPacketLoss (ratio 0..1), LinkRxLevelLow (dBm), LinkSnrLow (dB): "
            "compare with this instead of the health check's own thresholds."
        ),
    )


class Builtins(_Strict):
    """Settings of the built-in rules (docs/alerts.md describes each)."""

    SiteDown: BuiltinRule = Field(default=BuiltinRule(), description="The base station is off the air.")
    UpstreamDown: BuiltinRule = Field(
        default=BuiltinRule(), description="A hub or link failed and cut off the sites behind it."
    )
    DeviceDown: BuiltinRule = Field(default=BuiltinRule(), description="A device does not answer.")
    OnBattery: BuiltinRule = Field(default=BuiltinRule(), description="Mains lost, running on battery.")
    BatteryLow: BuiltinRule = Field(default=BuiltinRule(), description="Battery runtime left is short.")
    TimeToDarkSoon: BuiltinRule = Field(
        default=BuiltinRule(),
        description="A site on battery is predicted dark within its `power.time_to_dark_alert_horizon`.",
    )
    HighPacketLoss: BuiltinRule = Field(default=BuiltinRule(), description="Ping loses packets.")
    LinkRxLevelLow: BuiltinRule = Field(default=BuiltinRule(), description="Radio receive level too low.")
    LinkSnrLow: BuiltinRule = Field(default=BuiltinRule(), description="Radio SNR too low.")
    DeviceRebooted: BuiltinRule = Field(default=BuiltinRule(), description="Device uptime went back.")
    SnmpAuthFailure: BuiltinRule = Field(default=BuiltinRule(), description="SNMP credentials rejected.")
    MonitorOverloaded: BuiltinRule = Field(
        default=BuiltinRule(),
        description="The daemon's own event loop runs late (`scheduler.overload_lag`); timeouts meanwhile "
        "are not held against devices.",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> Builtins:
        for name in BUILTIN_RULES:
            if getattr(self, name).threshold is not None and name not in THRESHOLD_RULES:
                raise ValueError(f"{name} takes no threshold (only {', '.join(sorted(THRESHOLD_RULES))} do)")
        return self


class EscalationStep(_Strict):
    after: Duration = Field(description="Duration after firing, without an ack, before this step.")
    receiver: str = Field(description="Receiver name, or `roster:NAME`.")


class Route(_Strict):
    match: Matchers = Field(
        default_factory=dict,
        description="`{label: regex}`; every one must match the whole label value. Empty: every alert.",
    )
    receiver: str = Field(description="Receiver name (from `notify.receivers`), or `roster:NAME`.")
    continue_: bool = Field(
        default=False,
        alias="continue",
        description="`continue:` in YAML: also try the routes after this one.",
    )
    escalation: list[EscalationStep] = Field(
        default_factory=list, description="Who else hears about an alert nobody acknowledged in time."
    )
    repeat_interval: Duration | None = Field(
        default=None, description="Duration between reminders for this route's alerts."
    )


class RosterShift(_Strict):
    """One shift: ``receiver`` is on duty for roster ``name`` on these days between these hours."""

    name: str = Field(
        pattern=ID_PATTERN, description="Roster name; routes say `roster:NAME`. Shifts share it."
    )
    receiver: str = Field(description="Receiver on duty.")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), description="Days the shift starts.")
    from_: Clock = Field(default="00:00", alias="from", description="`from:` in YAML; HH:MM local time.")
    to: Clock = Field(
        default="24:00", description="HH:MM local time; earlier than `from` means the next day."
    )


class MaintenanceWindow(_Strict):
    """A recurring window in which matching alerts are recorded but nobody is notified."""

    name: str = Field(pattern=ID_PATTERN, description="Unique name.")
    matchers: Matchers = Field(min_length=1, description="`{label: regex}` of the alerts it mutes.")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), description="Days it starts.")
    from_: Clock = Field(alias="from", description="`from:` in YAML; HH:MM local time.")
    to: Clock = Field(description="HH:MM local time; earlier than `from` means the next day.")
    comment: str = Field(default="", description="Why, for the API.")


class PeriodThresholds(_Strict):
    battery_minutes: float | None = Field(default=None, ge=0, description="BatteryLow threshold, minutes.")
    loss_ratio: float | None = Field(default=None, ge=0, le=1, description="HighPacketLoss threshold.")
    rx_level_dbm: float | None = Field(default=None, description="LinkRxLevelLow threshold, dBm.")
    snr_db: float | None = Field(default=None, description="LinkSnrLow threshold, dB.")


class CriticalPeriod(_Strict):
    """A dated window (polling day) with tighter thresholds, reminders and more receivers."""

    name: str = Field(pattern=ID_PATTERN, description="Unique name, e.g. `polling-day`.")
    start: dt.datetime = Field(description="Start; without an offset, in `province.timezone`.")
    end: dt.datetime = Field(description="End; without an offset, in `province.timezone`.")
    thresholds: PeriodThresholds = Field(
        default=PeriodThresholds(), description="Thresholds of the built-in rules during the period."
    )
    repeat_interval: Duration | None = Field(default=None, description="Duration between reminders.")
    receivers: list[str] = Field(
        default_factory=list, description="Receivers that also get every notice during the period."
    )

    @model_validator(mode="after")
    def _order(self) -> CriticalPeriod:
        start, end = self.start, self.end
        if (start.tzinfo is None) == (end.tzinfo is None) and end <= start:
            raise ValueError("end must be after start")
        return self


class BasicUser(_Strict):
    user: str = Field(min_length=1, description="User name.")
    password_bcrypt: SecretStr = Field(description="bcrypt hash of the password (`$2b$...`).")

    @model_validator(mode="after")
    def _hash(self) -> BasicUser:
        if not re.match(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$", self.password_bcrypt.get_secret_value()):
            raise ValueError("password_bcrypt must be a bcrypt hash ($2b$12$...), not a password")
        return self


class AlertingAuth(_Strict):
    """Who may change things: acks, silences, and ``POST /-/reload``."""

    bearer_tokens: list[SecretStr] = Field(default_factory=list, description="Accepted bearer tokens.")
    bearer_token_file: str | None = Field(
        default=None, description="File holding one more token, relative to the config file."
    )
    basic: list[BasicUser] = Field(default_factory=list, description="Users for HTTP basic auth.")
    max_failures: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Failed authentications one client address may make within `failure_window`;"
        " beyond that its requests get 429 with Retry-After, without being checked.",
    )
    failure_window: Duration = Field(
        default=60.0, gt=0, description="Duration over which `max_failures` is counted."
    )

    @model_validator(mode="after")
    def _some(self) -> AlertingAuth:
        if not self.bearer_tokens and self.bearer_token_file is None and not self.basic:
            raise ValueError("give bearer_tokens, bearer_token_file or basic users")
        return self


class AlertingConfig(_Strict):
    """Alerts: which conditions fire, how they are grouped, and who hears about them."""

    enabled: bool = Field(default=True, description="`false`: evaluate nothing, notify nobody.")
    evaluation_interval: Duration = Field(
        default=10.0, description="Duration between two evaluations of the rules over the health snapshot."
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["district", "carrier"], description="Labels that make one notice group."
    )
    group_wait: Duration = Field(default=30.0, description="Duration a new group waits for more alerts.")
    group_interval: Duration = Field(
        default=300.0, description="Duration between two notices of the same group."
    )
    repeat_interval: Duration = Field(
        default=4 * 3600.0, description="Duration between reminders of an unacknowledged firing alert."
    )
    resolve_after: Duration = Field(
        default=0.0,
        description="Duration a condition must stay false before its alert resolves (0: the first time).",
    )
    default_receiver: str | None = Field(
        default=None, description="Receiver of alerts no route matches (or `roster:NAME`)."
    )
    routes: list[Route] = Field(default_factory=list, description="Tried in order; the first match wins.")
    roster: list[RosterShift] = Field(default_factory=list, description="The duty roster's shifts.")
    builtins: Builtins = Field(default=Builtins(), description="The built-in rules.")
    rules: list[UserRule] = Field(default_factory=list, description="Rules of your own.")
    maintenance: list[MaintenanceWindow] = Field(default_factory=list, description="Recurring mute windows.")
    critical_periods: list[CriticalPeriod] = Field(
        default_factory=list, description="Dated windows with overrides."
    )
    heartbeat_receivers: list[str] = Field(
        default_factory=list, description="Receivers of the periodic Heartbeat (dead man's switch)."
    )
    heartbeat_interval: Duration = Field(default=300.0, description="Duration between two heartbeats.")
    history_retention: Duration = Field(
        default=86400.0, description="Duration resolved alerts and expired silences stay listed in the API."
    )
    auth: AlertingAuth | None = Field(
        default=None, description="Authentication of acks, silences and `POST /-/reload`; none: open."
    )


# -- cross-reference checks -------------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _list(node: Any, key: str) -> list[tuple[int, Any]]:
    items = node.get(key) if isinstance(node, Mapping) else None
    return list(enumerate(items)) if isinstance(items, list) else []


def _labels_hint(label: str, known: list[str]) -> str:
    close = difflib.get_close_matches(label, known, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"


def check_references(raw: Mapping[str, Any], base_dir: Path) -> list[tuple[Loc, str]]:
    """Problems with ``alerting:`` that only the whole file shows, as ``(location, message)``."""
    alerting = raw.get("alerting")
    if not isinstance(alerting, Mapping):
        return []
    out: list[tuple[Loc, str]] = []
    top: Loc = ("alerting",)

    notify = raw.get("notify")
    receivers: set[str] | None = None
    if isinstance(notify, Mapping):
        receivers = {
            r["name"] for _, r in _list(notify, "receivers") if isinstance(r, Mapping) and "name" in r
        }
    rosters = {s["name"] for _, s in _list(alerting, "roster") if isinstance(s, Mapping) and "name" in s}

    def receiver(loc: Loc, name: Any, *, roster_ok: bool = True) -> None:
        if not isinstance(name, str):
            return
        if name.startswith(ROSTER_PREFIX):
            wanted = name.removeprefix(ROSTER_PREFIX)
            if not roster_ok:
                out.append((loc, f"'{name}': a roster cannot point at another roster"))
            elif wanted not in rosters:
                defined = ", ".join(sorted(rosters)) or "none"
                out.append((loc, f"roster '{wanted}' is not defined (defined: {defined})"))
            return
        if receivers is not None and name not in receivers:
            defined = ", ".join(sorted(receivers)) or "none"
            out.append((loc, f"receiver '{name}' is not defined in notify.receivers (defined: {defined})"))

    receiver((*top, "default_receiver"), alerting.get("default_receiver"))
    for i, name in _list(alerting, "heartbeat_receivers"):
        receiver((*top, "heartbeat_receivers", i), name, roster_ok=False)
    for i, shift in _list(alerting, "roster"):
        if isinstance(shift, Mapping):
            receiver((*top, "roster", i, "receiver"), shift.get("receiver"), roster_ok=False)
    for i, period in _list(alerting, "critical_periods"):
        for j, name in _list(period, "receivers"):
            receiver((*top, "critical_periods", i, "receivers", j), name)

    known = list(KNOWN_LABELS)
    for _, rule in _list(alerting, "rules"):
        labels = rule.get("labels") if isinstance(rule, Mapping) else None
        if isinstance(labels, Mapping):
            known += [k for k in labels if isinstance(k, str) and k not in known]

    def matchers(loc: Loc, node: Any) -> None:
        if isinstance(node, Mapping):
            for label in node:
                if label not in known:
                    out.append(((*loc, label), f"unknown label '{label}' ({_labels_hint(label, known)})"))

    for i, label in _list(alerting, "group_by"):
        if isinstance(label, str) and label not in known:
            out.append(((*top, "group_by", i), f"unknown label '{label}' ({_labels_hint(label, known)})"))
    for i, route in _list(alerting, "routes"):
        if not isinstance(route, Mapping):
            continue
        matchers((*top, "routes", i, "match"), route.get("match"))
        receiver((*top, "routes", i, "receiver"), route.get("receiver"))
        for j, step in _list(route, "escalation"):
            if isinstance(step, Mapping):
                receiver((*top, "routes", i, "escalation", j, "receiver"), step.get("receiver"))
    for i, window in _list(alerting, "maintenance"):
        if isinstance(window, Mapping):
            matchers((*top, "maintenance", i, "matchers"), window.get("matchers"))

    for key, what in (
        ("rules", "rule"),
        ("maintenance", "maintenance window"),
        ("critical_periods", "period"),
    ):
        seen: dict[str, int] = {}
        for i, item in _list(alerting, key):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                out.append(((*top, key, i, "name"), f"duplicate {what} name '{name}'"))
            else:
                seen[name] = i

    uses_clock = any(_list(alerting, k) for k in ("roster", "maintenance", "critical_periods"))
    province = raw.get("province")
    tz = province.get("timezone") if isinstance(province, Mapping) else None
    if uses_clock and isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            out.append(
                (
                    ("province", "timezone"),
                    f"unknown time zone '{tz}' (the roster, maintenance and critical periods need an "
                    "IANA name such as Asia/Ho_Chi_Minh)",
                )
            )

    auth = alerting.get("auth")
    token_file = auth.get("bearer_token_file") if isinstance(auth, Mapping) else None
    if isinstance(token_file, str):
        problem = read_token_file(token_file, base_dir)[1]
        if problem:
            out.append(((*top, "auth", "bearer_token_file"), problem))
    return out


def read_token_file(path_text: str, base_dir: Path) -> tuple[str | None, str | None]:
    """``(token, None)`` or ``(None, problem)``; blocking."""
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return None, f"cannot read bearer_token_file '{path}': {why}"
    if not token:
        return None, f"bearer_token_file '{path}' is empty"
    return token, None
