"""Recent samples for the site page's charts: what the health snapshot forgets.

The snapshot holds the latest value of every field; a duty officer opening a site also wants to
see the last hour of ping and the battery curve of the current (or last) discharge. This keeps,
in memory and bounded:

* **ping** of each site's *core* devices (its base stations; else its routers; else all of them,
  the rule the health model uses for "site down"): the last :data:`PING_POINTS` ICMP bursts as
  (time, mean RTT, loss). Other devices are left out so that the cost stays one ring per site.
* **discharge** of each power plant: battery charge and voltage from the moment it went on
  battery, kept after mains returns until the next discharge starts. A long discharge is thinned
  (every other point dropped, the spacing doubled) rather than cut, so the whole curve stays.

Nothing here is judged or persisted: the ledger keeps the history that counts (states and
on-battery spells); a restart starts these charts empty.

Cost: a ring is three compact arrays (8 + 4 + 4 bytes a point): about 2.1 KiB per core device
at the default 90 points; a discharge at most :data:`DISCHARGE_POINTS` points per power plant.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeVar

from ..config.models import Role
from ..config.resolve import ResolvedDevice
from .fields import (
    ICMP_LOSS_RATIO,
    ICMP_RTT_AVG,
    POWER_BATTERY_CHARGE,
    POWER_BATTERY_VOLTAGE,
    POWER_ON_BATTERY,
)
from .observation import FieldValue, Observation

__all__ = ["DISCHARGE_POINTS", "PING_POINTS", "Discharge", "PingSeries", "RecentSamples"]

PING_POINTS: Final = 90
DISCHARGE_POINTS: Final = 240

_T = TypeVar("_T")


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else value


class _Ring:
    """The last ``size`` (time, a, b) triples; a and b are float32, NaN for "no value"."""

    __slots__ = ("_a", "_at", "_b", "_n", "_next")

    def __init__(self, size: int) -> None:
        self._at = array("d", bytes(8 * size))
        self._a = array("f", bytes(4 * size))
        self._b = array("f", bytes(4 * size))
        self._next = 0
        self._n = 0

    def add(self, at: float, a: float | None, b: float | None) -> None:
        size = len(self._at)
        if self._n and at < self._at[(self._next - 1) % size]:
            return  # a late result of an older poll: the series stays in time order
        i = self._next
        self._at[i], self._a[i], self._b[i] = at, _nan(a), _nan(b)
        self._next = (i + 1) % size
        self._n = min(self._n + 1, size)

    def points(self) -> list[tuple[float, float | None, float | None]]:
        size = len(self._at)
        start = (self._next - self._n) % size
        out = []
        for k in range(self._n):
            i = (start + k) % size
            out.append((self._at[i], _opt(self._a[i]), _opt(self._b[i])))
        return out


class _Curve:
    """One discharge: points thinned by halves when full, so it always spans the whole spell."""

    __slots__ = ("charge", "ended_at", "spacing", "started_at", "times", "voltage")

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.ended_at: float | None = None
        self.times = array("d")
        self.charge = array("f")
        self.voltage = array("f")
        self.spacing = 0.0  # the least time between two kept points

    def add(self, at: float, charge: float | None, voltage: float | None) -> None:
        times = self.times
        if times and at < times[-1]:
            return
        if len(times) >= 2 and at - times[-2] < self.spacing:
            # too close to the point before: the newest reading takes the last place
            times[-1], self.charge[-1], self.voltage[-1] = at, _nan(charge), _nan(voltage)
            return
        times.append(at)
        self.charge.append(_nan(charge))
        self.voltage.append(_nan(voltage))
        if len(self.times) >= DISCHARGE_POINTS:
            # keep every other point, the first and the last too, and take half as many from now on
            n = len(self.times)
            keep = [*range(0, n - 1, 2), n - 1]
            for name in ("times", "charge", "voltage"):
                old = getattr(self, name)
                setattr(self, name, array(old.typecode, (old[i] for i in keep)))
            span = self.times[-1] - self.times[0]
            self.spacing = 2 * span / max(1, len(self.times) - 1)


@dataclass(frozen=True, slots=True)
class PingSeries:
    device_id: str
    #: (unix time, mean round trip in seconds or None when nothing came back, loss ratio 0..1)
    points: tuple[tuple[float, float | None, float | None], ...]


@dataclass(frozen=True, slots=True)
class Discharge:
    device_id: str
    started_at: float
    ended_at: float | None  # None: still on battery
    #: (unix time, battery charge percent, battery voltage)
    points: tuple[tuple[float, float | None, float | None], ...]


class RecentSamples:
    """See the module docstring. ``ingest`` is O(1); reading copies one site's series."""

    def __init__(self, devices: Iterable[ResolvedDevice], *, ping_points: int = PING_POINTS) -> None:
        self._ping_points = ping_points
        self._ping: dict[str, dict[str, _Ring]] = {}  # site -> device -> ring
        self._power: set[tuple[str, str]] = set()
        self._curves: dict[str, dict[str, _Curve]] = {}
        self._on_battery: dict[tuple[str, str], bool] = {}
        self._core: set[tuple[str, str]] = set()
        self.reconfigure(devices)

    def reconfigure(self, devices: Iterable[ResolvedDevice]) -> None:
        """Series of devices that remain are kept; those of removed devices are dropped."""
        by_site: dict[str, list[ResolvedDevice]] = {}
        for d in devices:
            by_site.setdefault(d.site_id, []).append(d)
        core: set[tuple[str, str]] = set()
        power: set[tuple[str, str]] = set()
        for site_devices in by_site.values():
            bts = [d for d in site_devices if d.role is Role.BTS]
            routers = [d for d in site_devices if d.role is Role.ROUTER]
            core.update(d.key for d in (bts or routers or site_devices) if d.icmp is not None)
            power.update(d.key for d in site_devices if d.role is Role.POWER)
        self._core = core
        self._power = power
        self._ping = _keep(self._ping, core)
        self._curves = _keep(self._curves, power)
        self._on_battery = {k: v for k, v in self._on_battery.items() if k in power}

    def ingest(self, obs: Observation) -> None:
        key = (obs.site_id, obs.device_id)
        f = obs.fields
        if key in self._core and "icmp.loss_ratio" in f:
            rings = self._ping.setdefault(obs.site_id, {})
            ring = rings.get(obs.device_id)
            if ring is None:
                ring = rings[obs.device_id] = _Ring(self._ping_points)
            ring.add(obs.started_at, _num(f.get(ICMP_RTT_AVG)), _num(f.get(ICMP_LOSS_RATIO)))
        if key in self._power and obs.error is None:
            on_battery = f.get(POWER_ON_BATTERY)
            if not isinstance(on_battery, bool):
                return
            was = self._on_battery.get(key)
            self._on_battery[key] = on_battery
            curves = self._curves.setdefault(obs.site_id, {})
            curve = curves.get(obs.device_id)
            if on_battery:
                if not was or curve is None or curve.ended_at is not None:
                    seconds = _num(f.get("power.on_battery_seconds"))
                    started = obs.started_at - seconds if seconds else obs.started_at
                    curve = curves[obs.device_id] = _Curve(started)
                curve.add(
                    obs.started_at,
                    _num(f.get(POWER_BATTERY_CHARGE)),
                    _num(f.get(POWER_BATTERY_VOLTAGE)),
                )
            elif was and curve is not None and curve.ended_at is None:
                # the first reading on mains closes the curve, with the charge it ended at
                curve.add(
                    obs.started_at,
                    _num(f.get(POWER_BATTERY_CHARGE)),
                    _num(f.get(POWER_BATTERY_VOLTAGE)),
                )
                curve.ended_at = obs.started_at

    def ping(self, site_id: str) -> list[PingSeries]:
        rings = self._ping.get(site_id, {})
        return [PingSeries(dev, tuple(rings[dev].points())) for dev in sorted(rings)]

    def discharges(self, site_id: str) -> list[Discharge]:
        """The current or last discharge of each of the site's power plants."""
        curves = self._curves.get(site_id, {})
        out = []
        for dev in sorted(curves):
            c = curves[dev]
            points = tuple((c.times[i], _opt(c.charge[i]), _opt(c.voltage[i])) for i in range(len(c.times)))
            out.append(Discharge(dev, c.started_at, c.ended_at, points))
        return out


def _keep(series: dict[str, dict[str, _T]], wanted: set[tuple[str, str]]) -> dict[str, dict[str, _T]]:
    out: dict[str, dict[str, _T]] = {}
    for site_id, by_device in series.items():
        kept = {d: v for d, v in by_device.items() if (site_id, d) in wanted}
        if kept:
            out[site_id] = kept
    return out
