"""The configuration schema: pydantic v2 models with ``extra="forbid"``.

Defaults cascade global -> district -> site -> device: every ``defaults`` block and every
device-level override is a partial :class:`Settings`; :func:`uptimewatch.config.resolve`
merges them into one complete :class:`ResolvedDevice` per device.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``30``, ``"30s"``, ``"5m"``, ``"250ms"``, ``"1h"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use seconds or a string like '30s', '5m', '250ms'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Identifier = Annotated[str, Field(pattern=_ID)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    BTS = "bts"
    POWER = "power"
    LINK = "link"
    ROUTER = "router"


class SnmpVersion(StrEnum):
    V1 = "1"
    V2C = "2c"
    V3 = "3"


class AuthProtocol(StrEnum):
    MD5 = "MD5"
    SHA = "SHA"
    SHA224 = "SHA224"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


class PrivProtocol(StrEnum):
    DES = "DES"
    AES = "AES"  # AES-128-CFB
    AES192 = "AES192"
    AES256 = "AES256"


def _coerce_version(value: Any) -> Any:
    # YAML reads `version: 2` and `version: 3` as integers.
    if isinstance(value, int) and not isinstance(value, bool):
        return {1: "1", 2: "2c", 3: "3"}.get(value, str(value))
    return value


class SnmpSettings(Strict):
    """SNMP access to one device, or a partial block of defaults.

    Secrets are SecretStr; each has a ``*_file`` variant read at load time (whitespace trimmed),
    and ``${ENV}`` is expanded in both.
    """

    version: Annotated[SnmpVersion | None, BeforeValidator(_coerce_version)] = None
    port: int | None = Field(default=None, ge=1, le=65535)
    community: SecretStr | None = None
    community_file: str | None = None
    user: str | None = None
    auth_protocol: AuthProtocol | None = None
    auth_key: SecretStr | None = None
    auth_key_file: str | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key: SecretStr | None = None
    priv_key_file: str | None = None
    context: str | None = None
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=10)
    max_repetitions: int | None = Field(default=None, ge=1, le=200)
    max_rows: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> SnmpSettings:
        for name in ("community", "auth_key", "priv_key"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"give either {name} or {name}_file, not both")
        for name in ("auth_key", "priv_key"):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")
        return self


class IcmpSettings(Strict):
    enabled: bool | None = None
    count: int | None = Field(default=None, ge=1, le=100)
    interval: Duration | None = None  # between echo requests of one burst
    timeout: Duration | None = None  # wait for the last reply
    payload_size: int | None = Field(default=None, ge=0, le=1400)


class Thresholds(Strict):
    """When a check turns WARNING or CRITICAL. ``None`` leaves the inherited value."""

    on_battery: Literal["ok", "warning", "critical"] | None = None
    battery_minutes_warning: float | None = Field(default=None, ge=0)
    battery_minutes_critical: float | None = Field(default=None, ge=0)
    battery_charge_percent_warning: float | None = Field(default=None, ge=0, le=100)
    battery_charge_percent_critical: float | None = Field(default=None, ge=0, le=100)
    loss_ratio_warning: float | None = Field(default=None, ge=0, le=1)
    loss_ratio_critical: float | None = Field(default=None, ge=0, le=1)
    rtt_ms_warning: float | None = Field(default=None, ge=0)
    rtt_ms_critical: float | None = Field(default=None, ge=0)
    rx_level_dbm_warning: float | None = None
    rx_level_dbm_critical: float | None = None
    snr_db_warning: float | None = None
    snr_db_critical: float | None = None


class Settings(Strict):
    """A partial set of per-device settings; used for ``defaults`` at every level."""

    interval: Duration | None = None
    timeout: Duration | None = None  # the scheduler's deadline for one poll of one device
    hard_after: int | None = Field(default=None, ge=1, le=100)  # results in a row before a state is hard
    snmp: SnmpSettings | None = None
    icmp: IcmpSettings | None = None
    thresholds: Thresholds | None = None


class Commune(Strict):
    id: Identifier
    name: str


class District(Strict):
    id: Identifier
    name: str
    communes: list[Commune] = Field(default_factory=list)
    defaults: Settings | None = None


class Carrier(Strict):
    id: Identifier
    name: str


class Location(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Device(Strict):
    id: Identifier
    role: Role
    address: str
    name: str | None = None
    profile: str = "auto"  # a profile name from probes/, or "auto" (match by sysObjectID)
    snmp: SnmpSettings | None = None  # absent: inherit; `snmp: {enabled: ...}` is not a thing
    snmp_enabled: bool = True
    icmp: IcmpSettings | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    hard_after: int | None = Field(default=None, ge=1, le=100)
    thresholds: Thresholds | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("address must be an IP address or a host name without spaces")
        return value


class Site(Strict):
    id: Identifier
    name: str
    district: str
    commune: str | None = None
    carrier: str
    location: Location | None = None
    priority: Literal["critical", "high", "normal", "low"] = "normal"
    upstream: list[str] = Field(default_factory=list)  # site ids this site depends on (topology)
    defaults: Settings | None = None
    devices: list[Device] = Field(default_factory=list)

    @field_validator("upstream", mode="before")
    @classmethod
    def _upstream_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Province(Strict):
    id: Identifier
    name: str
    timezone: str = "Asia/Ho_Chi_Minh"


class ServerSettings(Strict):
    listen: str = "127.0.0.1:9847"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:9847")
        return value


class SchedulerSettings(Strict):
    max_concurrency: int = Field(default=2000, ge=1, le=100_000)
    icmp_max_concurrency: int = Field(default=2000, ge=1, le=100_000)


class Config(Strict):
    province: Province
    server: ServerSettings = ServerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    profiles_dir: str | None = None  # default: the probes/ directory shipped with uptimewatch
    defaults: Settings = Settings()
    carriers: list[Carrier]
    districts: list[District]
    sites: list[Site]
