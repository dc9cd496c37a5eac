"""The configuration schema: pydantic v2 models with ``extra="forbid"``.

Defaults cascade global -> district -> site -> device: every ``defaults`` block and every
device-level override is a partial :class:`Settings`; :func:`uptimewatch.config.resolve`
merges them into one complete :class:`ResolvedDevice` per device.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ..i18n import Language
from ..notify.config import NotifyConfig
from ..primitives import Duration, Identifier, valid_port
from .alerting import AlertingConfig
from .cluster import ClusterConfig


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

    version: Annotated[SnmpVersion | None, BeforeValidator(_coerce_version)] = Field(
        default=None, description="SNMP version. YAML's `2` and `3` are read as `2c` and `3`."
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="UDP port of the agent.")
    community: SecretStr | None = Field(default=None, description="Community for v1/v2c (secret).")
    community_file: str | None = Field(
        default=None, description="File holding the community, instead of `community`."
    )
    user: str | None = Field(default=None, description="SNMPv3 user (security name); required for v3.")
    auth_protocol: AuthProtocol | None = Field(
        default=None,
        description="SNMPv3 authentication protocol; `SHA` when an `auth_key` is given without one.",
    )
    auth_key: SecretStr | None = Field(
        default=None, description="SNMPv3 authentication key, at least 8 characters (secret)."
    )
    auth_key_file: str | None = Field(
        default=None, description="File holding the authentication key, instead of `auth_key`."
    )
    priv_protocol: PrivProtocol | None = Field(
        default=None,
        description="SNMPv3 privacy protocol (`AES` is AES-128); `AES` when only a `priv_key` is given.",
    )
    priv_key: SecretStr | None = Field(
        default=None,
        description="SNMPv3 privacy key, at least 8 characters; needs an `auth_key` (authPriv) (secret).",
    )
    priv_key_file: str | None = Field(
        default=None, description="File holding the privacy key, instead of `priv_key`."
    )
    context: str | None = Field(
        default=None, description="SNMPv3 context name; empty for the default context."
    )
    timeout: Duration | None = Field(default=None, description="Wait for one SNMP response before retrying.")
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Retries of one SNMP request after a timeout."
    )
    max_repetitions: int | None = Field(
        default=None, ge=1, le=200, description="GETBULK max-repetitions when walking tables."
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        description="Stop walking a table after this many rows (protects against looping agents).",
    )
    max_requests: int | None = Field(
        default=None, ge=1, description="Stop one poll of a device after this many SNMP requests."
    )

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
    enabled: bool | None = Field(default=None, description="Send ICMP echo requests to the device.")
    count: int | None = Field(default=None, ge=1, le=100, description="Echo requests per poll (one burst).")
    interval: Duration | None = Field(
        default=None, description="Pause between the echo requests of one burst."
    )
    timeout: Duration | None = Field(default=None, description="Wait for the last reply of a burst.")
    payload_size: int | None = Field(default=None, ge=0, le=1400, description="Bytes of echo payload.")


class ProbeSettings(Strict):
    """The config block of a protocol registered besides SNMP and ICMP (``probing/registry.py``).

    A subclass declares ``kind: Literal["<kind>"]`` and optional fields (blocks merge down the
    defaults cascade, so each level may give only some of them), and builds the resolved target
    the protocol's probe polls. It is written under ``probes: {<kind>: {...}}`` in ``defaults``
    or on a device.
    """

    kind: str

    def target(self, address: str) -> object:
        """What the probe polls at ``address``, every setting decided; None leaves it out."""
        raise NotImplementedError


#: a protocol's name as written under ``probes:`` and in the ``probe`` label
ProbeKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ProbeBlocks = dict[ProbeKind, dict[str, Any]]


class Thresholds(Strict):
    """When a check turns WARNING or CRITICAL. ``None`` leaves the inherited value."""

    on_battery: Literal["ok", "warning", "critical"] | None = Field(
        default=None, description="State of a power device running on battery."
    )
    battery_minutes_warning: float | None = Field(
        default=None,
        ge=0,
        description="Warning when the estimated battery runtime left falls to this many minutes.",
    )
    battery_minutes_critical: float | None = Field(
        default=None,
        ge=0,
        description="Critical when the estimated battery runtime left falls to this many minutes.",
    )
    battery_charge_percent_warning: float | None = Field(
        default=None, ge=0, le=100, description="Warning when the battery charge falls to this percentage."
    )
    battery_charge_percent_critical: float | None = Field(
        default=None, ge=0, le=100, description="Critical when the battery charge falls to this percentage."
    )
    loss_ratio_warning: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Warning when this fraction of echo requests is lost (0.2 = 20 %).",
    )
    loss_ratio_critical: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Critical when this fraction of echo requests is lost (1.0 = all).",
    )
    rtt_ms_warning: float | None = Field(
        default=None,
        ge=0,
        description="Warning when the average echo round trip reaches this many milliseconds.",
    )
    rtt_ms_critical: float | None = Field(
        default=None,
        ge=0,
        description="Critical when the average echo round trip reaches this many milliseconds.",
    )
    rx_level_dbm_warning: float | None = Field(
        default=None, description="Warning when a radio link's received level falls to this (dBm, e.g. -65)."
    )
    rx_level_dbm_critical: float | None = Field(
        default=None, description="Critical when a radio link's received level falls to this (dBm, e.g. -75)."
    )
    snr_db_warning: float | None = Field(
        default=None, description="Warning when a link's signal-to-noise ratio falls to this (dB)."
    )
    snr_db_critical: float | None = Field(
        default=None, description="Critical when a link's signal-to-noise ratio falls to this (dB)."
    )


class PowerSettings(Strict):
    """How a site's power plant is judged on battery (see docs/topology-and-power.md)."""

    cutoff_voltage_volts: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description=(
            "Battery voltage at which the plant disconnects its load (low-voltage disconnect); "
            "time-to-dark extrapolates the voltage trend to it. 43.2 V suits most 48 V plants."
        ),
    )
    time_to_dark_alert_horizon: Duration | None = Field(
        default=None,
        description="Alert (TimeToDarkSoon) when a site on battery is predicted to go dark within this time.",
    )


class Settings(Strict):
    """A partial set of per-device settings; used for ``defaults`` at every level."""

    interval: Duration | None = Field(default=None, description="Time between two polls of a device.")
    timeout: Duration | None = Field(
        default=None, description="Deadline for one whole poll of one device (SNMP and ICMP together)."
    )
    hard_after: int | None = Field(
        default=None, ge=1, le=100, description="Results in a row before a state change counts (and alerts)."
    )
    snmp: SnmpSettings | None = Field(
        default=None, description="SNMP settings, merged field by field with the inherited ones."
    )
    icmp: IcmpSettings | None = Field(
        default=None, description="ICMP settings, merged field by field with the inherited ones."
    )
    thresholds: Thresholds | None = Field(
        default=None, description="Thresholds, merged field by field with the inherited ones."
    )
    power: PowerSettings | None = Field(
        default=None, description="Battery cut-off and time-to-dark alerting, merged field by field."
    )
    probes: ProbeBlocks | None = Field(
        default=None,
        description="Settings of further protocols by kind (`probes: {tcp: {port: 22}}`), each"
        " merged field by field; the kinds are those the daemon registers (docs/extending.md).",
    )


class Commune(Strict):
    id: Identifier = Field(description="Unique within its district.")
    name: str = Field(description="Display name, e.g. `Xã Pà Cò`.")


class District(Strict):
    id: Identifier = Field(description="Unique among districts; sites refer to it.")
    name: str = Field(description="Display name, e.g. `Huyện Mai Châu`.")
    communes: list[Commune] = Field(
        default_factory=list, description="The communes of the district; a site may name one."
    )
    defaults: Settings | None = Field(
        default=None, description="Settings for every device of the district's sites."
    )


class Carrier(Strict):
    id: Identifier = Field(description="Unique among carriers; sites refer to it.")
    name: str = Field(description="Display name, e.g. `VNPT`.")


class Location(Strict):
    lat: float = Field(ge=-90, le=90, description="Latitude, decimal degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude, decimal degrees.")


class DeviceTelemetry(Strict):
    """A device that pushes its readings over MQTT instead of (or besides) being polled."""

    topic: str = Field(description="The MQTT topic the device publishes JSON to (no wildcards).")
    profile: str = Field(
        description="Telemetry profile name (`probes/telemetry/*.yaml`) mapping the payload."
    )
    interval: Duration = Field(
        default=60.0, description="How often the device publishes; silence is counted in these intervals."
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value or "+" in value or "#" in value or value.startswith("$"):
            raise ValueError("a telemetry topic is one exact topic: no '+', '#' or leading '$'")
        return value


class Device(Strict):
    id: Identifier = Field(description="Unique within its site.")
    role: Role = Field(
        description="What the device is: a base station, a power plant, a transmission link or a router."
    )
    address: str = Field(description="IP address or host name polled over SNMP and ICMP.")
    name: str | None = Field(default=None, description="Display name; the id when absent.")
    profile: str = Field(
        default="auto",
        description="A device profile name from the profiles directory, or `auto` to match by sysObjectID.",
    )
    # absent: inherit; `snmp: {enabled: ...}` is not a thing
    snmp: SnmpSettings | None = Field(
        default=None, description="SNMP settings of this device, over the inherited ones."
    )
    snmp_enabled: bool = Field(
        default=True, description="Poll the device over SNMP; `false` judges it by ICMP alone."
    )
    icmp: IcmpSettings | None = Field(
        default=None, description="ICMP settings of this device, over the inherited ones."
    )
    interval: Duration | None = Field(
        default=None, description="Time between two polls, over the inherited one."
    )
    timeout: Duration | None = Field(
        default=None, description="Deadline for one poll, over the inherited one."
    )
    hard_after: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Results in a row before a state change counts, over the inherited one.",
    )
    thresholds: Thresholds | None = Field(
        default=None, description="Thresholds of this device, over the inherited ones."
    )
    telemetry: DeviceTelemetry | None = Field(
        default=None, description="The device also pushes readings over MQTT (`telemetry` section)."
    )
    probes: ProbeBlocks | None = Field(
        default=None,
        description="Further protocols polling this device, by kind, over the inherited settings"
        " (docs/extending.md).",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("address must be an IP address or a host name without spaces")
        return value


class Site(Strict):
    id: Identifier = Field(description="Unique among sites; other sites' `upstream` refers to it.")
    name: str = Field(description="Display name, e.g. `BTS Pà Cò 01`.")
    district: str = Field(description="Id of the site's district.")
    commune: str | None = Field(default=None, description="Id of a commune of that district.")
    carrier: str = Field(description="Id of the carrier operating the site.")
    location: Location | None = Field(default=None, description="Map position.")
    priority: Literal["critical", "high", "normal", "low"] = Field(
        default="normal", description="How urgent the site is when it fails; orders the duty operator's list."
    )
    upstream: list[str] = Field(
        default_factory=list,
        description=(
            "What this site is reached through (one entry or a list, at most two, e.g. fibre plus "
            "microwave): a hub site id, or a link device as `site_id:device_id`; no cycles."
        ),
    )
    defaults: Settings | None = Field(default=None, description="Settings for every device of the site.")
    devices: list[Device] = Field(default_factory=list, description="The devices polled at the site.")

    @field_validator("upstream", mode="before")
    @classmethod
    def _upstream_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Province(Strict):
    id: Identifier = Field(description="Identifies the province in metrics and the API.")
    name: str = Field(description="Display name, e.g. `Tỉnh Hòa Bình`.")
    timezone: str = Field(
        default="Asia/Ho_Chi_Minh", description="IANA time zone for reports and the status page."
    )
    language: Language = Field(
        default="en",
        description="Language of the emails, reports, alert reasons and the status page: `vi` or `en`. "
        "The status page also honours `?lang=` and the browser's Accept-Language.",
    )


class ServerSettings(Strict):
    listen: str = Field(
        default="127.0.0.1:9847",
        description="HOST:PORT for /metrics, the JSON API and POST /-/reload; IPv6 in brackets ([::1]:9847).",
    )
    trusted_origins: list[str] = Field(
        default_factory=list,
        description="Origins (`https://noc.example.vn`) besides the daemon's own whose web pages may"
        " call the mutating API (acks, silences, reload); every other browser origin gets 403.",
    )
    metrics_detail: Literal["standard", "full"] = Field(
        default="standard",
        description="Series /metrics exports per device: `standard` leaves out what the JSON API shows"
        " and no shipped dashboard or rule reads (about half the series); `full` exports them too"
        " (docs/metrics.md).",
    )
    reload_timeout: Duration = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Duration a reload may take to read and prepare the new configuration (and wait"
        " for a reload in progress) before it is given up and the running configuration kept.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _host, sep, port = value.rpartition(":")
        if not sep or not valid_port(port):
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:9847")
        return value

    @field_validator("trusted_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ValueError(f"'{origin}' is not an origin: give scheme://host[:port], no path")
            if parts.query or parts.fragment or "@" in parts.netloc:
                raise ValueError(f"'{origin}' is not an origin: give scheme://host[:port] only")
        return value


class WebSettings(Strict):
    """How people reach the daemon's web pages (used to build links in emails and reports)."""

    external_url: str | None = Field(
        default=None,
        description="Base URL operators open the status page at, e.g. `https://noc.example.vn/uptimewatch`; "
        "email links and Alertmanager's generatorURL point to `<external_url>/status/site/<id>`. "
        "No links when absent.",
    )

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s?#@]+(/[^\s?#]*)?$", value):
            raise ValueError(
                "external_url must be an http:// or https:// URL without credentials, query or fragment"
            )
        return value


class SchedulerSettings(Strict):
    max_concurrency: int = Field(
        default=2000, ge=1, le=100_000, description="SNMP polls in flight at once, over all devices."
    )
    icmp_max_concurrency: int = Field(
        default=2000, ge=1, le=100_000, description="ICMP echo bursts in flight at once, over all devices."
    )
    overload_lag: Duration = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Event-loop lag from which the daemon calls itself overloaded: a poll that timed out"
        " while its own loop ran this late is unknown (not held against the device), and"
        " `MonitorOverloaded` fires.",
    )
    overload_clear_after: Duration = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Duration the event loop must stay on time before an overload ends (and"
        " `MonitorOverloaded` resolves).",
    )


class MqttBroker(Strict):
    """The MQTT broker uptimewatch publishes to (alerts, site states) and subscribes on (telemetry)."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    username: str | None = Field(default=None, description="User name, when the broker asks for one.")
    password: SecretStr | None = Field(default=None, description="Password; never logged.")
    password_file: str | None = Field(
        default=None, description="File holding the password, relative to the config file."
    )
    client_id: str = Field(default="uptimewatch", description="MQTT client id; unique per daemon.")
    tls: bool = Field(default=False, description="Connect with TLS, verifying the broker's certificate.")
    keepalive: Duration = Field(default=30.0, description="Keepalive interval.")


class StorageSettings(Strict):
    """Where durable state (alerts, outbox, availability ledger) lives."""

    path: str | None = Field(
        default=None,
        description=(
            "SQLite database file, relative to the config file. Default: uptimewatch.sqlite in "
            "$STATE_DIRECTORY (systemd's StateDirectory=) or else in a var/ directory beside the config."
        ),
    )


class TrapUser(Strict):
    """An SNMPv3 user whose traps and informs are accepted (devices send them with these keys)."""

    user: str = Field(description="SNMPv3 user (security name) the devices send notifications as.")
    auth_protocol: AuthProtocol | None = Field(
        default=None, description="Authentication protocol; `SHA` when an `auth_key` is given without one."
    )
    auth_key: SecretStr | None = Field(
        default=None, description="Authentication key, at least 8 characters (secret)."
    )
    priv_protocol: PrivProtocol | None = Field(
        default=None, description="Privacy protocol; `AES` (AES-128) when a `priv_key` is given without one."
    )
    priv_key: SecretStr | None = Field(
        default=None, description="Privacy key, at least 8 characters; needs an `auth_key` (secret)."
    )

    @model_validator(mode="after")
    def _keys(self) -> TrapUser:
        if self.priv_key is not None and self.auth_key is None:
            raise ValueError("a trap user's priv_key needs an auth_key too")
        for name in ("auth_key", "priv_key"):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")
        return self


class TrapSettings(Strict):
    """The SNMP notification receiver: a trap or inform from a known device re-polls that device."""

    enabled: bool = Field(default=False, description="Receive SNMP traps and informs.")
    listen: str = Field(
        default="127.0.0.1:9162",
        description=(
            "HOST:PORT of the UDP socket; `0.0.0.0:162` needs CAP_NET_BIND_SERVICE (the systemd unit "
            "grants it). Only notifications from configured device addresses are taken."
        ),
    )
    communities: list[SecretStr] = Field(
        default_factory=list, description="Communities accepted in SNMPv1 and v2c notifications (secret)."
    )
    v3_users: list[TrapUser] = Field(
        default_factory=list,
        description="SNMPv3 users accepted in traps (any sender engine ID) and informs.",
    )
    repoll: Literal["known", "any"] = Field(
        default="known",
        description=(
            "Which notifications re-poll their device: `known` (linkDown/linkUp, UPS-MIB traps and the "
            "`traps:` of the device profiles) or `any` authenticated notification."
        ),
    )
    min_repoll_interval: Duration = Field(
        default=5.0, description="At most one trap-triggered re-poll per device in this time (trap storms)."
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not valid_port(port):
            raise ValueError("listen must be HOST:PORT, e.g. 127.0.0.1:9162")
        return value


class TelemetrySettings(Strict):
    """MQTT telemetry in, from the broker of the `mqtt` section."""

    enabled: bool = Field(default=False, description="Subscribe to the devices' telemetry topics.")
    profiles_dir: str | None = Field(
        default=None,
        description="Directory of telemetry profiles, relative to the config file; default: `telemetry/` "
        "in the profiles directory.",
    )
    silent_after: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="A device silent for this many of its intervals turns unknown.",
    )
    max_reconnect_delay: Duration = Field(
        default=30.0, description="Longest wait between two attempts to reach the broker (backoff)."
    )


class Config(Strict):
    province: Province = Field(description="The province this daemon watches.")
    server: ServerSettings = Field(default=ServerSettings(), description="The HTTP server.")
    web: WebSettings = Field(default=WebSettings(), description="Links to the web pages.")
    scheduler: SchedulerSettings = Field(
        default=SchedulerSettings(), description="Limits on concurrent polls."
    )
    profiles_dir: str | None = Field(
        default=None,
        description="Directory of device profiles, relative to the config file; default: shipped probes/.",
    )
    defaults: Settings = Field(
        default=Settings(),
        description="Settings for every device: the top of the cascade, over the built-in values.",
    )
    storage: StorageSettings = Field(default=StorageSettings(), description="Durable state.")
    mqtt: MqttBroker | None = Field(default=None, description="The MQTT broker, if one is used.")
    notify: NotifyConfig = Field(
        default=NotifyConfig(), description="Receivers of notices and their channels; the delivery outbox."
    )
    alerting: AlertingConfig = Field(
        default=AlertingConfig(), description="Alert rules, grouping, routing, roster and escalation."
    )
    traps: TrapSettings = Field(default=TrapSettings(), description="SNMP traps and informs in.")
    telemetry: TelemetrySettings = Field(default=TelemetrySettings(), description="MQTT telemetry in.")
    cluster: ClusterConfig | None = Field(
        default=None,
        description="Several probe nodes as one monitor over NATS JetStream (docs/cluster.md); "
        "without it, one process watches everything.",
    )
    carriers: list[Carrier] = Field(description="The carriers whose sites are watched.")
    districts: list[District] = Field(description="The districts of the province, with their communes.")
    sites: list[Site] = Field(description="The sites, each with its devices.")
