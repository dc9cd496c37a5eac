"""The simulated province's devices: their state, how it evolves, and the run-time controls.

State changes only on control calls (mains, generator, dead, reboot, fades, cuts); everything
that drifts with time (uptime, counters, battery charge, noise) is a closed-form function of the
simulation clock, computed when a request asks for it. So an idle simulated device costs nothing,
and a test can drive hours of battery drain by moving a clock.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .device_models import DeviceModel, InterfaceSpec

#: sim seconds a rebooted device stays silent before its agent answers again
BOOT_DELAY_S = 40.0
#: received level below which the radio loses the link (dBm); the E-band hop then carries nothing
LINK_LOSS_DBM = -66.0
#: receiver noise floor: CINR is the level above it, capped as real radios report it
NOISE_FLOOR_DBM = -64.0
MAX_CINR_DB = 25.0
#: a depleted battery trips the low-voltage disconnect, and the whole site goes dark
DEPLETED_FRACTION = 0.05
LOW_FRACTION = 0.25


class Clock(Protocol):
    def now(self) -> float: ...


class SimClock:
    """Simulation seconds: real monotonic time multiplied by ``speed`` (time acceleration)."""

    def __init__(
        self, speed: float = 1.0, real: Callable[[], float] = time.monotonic, *, origin: float | None = None
    ) -> None:
        """``origin``: the ``real`` time simulation second 0 falls on (default: now); agent
        processes pass their parent's, so that every process runs the same simulated time."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._real = real
        self._origin_real = real() if origin is None else origin
        self._origin_sim = 0.0
        self.speed = speed

    def now(self) -> float:
        return self._origin_sim + (self._real() - self._origin_real) * self.speed

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._origin_sim, self._origin_real = self.now(), self._real()
        self.speed = speed


class ManualClock:
    """A clock that moves only when told: tests drive hours in microseconds."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """What the simulator needs to know of a site (the province generator provides these)."""

    id: str
    name: str
    location: str
    contact: str
    upstream: tuple[str, ...] = ()
    battery_runtime_s: float = 3 * 3600.0  # full battery at this site's load
    recharge_s: float = 5 * 3600.0  # empty to full
    load_amps: float = 25.0


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    site_id: str
    device_id: str
    model: str
    address: str
    community: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.site_id}/{self.device_id}"


@dataclass(slots=True)
class SiteState:
    spec: SiteSpec
    t: float  # sim time the battery state was last brought up to date
    mains: bool = True
    generator: bool = False
    charge: float = 1.0
    dark: bool = False  # battery exhausted: load disconnected
    cut: bool = False  # transmission to this site cut (fibre)
    on_battery_since: float | None = None
    input_bad_since: float | None = None
    mains_failures: int = 0
    uplink: SimDevice | None = None  # the radio that carries the site's traffic upstream
    devices: list[SimDevice] = field(default_factory=list)

    @property
    def supplied(self) -> bool:
        return self.mains or self.generator


@dataclass(slots=True, eq=False)
class SimDevice:
    spec: DeviceSpec
    model: DeviceModel
    site: SiteState
    community: bytes
    boot_time: float  # sim time; negative: it was up before the simulation began
    seed: float  # phase of its noise
    nominal_rx_dbm: float = -40.0
    boots: int = 1
    dead: bool = False
    fade_db: float = 0.0
    link_changed_at: float = 0.0

    @property
    def key(self) -> str:
        return self.spec.key

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.boot_time)


def _wobble(seed: float, t: float) -> float:
    """Smooth deterministic noise in [-1, 1]."""
    return 0.6 * math.sin(t * 0.9 + seed) + 0.4 * math.sin(t * 0.23 + 2.0 * seed)


# -- quantities served to SNMP ---------------------------------------------------------------------

Quantity = float | int | bool | str | bytes
Variable = Callable[[SimDevice, float, int], Quantity]


def _iface(d: SimDevice, index: int) -> InterfaceSpec:
    for iface in d.model.interfaces:
        if iface.index == index:
            return iface
    raise KeyError(index)


def _octets(d: SimDevice, now: float, index: int, share: float) -> float:
    iface = _iface(d, index)
    if iface.admin_down or iface.mbps <= 0:
        return 0.0
    elapsed = d.uptime(now)
    rate = iface.mbps * 125_000.0 * share  # bytes/s
    omega = 2 * math.pi / 600.0
    # a ten-minute traffic swing whose integral stays monotonic (its amplitude is below the mean)
    return rate * elapsed + 0.5 * rate * (1.0 - math.cos(omega * elapsed)) / omega


def rx_level(d: SimDevice, now: float) -> float:
    return max(-99.0, d.nominal_rx_dbm - d.fade_db + 0.7 * _wobble(d.seed, now))


def link_up(d: SimDevice) -> bool:
    # decided on the fade alone, so noise cannot flap the link
    return d.nominal_rx_dbm - d.fade_db >= LINK_LOSS_DBM


def _oper_status(d: SimDevice, now: float, index: int) -> int:
    iface = _iface(d, index)
    if iface.admin_down or (iface.radio and not link_up(d)):
        return 2
    return 1


def _if_last_change(d: SimDevice, now: float, index: int) -> float:
    iface = _iface(d, index)
    if iface.radio and d.link_changed_at > d.boot_time:
        return d.link_changed_at - d.boot_time
    return min(d.uptime(now), 35.0)


def _on_battery(d: SimDevice, now: float, index: int) -> bool:
    s = d.site
    return not s.supplied and not s.dark


def _ups_battery_status(d: SimDevice, now: float, index: int) -> int:
    s = d.site
    if s.charge <= DEPLETED_FRACTION:
        return 4
    if not s.supplied and s.charge <= LOW_FRACTION:
        return 3
    return 2


def _battery_volts(d: SimDevice, now: float, index: int) -> float:
    s = d.site
    noise = 0.05 * _wobble(d.seed, now)
    if s.supplied:
        return 53.5 + 1.0 * s.charge + noise  # charging up to the 54.5 V float voltage
    return 46.0 + 6.0 * s.charge + noise


def _battery_amps(d: SimDevice, now: float, index: int) -> float:
    s = d.site
    if not s.supplied:
        return -s.spec.load_amps
    return 0.5 * s.spec.load_amps if s.charge < 0.999 else -0.2


def _rectifiers_amps(d: SimDevice, now: float, index: int) -> float:
    s = d.site
    if not s.supplied:
        return 0.0
    return s.spec.load_amps + max(0.0, _battery_amps(d, now, index))


def _input_volts(d: SimDevice, now: float, index: int) -> float:
    s = d.site
    if s.mains:
        return 228.0 + 3.0 * _wobble(d.seed, now / 7.0)
    return 224.0 if s.generator else 0.0


def _input_hertz(d: SimDevice, now: float, index: int) -> float:
    s = d.site
    if s.mains:
        return 50.0
    return 49.8 if s.generator else 0.0


def _since_uptime(d: SimDevice, since: float | None) -> float:
    return max(0.0, (since if since is not None else d.boot_time) - d.boot_time)


def _ups_alarms(d: SimDevice, now: float, index: int) -> int:
    return sum(bool(f(d, now, 0)) for f in (_on_battery, _battery_low, _battery_depleted, _input_bad))


def _battery_low(d: SimDevice, now: float, index: int) -> bool:
    return _ups_battery_status(d, now, index) == 3


def _battery_depleted(d: SimDevice, now: float, index: int) -> bool:
    return _ups_battery_status(d, now, index) == 4


def _input_bad(d: SimDevice, now: float, index: int) -> bool:
    return not d.site.supplied


def _sp2_battery_status(d: SimDevice, now: float, index: int) -> int:
    s = d.site
    if s.supplied or s.charge > 0.5:
        return 1
    return 2 if s.charge > LOW_FRACTION else 3


VARIABLES: Mapping[str, Variable] = {
    # system and engine
    "uptime_seconds": lambda d, now, i: d.uptime(now),
    "sys_name": lambda d, now, i: d.spec.name,
    "sys_location": lambda d, now, i: d.site.spec.location,
    "sys_contact": lambda d, now, i: d.site.spec.contact,
    "engine_boots": lambda d, now, i: d.boots,
    "if_number": lambda d, now, i: len(d.model.interfaces),
    # interfaces
    "if_index": lambda d, now, i: i,
    "if_admin_status": lambda d, now, i: 2 if _iface(d, i).admin_down else 1,
    "if_oper_status": _oper_status,
    "if_last_change_seconds": _if_last_change,
    "if_in_octets": lambda d, now, i: _octets(d, now, i, 1.0),
    "if_out_octets": lambda d, now, i: _octets(d, now, i, 0.6),
    "if_in_discards": lambda d, now, i: d.uptime(now) * 0.0002 * i,
    "if_in_errors": lambda d, now, i: d.uptime(now) * 0.0005 * i,
    "if_out_errors": lambda d, now, i: 0,
    # radio
    "rx_level_dbm": lambda d, now, i: rx_level(d, now),
    "snr_db": lambda d, now, i: min(MAX_CINR_DB, max(0.0, rx_level(d, now) - NOISE_FLOOR_DBM)),
    "radio_supply_volts": lambda d, now, i: 48,
    "link_up": lambda d, now, i: link_up(d),
    # power
    "on_battery": _on_battery,
    "battery_low": _battery_low,
    "battery_depleted": _battery_depleted,
    "input_bad": _input_bad,
    "ups_battery_status": _ups_battery_status,
    "seconds_on_battery": lambda d, now, i: (
        now - d.site.on_battery_since if d.site.on_battery_since is not None else 0
    ),
    "battery_minutes_remaining": lambda d, now, i: d.site.charge * d.site.spec.battery_runtime_s / 60.0,
    "battery_charge_percent": lambda d, now, i: d.site.charge * 100.0,
    "battery_volts": _battery_volts,
    "battery_amps": _battery_amps,
    "battery_celsius": lambda d, now, i: 29 if d.site.supplied else 31,
    "input_line_bads": lambda d, now, i: d.site.mains_failures,
    "input_volts": _input_volts,
    "input_hertz": _input_hertz,
    "ups_output_source": lambda d, now, i: 3 if d.site.supplied else 5,
    "output_volts": lambda d, now, i: 230,
    "output_load_percent": lambda d, now, i: 35,
    "ups_alarms_present": _ups_alarms,
    "on_battery_since_uptime": lambda d, now, i: _since_uptime(d, d.site.on_battery_since),
    "input_bad_since_uptime": lambda d, now, i: _since_uptime(d, d.site.input_bad_since),
    "sp2_mains_status": lambda d, now, i: 1 if d.site.supplied else 3,
    "sp2_battery_status": _sp2_battery_status,
    "sp2_system_status": lambda d, now, i: max(1 if d.site.supplied else 3, _sp2_battery_status(d, now, i)),
    "sp2_lvbd_status": lambda d, now, i: 3 if d.site.dark else 1,
    "rectifiers_amps": _rectifiers_amps,
    "rectifier_amps": lambda d, now, i: _rectifiers_amps(d, now, i) / 3.0,
    "load_amps": lambda d, now, i: d.site.spec.load_amps,
}


class UnknownTarget(KeyError):
    """A control named a site or device the simulator does not have."""


class Simulator:
    """All simulated devices of a province, with the controls the scenario engine uses.

    Device references are ``"site_id/device_id"``. Controls take effect at the clock's current
    time; they are plain synchronous calls, safe from the event loop that also serves SNMP.
    """

    def __init__(
        self,
        sites: Iterable[SiteSpec],
        devices: Iterable[DeviceSpec],
        models: Mapping[str, DeviceModel],
        clock: Clock,
        seed: int = 1,
    ) -> None:
        self.clock = clock
        rng = random.Random(seed)
        now = clock.now()
        self.sites: dict[str, SiteState] = {s.id: SiteState(spec=s, t=now) for s in sites}
        self.devices: dict[str, SimDevice] = {}
        self.by_address: dict[str, SimDevice] = {}
        for spec in devices:
            model = models.get(spec.model)
            if model is None:
                raise ValueError(f"device {spec.key}: no device model {spec.model!r}")
            missing = model.variables() - VARIABLES.keys()
            if missing:
                raise ValueError(f"model {model.name}: unknown variables {sorted(missing)}")
            site = self.sites.get(spec.site_id)
            if site is None:
                raise ValueError(f"device {spec.key}: no site {spec.site_id!r}")
            if spec.key in self.devices or spec.address in self.by_address:
                raise ValueError(f"device {spec.key}: duplicate key or address {spec.address}")
            dev = SimDevice(
                spec=spec,
                model=model,
                site=site,
                community=spec.community.encode(),
                boot_time=now - rng.uniform(2 * 86400, 120 * 86400),
                seed=rng.uniform(0, 2 * math.pi),
                nominal_rx_dbm=rng.uniform(-42.0, -38.0),
                boots=rng.randint(1, 12),
            )
            self.devices[spec.key] = dev
            self.by_address[spec.address] = dev
            site.devices.append(dev)
            if model.kind == "radio" and site.uplink is None:
                site.uplink = dev

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def settle(self, site: SiteState, now: float) -> None:
        """Brings the battery up to ``now`` under the supply state that held since the last call."""
        dt = now - site.t
        if dt <= 0:
            return
        site.t = now
        spec = site.spec
        if site.supplied:
            site.charge = min(1.0, site.charge + dt / spec.recharge_s)
        elif not site.dark:
            before = site.charge
            site.charge = max(0.0, before - dt / spec.battery_runtime_s)
            if site.charge <= 0.0:
                site.dark = True
                site.on_battery_since = None

    def answering(self, dev: SimDevice, now: float) -> bool:
        """Would this device's agent answer at ``now``: alive, powered, booted and reachable."""
        if dev.dead or now < dev.boot_time:
            return False
        return self._reachable(dev.site, now, 0)

    def _reachable(self, site: SiteState, now: float, depth: int) -> bool:
        self.settle(site, now)
        if site.dark or site.cut:
            return False
        if site.uplink is not None and site.spec.upstream and not link_up(site.uplink):
            return False
        if depth > 32:  # the province generator makes no cycles; this keeps a bad file from looping
            return True
        return all(
            self._reachable(up, now, depth + 1)
            for up in (self.sites.get(u) for u in site.spec.upstream)
            if up is not None
        )

    def silent_addresses(self, now: float | None = None) -> set[str]:
        """Addresses of the devices that would not answer at ``now``: what must be dead to ping
        as well (the demo drops ICMP echo requests to them). One pass, each site judged once."""
        at = self.now() if now is None else now
        reachable: dict[str, bool] = {}
        out: set[str] = set()
        for dev in self.devices.values():
            site_id = dev.site.spec.id
            ok = reachable.get(site_id)
            if ok is None:
                ok = reachable[site_id] = self._reachable(dev.site, at, 0)
            if not ok or dev.dead or at < dev.boot_time:
                out.add(dev.spec.address)
        return out

    # -- controls ------------------------------------------------------------------------------

    def site(self, site_id: str) -> SiteState:
        try:
            return self.sites[site_id]
        except KeyError:
            raise UnknownTarget(f"no site {site_id!r}") from None

    def device(self, ref: str) -> SimDevice:
        try:
            return self.devices[ref]
        except KeyError:
            raise UnknownTarget(f"no device {ref!r} (use site_id/device_id)") from None

    def _supply_change(self, site: SiteState, mains: bool, generator: bool) -> None:
        now = self.now()
        self.settle(site, now)
        was_supplied, was_dark = site.supplied, site.dark
        if site.mains and not mains:
            site.mains_failures += 1
        site.mains, site.generator = mains, generator
        if site.supplied and not was_supplied:
            site.on_battery_since = None
            site.input_bad_since = None
            if was_dark:
                site.dark = False
                for dev in site.devices:
                    self._boot(dev, now)
        elif not site.supplied and was_supplied:
            site.on_battery_since = now
            site.input_bad_since = now

    def set_mains(self, site_id: str, on: bool) -> None:
        site = self.site(site_id)
        self._supply_change(site, on, site.generator)

    def set_generator(self, site_id: str, on: bool) -> None:
        site = self.site(site_id)
        self._supply_change(site, site.mains, on)

    def set_dead(self, ref: str, dead: bool) -> None:
        self.device(ref).dead = dead

    def reboot(self, ref: str) -> None:
        self._boot(self.device(ref), self.now())

    def _boot(self, dev: SimDevice, now: float) -> None:
        dev.boot_time = now + BOOT_DELAY_S
        dev.boots += 1

    def set_rx_fade(self, ref: str, db: float) -> None:
        dev = self.device(ref)
        if dev.model.kind != "radio":
            raise ValueError(f"{ref} is not a radio")
        was_up = link_up(dev)
        dev.fade_db = max(0.0, db)
        if link_up(dev) != was_up:
            dev.link_changed_at = self.now()

    def set_cut(self, site_id: str, cut: bool) -> None:
        """Cuts (or repairs) the transmission that reaches ``site_id``: it and every site behind it
        go silent."""
        self.site(site_id).cut = cut

    def battery(self, site_id: str) -> tuple[float, bool]:
        """(charge fraction, on battery) of a site now; for status lines and tests."""
        site = self.site(site_id)
        self.settle(site, self.now())
        return site.charge, not site.supplied and not site.dark
