"""Merge the cascade of defaults into one complete, flat target per device.

Order, later wins: built-in -> ``defaults`` -> district ``defaults`` -> site ``defaults`` -> the
device's own settings. Blocks merge field by field, so a site can change one threshold without
repeating the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from .models import (
    AuthProtocol,
    Config,
    Device,
    IcmpSettings,
    PowerSettings,
    PrivProtocol,
    ProbeBlocks,
    ProbeSettings,
    Role,
    Settings,
    Site,
    SnmpSettings,
    SnmpVersion,
    Thresholds,
)

# a 48 V plant's usual low-voltage disconnect (24 cells x 1.8 V); dispatching a generator to a
# mountain site takes about two hours
BUILTIN_POWER = PowerSettings(cutoff_voltage_volts=43.2, time_to_dark_alert_horizon=7200.0)

BUILTIN = Settings(
    interval=60.0,
    timeout=10.0,
    hard_after=3,
    snmp=SnmpSettings(
        version=SnmpVersion.V2C,
        port=161,
        community=SecretStr("public"),
        timeout=2.0,
        retries=1,
        max_repetitions=25,
        max_rows=10_000,
        max_requests=200,
        context="",
    ),
    icmp=IcmpSettings(enabled=True, count=3, interval=0.05, timeout=1.0, payload_size=56),
    thresholds=Thresholds(
        on_battery="warning",
        battery_minutes_warning=60,
        battery_minutes_critical=30,
        battery_charge_percent_warning=50,
        battery_charge_percent_critical=20,
        loss_ratio_warning=0.2,
        loss_ratio_critical=1.0,
    ),
    power=BUILTIN_POWER,
)

M = TypeVar("M", bound=BaseModel)


def overlay(base: M, top: M | None) -> M:
    """``base`` with every field that ``top`` sets explicitly; nested models merge recursively."""
    if top is None:
        return base
    updates: dict[str, Any] = {}
    for name in top.model_fields_set:
        value = getattr(top, name)
        current = getattr(base, name)
        if isinstance(value, BaseModel) and isinstance(current, BaseModel):
            updates[name] = overlay(current, value)
        elif name == "probes" and isinstance(value, dict) and isinstance(current, dict):
            updates[name] = _merge_blocks(current, value)
        elif value is not None:
            updates[name] = value
    # the *_file variants replace the inline secret they stand for
    for secret in ("community", "auth_key", "priv_key"):
        if f"{secret}_file" in top.model_fields_set and getattr(top, f"{secret}_file") is not None:
            updates.setdefault(secret, None)
    if not updates:
        return base  # settings are never changed once made: the same object serves both
    return base.model_copy(update=updates)


def _merge_blocks(base: ProbeBlocks, top: ProbeBlocks) -> ProbeBlocks:
    """The protocol blocks of ``base`` with those of ``top`` laid over them, key by key."""
    return {kind: {**base.get(kind, {}), **top.get(kind, {})} for kind in {**base, **top}}


#: a registered protocol's config model by kind (``probing.registry.Registry.settings()``)
ProbeModels = Mapping[str, type[ProbeSettings]]

_NO_TARGETS: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SnmpTarget:
    """Everything needed to talk SNMP to one device. Secrets stay SecretStr until the transport."""

    host: str
    port: int
    version: SnmpVersion
    community: SecretStr | None
    user: str | None
    auth_protocol: AuthProtocol | None
    auth_key: SecretStr | None
    priv_protocol: PrivProtocol | None
    priv_key: SecretStr | None
    context: str
    timeout: float
    retries: int
    max_repetitions: int
    max_rows: int
    max_requests: int

    @property
    def security_level(self) -> str:
        if self.version is not SnmpVersion.V3:
            return "community"
        if self.priv_key is not None:
            return "authPriv"
        if self.auth_key is not None:
            return "authNoPriv"
        return "noAuthNoPriv"

    def credential_key(self) -> tuple[object, ...]:
        """Identifies the credentials without exposing them (for engine caches)."""
        return (
            self.version,
            hash(self.community.get_secret_value()) if self.community else None,
            self.user,
            self.auth_protocol,
            hash(self.auth_key.get_secret_value()) if self.auth_key else None,
            self.priv_protocol,
            hash(self.priv_key.get_secret_value()) if self.priv_key else None,
        )


@dataclass(frozen=True, slots=True)
class IcmpTarget:
    host: str
    count: int
    interval: float
    timeout: float
    payload_size: int


@dataclass(frozen=True, slots=True)
class ResolvedDevice:
    """One device with every setting decided: what the scheduler polls and the health model judges."""

    site_id: str
    device_id: str
    role: Role
    name: str
    address: str
    profile: str
    interval: float
    timeout: float
    hard_after: int
    snmp: SnmpTarget | None
    icmp: IcmpTarget | None
    thresholds: Thresholds
    power: PowerSettings = BUILTIN_POWER
    #: targets of the protocols registered besides SNMP and ICMP, by kind
    extra_targets: Mapping[str, object] = field(default_factory=lambda: _NO_TARGETS)

    @property
    def key(self) -> tuple[str, str]:
        return (self.site_id, self.device_id)

    @property
    def targets(self) -> Mapping[str, object]:
        """What each protocol polls on this device, by kind (only the kinds that poll it)."""
        out: dict[str, object] = {}
        if self.snmp is not None:
            out["snmp"] = self.snmp
        if self.icmp is not None:
            out["icmp"] = self.icmp
        out.update(self.extra_targets)
        return out

    def target(self, kind: str) -> object | None:
        """The target of protocol ``kind`` on this device, or None when that protocol does not poll it."""
        if kind == "snmp":
            return self.snmp
        if kind == "icmp":
            return self.icmp
        return self.extra_targets.get(kind)

    def polls(self, kind: str) -> bool:
        return self.target(kind) is not None

    def same_protocols(self, other: ResolvedDevice) -> bool:
        """Whether the same protocols poll both (cheap: a reload compares every device)."""
        return (
            (self.snmp is None) == (other.snmp is None)
            and (self.icmp is None) == (other.icmp is None)
            and self.extra_targets.keys() == other.extra_targets.keys()
        )


#: (id of the site's defaults, its district) -> the cascade down to the site, during one resolve
SiteCascade = dict[tuple[int, str], Settings]


def _site_settings(config: Config, site: Site, cache: SiteCascade | None) -> Settings:
    key = (id(site.defaults), site.district)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    district = next((d for d in config.districts if d.id == site.district), None)
    merged = overlay(BUILTIN, config.defaults)
    merged = overlay(merged, district.defaults if district else None)
    merged = overlay(merged, site.defaults)
    if cache is not None and site.defaults is None:
        # only sites without defaults of their own share an entry: an id() is unique only while
        # its object lives, and None lives for ever
        cache[key] = merged
    return merged


def effective_settings(
    config: Config, site: Site, device: Device, cache: SiteCascade | None = None
) -> Settings:
    """The settings of ``device``: built-in, then the file's defaults, its district's, its site's,
    its own. ``cache`` (one dict per resolve of a whole file) shares the cascade down to the site
    among the devices of the same district, so 300,000 devices do not build it 300,000 times."""
    merged = _site_settings(config, site, cache)
    own_values = {
        k: v
        for k, v in {
            "interval": device.interval,
            "timeout": device.timeout,
            "hard_after": device.hard_after,
            "snmp": device.snmp,
            "icmp": device.icmp,
            "thresholds": device.thresholds,
            "probes": device.probes,
        }.items()
        if v is not None
    }
    if not own_values:
        return merged
    return overlay(merged, Settings.model_validate(own_values))


def probe_targets(blocks: ProbeBlocks | None, models: ProbeModels, address: str) -> Mapping[str, object]:
    """The targets of the registered protocols a device's merged ``probes`` blocks name (the
    loader has refused the kinds nobody registered and the blocks that do not validate)."""
    if not blocks:
        return _NO_TARGETS
    out: dict[str, object] = {}
    for kind, block in blocks.items():
        model = models.get(kind)
        if model is None:
            continue
        target = model.model_validate({**block, "kind": kind}).target(address)
        if target is not None:
            out[kind] = target
    return MappingProxyType(out) if out else _NO_TARGETS


def resolve_device(
    config: Config,
    site: Site,
    device: Device,
    cache: SiteCascade | None = None,
    probe_models: ProbeModels | None = None,
) -> ResolvedDevice:
    s = effective_settings(config, site, device, cache)
    # SNMP and ICMP are resolved here by name: their blocks are the configuration's own keys
    # (``snmp:``, ``icmp:``, ``snmp_enabled``) with models in the Settings cascade, and their
    # targets are typed fields of ResolvedDevice that the transport, the profile matcher, the
    # web views and the cluster read; the protocols under ``probes:`` go through their models.
    assert s.snmp is not None
    assert s.icmp is not None
    assert s.thresholds is not None
    snmp = s.snmp
    snmp_target = None
    if device.snmp_enabled:
        snmp_target = SnmpTarget(
            host=device.address,
            port=snmp.port or 161,
            version=snmp.version or SnmpVersion.V2C,
            community=snmp.community,
            user=snmp.user,
            auth_protocol=snmp.auth_protocol or (AuthProtocol.SHA if snmp.auth_key else None),
            auth_key=snmp.auth_key,
            priv_protocol=snmp.priv_protocol or (PrivProtocol.AES if snmp.priv_key else None),
            priv_key=snmp.priv_key,
            context=snmp.context or "",
            timeout=snmp.timeout or 2.0,
            retries=snmp.retries if snmp.retries is not None else 1,
            max_repetitions=snmp.max_repetitions or 25,
            max_rows=snmp.max_rows or 10_000,
            max_requests=snmp.max_requests or 200,
        )
    icmp = s.icmp
    icmp_target = None
    if icmp.enabled:
        icmp_target = IcmpTarget(
            host=device.address,
            count=icmp.count or 3,
            interval=icmp.interval if icmp.interval is not None else 0.05,
            timeout=icmp.timeout or 1.0,
            payload_size=icmp.payload_size if icmp.payload_size is not None else 56,
        )
    return ResolvedDevice(
        site_id=site.id,
        device_id=device.id,
        role=device.role,
        name=device.name or device.id,
        address=device.address,
        profile=device.profile,
        interval=s.interval or 60.0,
        timeout=s.timeout or 10.0,
        hard_after=s.hard_after or 3,
        snmp=snmp_target,
        icmp=icmp_target,
        thresholds=s.thresholds,
        power=s.power or BUILTIN_POWER,
        extra_targets=probe_targets(s.probes, probe_models or {}, device.address),
    )


def resolve_all(config: Config, probe_models: ProbeModels | None = None) -> list[ResolvedDevice]:
    cache: SiteCascade = {}
    return [
        resolve_device(config, site, dev, cache, probe_models)
        for site in config.sites
        for dev in site.devices
    ]
