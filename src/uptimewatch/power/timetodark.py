"""Time-to-dark: for every site on battery, when it will lose power, and which figure we trust.

Three sources, cross-checked (docs/topology-and-power.md says when to believe each):

* **the vendor's runtime figure** (``power.battery_minutes_remaining``): the plant controller's own
  model, good when real, but often a placeholder (999, 0, 65535) or stuck at one value;
* **the trends** of the last samples: least-squares lines through battery charge (towards 0 %) and
  battery voltage (towards the plant's cut-off voltage, the low-voltage disconnect);
* **the time since mains failed**: the charge used since then gives a first rate before a trend
  has enough samples, and tells a stuck vendor figure from a moving one.

Pure and cheap: one bounded ring buffer of samples per power plant, holding the current discharge
(or recharge) only; an estimate is a regression over at most :data:`TREND_WINDOW` samples, and a
plant on mains with a full battery costs one comparison per observation.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from ..config.models import Role
from ..config.resolve import BUILTIN_POWER, ResolvedDevice
from ..i18n import N_, Phrase, Text
from ..model.fields import (
    POWER_BATTERY_CHARGE,
    POWER_BATTERY_MINUTES,
    POWER_BATTERY_VOLTAGE,
    POWER_ON_BATTERY,
)
from ..model.observation import FieldValue, Observation

if TYPE_CHECKING:
    from ..model.health import HealthSnapshot

__all__ = [
    "PLACEHOLDER_MINUTES",
    "PowerSample",
    "PowerTracker",
    "TimeToDark",
    "Trend",
    "dispatch_list",
    "estimate",
    "fit_trend",
    "vendor_verdict",
]

#: Runtime figures that vendors send for "I do not know" (or a value their firmware never updates).
PLACEHOLDER_MINUTES: Final = frozenset({0.0, 999.0, 9999.0, 65535.0, 2147483647.0, 4294967295.0})
#: A telecom site does not run three days on batteries; a figure beyond that is not an estimate.
MAX_PLAUSIBLE_MINUTES: Final = 72 * 60.0
#: A real runtime figure moves as the battery drains; one unchanged this long is stuck.
STUCK_AFTER_S: Final = 10 * 60.0
#: Samples kept per plant (the current discharge or recharge only).
HISTORY: Final = 120
#: The most recent samples a trend is fitted to: the end of a discharge curve matters most.
TREND_WINDOW: Final = 30
MIN_TREND_SAMPLES: Final = 4
#: A trend needs the value to have moved by several steps of the agents' resolution (1 %, 0.1 V);
#: before that its slope is mostly rounding noise.
MIN_CHANGE: Final[dict[str, float]] = {"charge": 2.0, "voltage": 0.3}
#: Two estimates agree when they differ by at most this fraction of the larger one.
AGREEMENT: Final = 0.25
FULL_PERCENT: Final = 99.0

Status = Literal["on_battery", "recharging", "mains", "unknown"]
Method = Literal["vendor", "charge_trend", "voltage_trend", "trends", "elapsed", "none"]
Confidence = Literal["high", "medium", "low", "none"]


@dataclass(frozen=True, slots=True)
class PowerSample:
    at: float
    on_battery: bool | None
    voltage: float | None  # battery (DC bus) volts
    charge: float | None  # percent
    vendor_minutes: float | None
    on_battery_seconds: float | None


@dataclass(frozen=True, slots=True)
class Trend:
    """A least-squares line through (time, value): ``value(at) = now_value + slope * (at - t_last)``."""

    slope: float  # per second
    now_value: float  # the fitted value at the last sample
    r2: float
    n: int
    span_s: float
    settled: bool = True  # the values moved by many steps of the agent's resolution


def fit_trend(points: Sequence[tuple[float, float]]) -> Trend | None:
    """The least-squares line through ``points``; None for fewer than two distinct times."""
    n = len(points)
    if n < 2:
        return None
    t0 = points[-1][0]
    mean_t = sum(t - t0 for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    stt = sum((t - t0 - mean_t) ** 2 for t, _ in points)
    if stt <= 0:
        return None
    stv = sum((t - t0 - mean_t) * (v - mean_v) for t, v in points)
    svv = sum((v - mean_v) ** 2 for _, v in points)
    slope = stv / stt
    r2 = (stv * stv) / (stt * svv) if svv > 0 else 1.0
    return Trend(slope, mean_v + slope * (0.0 - mean_t), r2, n, points[-1][0] - points[0][0])


@dataclass(frozen=True, slots=True)
class TimeToDark:
    """The estimate for one power plant, as of its last sample ``at``."""

    site_id: str
    device_id: str
    at: float
    status: Status
    dark_at: float | None  # unix time the site is predicted to lose power
    method: Method
    confidence: Confidence
    reason: Phrase  # msgid + parameters: rendered in the reader's language
    on_battery_since: float | None = None
    voltage: float | None = None
    charge: float | None = None
    cutoff_voltage: float | None = None
    vendor_minutes: float | None = None
    vendor_trusted: bool = False
    charge_trend_seconds: float | None = None
    voltage_trend_seconds: float | None = None
    elapsed_seconds: float | None = None  # the estimate from the charge used since mains failed
    samples: int = 0
    full_at: float | None = None  # recharging: when the battery is predicted full
    charge_rate_percent_per_hour: float | None = None

    @property
    def seconds(self) -> float | None:
        """Seconds to dark as of the last sample."""
        return None if self.dark_at is None else max(0.0, self.dark_at - self.at)

    def remaining(self, now: float) -> float | None:
        """Seconds to dark as of ``now``."""
        return None if self.dark_at is None else max(0.0, self.dark_at - now)

    def to_dict(self, now: float | None = None, say: Callable[[Phrase], str] = str) -> dict[str, Any]:
        """The estimate as the API gives it; ``say`` writes the reason in the reader's language."""
        when = self.at if now is None else now
        remaining = self.remaining(when)
        return {
            "site_id": self.site_id,
            "device_id": self.device_id,
            "status": self.status,
            "seconds": None if remaining is None else round(remaining, 1),
            "minutes": None if remaining is None else round(remaining / 60.0, 1),
            "dark_at": self.dark_at,
            "method": self.method,
            "confidence": self.confidence,
            "reason": say(self.reason),
            "on_battery_since": self.on_battery_since,
            "voltage": self.voltage,
            "charge_percent": self.charge,
            "cutoff_voltage": self.cutoff_voltage,
            "vendor_minutes": self.vendor_minutes,
            "vendor_trusted": self.vendor_trusted,
            "charge_trend_seconds": _round(self.charge_trend_seconds),
            "voltage_trend_seconds": _round(self.voltage_trend_seconds),
            "elapsed_seconds": _round(self.elapsed_seconds),
            "samples": self.samples,
            "full_at": self.full_at,
            "charge_rate_percent_per_hour": _round(self.charge_rate_percent_per_hour, 2),
            "at": self.at,
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def sample_of(at: float, fields: Mapping[str, FieldValue]) -> PowerSample | None:
    """The power readings of one observation; None when it has none."""
    on_battery = fields.get(POWER_ON_BATTERY)
    sample = PowerSample(
        at=at,
        on_battery=on_battery if isinstance(on_battery, bool) else None,
        voltage=_num(fields.get(POWER_BATTERY_VOLTAGE)),
        charge=_num(fields.get(POWER_BATTERY_CHARGE)),
        vendor_minutes=_num(fields.get(POWER_BATTERY_MINUTES)),
        on_battery_seconds=_num(fields.get("power.on_battery_seconds")),
    )
    if sample.on_battery is None and sample.voltage is None and sample.charge is None:
        return None
    return sample


def _min(seconds: float) -> int:
    """Whole minutes, as the reasons quote them (rounded, so equal words compare equal)."""
    return round(seconds / 60.0)


def vendor_verdict(samples: Sequence[PowerSample]) -> tuple[bool, Phrase]:
    """Whether the vendor's latest runtime figure deserves trust, and why (for the reason text)."""
    last = samples[-1].vendor_minutes if samples else None
    if last is None:
        return False, Text(N_("the plant reports no runtime figure"))
    if last == 0.0:
        return False, Text(N_("the vendor figure says 0 min while the plant still answers"))
    if last in PLACEHOLDER_MINUTES:
        return False, Text(
            N_("the vendor figure {vendor} min is a known placeholder"), {"vendor": f"{last:g}"}
        )
    if last > MAX_PLAUSIBLE_MINUTES:
        return False, Text(N_("the vendor figure {vendor} min is implausible"), {"vendor": f"{last:g}"})
    on_battery = [s for s in samples if s.on_battery]
    if on_battery:
        same = [s for s in on_battery if s.vendor_minutes == last]
        if len(same) == len(on_battery) and same[-1].at - same[0].at >= STUCK_AFTER_S:
            stuck_for = same[-1].at - same[0].at
            return False, Text(
                N_("the vendor figure is stuck at {vendor} min for {minutes} min"),
                {"vendor": f"{last:g}", "minutes": _min(stuck_for)},
            )
    return True, Text(N_("the vendor figure {vendor} min"), {"vendor": f"{last:g}"})


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREEMENT * max(a, b, 1.0)


def _trend(samples: Sequence[PowerSample], attr: str) -> Trend | None:
    points = [(s.at, v) for s in samples[-TREND_WINDOW:] if (v := getattr(s, attr)) is not None]
    if len(points) < MIN_TREND_SAMPLES:
        return None
    values = [v for _, v in points]
    change = max(values) - min(values)
    if change < MIN_CHANGE[attr]:
        return None
    t = fit_trend(points)
    # "high" wants the line to span several resolution steps: over few, rounding bends the slope
    return None if t is None else dataclasses.replace(t, settled=change >= 4 * MIN_CHANGE[attr])


def _trend_confidence(t: Trend) -> Confidence:
    if t.n >= 8 and t.r2 >= 0.9 and t.settled:
        return "high"
    return "medium" if t.r2 >= 0.5 else "low"


def estimate(
    site_id: str,
    device_id: str,
    samples: Sequence[PowerSample],
    *,
    cutoff_voltage: float,
    on_battery_since: float | None = None,
    charge_before: float | None = None,
) -> TimeToDark:
    """The time-to-dark of one plant from the samples of its current discharge or recharge.

    ``charge_before``: the charge when mains failed, if a sample on mains was seen just before.
    """
    last = samples[-1]
    base: dict[str, Any] = {
        "site_id": site_id,
        "device_id": device_id,
        "at": last.at,
        "voltage": last.voltage,
        "charge": last.charge,
        "cutoff_voltage": cutoff_voltage,
        "vendor_minutes": last.vendor_minutes,
        "samples": len(samples),
    }
    if last.on_battery is None:
        return TimeToDark(
            **base,
            status="unknown",
            dark_at=None,
            method="none",
            confidence="none",
            reason=Text(N_("no power source data")),
        )
    if not last.on_battery:
        return _on_mains(base, samples)

    vendor_ok, vendor_why = vendor_verdict(samples)
    vendor_s = last.vendor_minutes * 60.0 if vendor_ok and last.vendor_minutes is not None else None
    charge_t = _trend(samples, "charge")
    volt_t = _trend(samples, "voltage")
    charge_s = None
    if charge_t is not None and charge_t.slope < 0:
        charge_s = max(0.0, charge_t.now_value) / -charge_t.slope
    volt_s = None
    if volt_t is not None and volt_t.slope < 0:
        volt_s = max(0.0, volt_t.now_value - cutoff_voltage) / -volt_t.slope
    elapsed_s = None
    if on_battery_since is not None and charge_before is not None and last.charge is not None:
        used = charge_before - last.charge
        spent = last.at - on_battery_since
        if used > 0 and spent >= 60.0:
            elapsed_s = last.charge / (used / spent)
    base |= {
        "on_battery_since": on_battery_since,
        "vendor_trusted": vendor_ok,
        "charge_trend_seconds": charge_s,
        "voltage_trend_seconds": volt_s,
        "elapsed_seconds": elapsed_s,
    }

    # the measured figure: both trends when they agree; the shorter one when they do not, since a
    # generator sent early costs less than a site gone dark
    measured: float | None = None
    m_method: Method = "none"
    m_conf: Confidence = "none"
    m_why: Phrase = ""
    if charge_s is not None and volt_s is not None and charge_t is not None and volt_t is not None:
        measured = min(charge_s, volt_s)
        if _agree(charge_s, volt_s):
            m_method = "trends"
            m_why = Text(
                N_("charge and voltage trends agree ({charge} min, {voltage} min)"),
                {"charge": _min(charge_s), "voltage": _min(volt_s)},
            )
            m_conf = max(_trend_confidence(charge_t), _trend_confidence(volt_t), key=_CONF_RANK.__getitem__)
        else:
            m_method = "charge_trend" if charge_s <= volt_s else "voltage_trend"
            m_why = Text(
                N_(
                    "the charge trend says {charge} min, the voltage trend towards {cutoff} V says "
                    "{voltage} min: trusting the shorter"
                ),
                {"charge": _min(charge_s), "cutoff": f"{cutoff_voltage:g}", "voltage": _min(volt_s)},
            )
            m_conf = (
                "medium" if min(_trend_confidence(charge_t), _trend_confidence(volt_t)) != "low" else "low"
            )
    elif charge_s is not None and charge_t is not None:
        measured, m_method, m_conf = charge_s, "charge_trend", _trend_confidence(charge_t)
        m_why = Text(
            N_("the charge trend over {n} samples says {minutes} min"),
            {"n": charge_t.n, "minutes": _min(charge_s)},
        )
    elif volt_s is not None and volt_t is not None:
        measured, m_method, m_conf = volt_s, "voltage_trend", _trend_confidence(volt_t)
        m_why = Text(
            N_("the voltage trend towards {cutoff} V over {n} samples says {minutes} min"),
            {"cutoff": f"{cutoff_voltage:g}", "n": volt_t.n, "minutes": _min(volt_s)},
        )

    at = last.at
    if vendor_s is not None and measured is not None:
        if _agree(vendor_s, measured):
            return TimeToDark(
                **base,
                status="on_battery",
                dark_at=at + vendor_s,
                method="vendor",
                confidence="high",
                reason=Text(
                    N_("{vendor} agrees with the measured trend: {measured}"),
                    {"vendor": vendor_why, "measured": m_why},
                ),
            )
        return TimeToDark(
            **base,
            status="on_battery",
            dark_at=at + measured,
            method=m_method,
            confidence="medium",
            reason=Text(
                N_("{vendor} disagrees with the measured trend, which is trusted: {measured}"),
                {"vendor": vendor_why, "measured": m_why},
            ),
        )
    if measured is not None:
        return TimeToDark(
            **base,
            status="on_battery",
            dark_at=at + measured,
            method=m_method,
            confidence=m_conf,
            reason=Text(
                N_("{vendor}; {measured}") if vendor_ok else N_("distrusted: {vendor}; {measured}"),
                {"vendor": vendor_why, "measured": m_why},
            ),
        )
    if vendor_s is not None:
        if elapsed_s is not None and not _agree(vendor_s, elapsed_s):
            return TimeToDark(
                **base,
                status="on_battery",
                dark_at=at + min(vendor_s, elapsed_s),
                method="elapsed" if elapsed_s < vendor_s else "vendor",
                confidence="low",
                reason=Text(
                    N_(
                        "{vendor} disagrees with the charge used since mains failed ({minutes} min); "
                        "trusting the shorter until a trend is measured"
                    ),
                    {"vendor": vendor_why, "minutes": _min(elapsed_s)},
                ),
            )
        return TimeToDark(
            **base,
            status="on_battery",
            dark_at=at + vendor_s,
            method="vendor",
            confidence="medium" if elapsed_s is not None else "low",
            reason=Text(
                N_("{vendor}, not cross-checked yet ({n} samples on battery)"),
                {"vendor": vendor_why, "n": len(samples)},
            ),
        )
    if elapsed_s is not None:
        return TimeToDark(
            **base,
            status="on_battery",
            dark_at=at + elapsed_s,
            method="elapsed",
            confidence="low",
            reason=Text(
                N_(
                    "distrusted: {vendor}; from the charge used since mains failed, until a trend is measured"
                ),
                {"vendor": vendor_why},
            ),
        )
    return TimeToDark(
        **base,
        status="on_battery",
        dark_at=None,
        method="none",
        confidence="none",
        reason=Text(
            N_(
                "distrusted: {vendor}; waiting for the charge or voltage to fall measurably "
                "(at least {n} samples)"
            ),
            {"vendor": vendor_why, "n": MIN_TREND_SAMPLES},
        ),
    )


_CONF_RANK: Final[dict[Confidence, int]] = {"none": 0, "low": 1, "medium": 2, "high": 3}


def _on_mains(base: dict[str, Any], samples: Sequence[PowerSample]) -> TimeToDark:
    last = samples[-1]
    if last.charge is None or last.charge >= FULL_PERCENT:
        return TimeToDark(
            **base,
            status="mains",
            dark_at=None,
            method="none",
            confidence="none",
            reason=Text(N_("on mains, battery full")),
        )
    t = _trend(samples, "charge")
    if t is None or t.slope <= 0:
        return TimeToDark(
            **base,
            status="recharging",
            dark_at=None,
            method="none",
            confidence="none",
            reason=Text(N_("on mains, battery at {charge} %"), {"charge": round(last.charge)}),
        )
    to_full = max(0.0, 100.0 - t.now_value) / t.slope
    rate = t.slope * 3600.0
    return TimeToDark(
        **base,
        status="recharging",
        dark_at=None,
        method="none",
        confidence="none",
        reason=Text(
            N_("on mains, recharging at {rate} %/h: full in {minutes} min"),
            {"rate": round(rate), "minutes": _min(to_full)},
        ),
        full_at=last.at + to_full,
        charge_rate_percent_per_hour=rate,
    )


class _Plant:
    __slots__ = (
        "charge_before",
        "cutoff",
        "device_id",
        "estimate",
        "horizon",
        "on_battery_since",
        "samples",
        "site_id",
    )

    def __init__(self, device: ResolvedDevice) -> None:
        self.site_id = device.site_id
        self.device_id = device.device_id
        self.samples: deque[PowerSample] = deque(maxlen=HISTORY)
        self.on_battery_since: float | None = None
        self.charge_before: float | None = None
        self.estimate: TimeToDark | None = None
        self.configure(device)

    def configure(self, device: ResolvedDevice) -> None:
        power = device.power
        self.cutoff = power.cutoff_voltage_volts or BUILTIN_POWER.cutoff_voltage_volts or 0.0
        self.horizon = power.time_to_dark_alert_horizon or BUILTIN_POWER.time_to_dark_alert_horizon or 0.0

    def add(self, s: PowerSample) -> TimeToDark:
        samples = self.samples
        prev = samples[-1] if samples else None
        if prev is not None and s.at < prev.at:
            return self.estimate or self._estimate()  # late result of an older poll
        if prev is not None and prev.on_battery != s.on_battery:
            # a new segment: a discharge starts (or ends); the old samples describe another curve
            self.charge_before = prev.charge if s.on_battery and prev.on_battery is False else None
            samples.clear()
            self.on_battery_since = None
        if s.on_battery and self.on_battery_since is None:
            self.on_battery_since = s.at - s.on_battery_seconds if s.on_battery_seconds else s.at
        if (
            not s.on_battery
            and prev is not None
            and not prev.on_battery
            and s.charge is not None
            and s.charge >= FULL_PERCENT
            and prev.charge == s.charge
            and self.estimate is not None
        ):
            # on mains, full and unchanged: nothing worth a history or a new estimate
            samples[-1] = s
            return self.estimate
        samples.append(s)
        return self._estimate()

    def _estimate(self) -> TimeToDark:
        self.estimate = estimate(
            self.site_id,
            self.device_id,
            list(self.samples),  # a deque cannot be sliced to the trend window
            cutoff_voltage=self.cutoff,
            on_battery_since=self.on_battery_since,
            charge_before=self.charge_before,
        )
        return self.estimate


_STATUS_RANK: Final[dict[str, int]] = {"on_battery": 0, "recharging": 1, "unknown": 2, "mains": 3}


class PowerTracker:
    """Keeps the sample history of every power plant and its current time-to-dark."""

    def __init__(self, devices: Iterable[ResolvedDevice]) -> None:
        self._plants: dict[tuple[str, str], _Plant] = {}
        self.reconfigure(devices)

    def reconfigure(self, devices: Iterable[ResolvedDevice]) -> None:
        """Plants that remain keep their history; cut-off and horizon follow the new settings."""
        old = self._plants
        plants: dict[tuple[str, str], _Plant] = {}
        for d in devices:
            if d.role is not Role.POWER:
                continue
            plant = old.get(d.key)
            if plant is None:
                plant = _Plant(d)
            else:
                plant.configure(d)
                if plant.samples:
                    plant.samples.append(plant.samples.pop())  # same samples, new cut-off below
                    plant._estimate()
            plants[d.key] = plant
        self._plants = plants

    def ingest(self, obs: Observation) -> TimeToDark | None:
        """Take the power readings of one observation; None when it is not about a plant's power."""
        if obs.error is not None:
            return None
        plant = self._plants.get((obs.site_id, obs.device_id))
        if plant is None:
            return None
        sample = sample_of(obs.started_at, obs.fields)
        return None if sample is None else plant.add(sample)

    def plant(self, site_id: str, device_id: str) -> TimeToDark | None:
        plant = self._plants.get((site_id, device_id))
        return None if plant is None else plant.estimate

    def sites(self) -> dict[str, TimeToDark]:
        """One estimate per site: on battery beats the rest, then the soonest dark."""
        out: dict[str, TimeToDark] = {}
        for plant in self._plants.values():
            est = plant.estimate
            if est is None:
                continue
            cur = out.get(est.site_id)
            if cur is None or _rank(est) < _rank(cur):
                out[est.site_id] = est
        return out

    def time_to_dark(self, now: float) -> dict[str, float]:
        """Seconds to dark of every site on battery with an estimate (for the metric)."""
        return {
            sid: r
            for sid, est in self.sites().items()
            if est.status == "on_battery" and (r := est.remaining(now)) is not None
        }

    def horizon(self, site_id: str, device_id: str) -> float:
        plant = self._plants.get((site_id, device_id))
        return plant.horizon if plant is not None else (BUILTIN_POWER.time_to_dark_alert_horizon or 0.0)

    def soon(self, now: float) -> list[TimeToDark]:
        """Sites predicted dark within their alert horizon (``time_to_dark_alert_horizon``)."""
        out = [
            est
            for est in self.sites().values()
            if est.status == "on_battery"
            and (r := est.remaining(now)) is not None
            and r <= self.horizon(est.site_id, est.device_id)
        ]
        out.sort(key=lambda e: e.dark_at or 0.0)
        return out


def _rank(est: TimeToDark) -> tuple[int, float]:
    return (_STATUS_RANK[est.status], est.dark_at if est.dark_at is not None else math.inf)


def dispatch_list(
    estimates: Mapping[str, TimeToDark],
    snap: HealthSnapshot,
    now: float,
    say: Callable[[Phrase], str] = str,
) -> list[dict[str, Any]]:
    """The generator dispatch list: sites on battery, soonest dark first (unknown times after),
    then sites recharging; each with its place in the province and the estimate's reasoning."""
    rows = [e for e in estimates.values() if e.status in ("on_battery", "recharging")]
    rows.sort(key=_rank)
    out: list[dict[str, Any]] = []
    for rank, est in enumerate(rows, start=1):
        site = snap.sites.get(est.site_id)
        row = est.to_dict(now, say)
        row["rank"] = rank
        if site is not None:
            row |= {
                "name": site.name,
                "district": site.district,
                "commune": site.commune,
                "carrier": site.carrier,
                "priority": site.priority,
                "state": str(site.state),
            }
        out.append(row)
    return out
