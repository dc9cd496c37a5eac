"""Time-to-dark estimator on replayed samples: the regression, the vendor figure's cross-check,
placeholders distrusted, the early estimate from time since mains failed, recharge tracking."""

from __future__ import annotations

import pytest

from uptimewatch.config.models import Config
from uptimewatch.config.resolve import resolve_all
from uptimewatch.model.observation import Observation
from uptimewatch.power import PowerSample, PowerTracker, estimate, fit_trend, vendor_verdict
from uptimewatch.power.timetodark import HISTORY
from uptimewatch.web.status.i18n import speaker

T0 = 1_750_000_000.0
RUNTIME = 3 * 3600.0  # a full battery at this load


def drain(n: int, *, vendor: float | None, every: float = 60.0, start: float = 1.0) -> list[PowerSample]:
    """Samples of a plant draining linearly from ``start`` (fraction) over RUNTIME, 46 V when empty."""
    out = []
    for k in range(n):
        t = k * every
        charge = start - t / RUNTIME
        minutes = vendor if vendor is not None and vendor >= 0 else charge * RUNTIME / 60.0
        out.append(
            PowerSample(
                at=T0 + t,
                on_battery=True,
                voltage=round(46.0 + 6.0 * charge, 1),
                charge=float(round(charge * 100)),
                vendor_minutes=minutes,
                on_battery_seconds=None,
            )
        )
    return out


def truth(samples: list[PowerSample], start: float = 1.0) -> float:
    return start * RUNTIME - (samples[-1].at - T0)


def test_least_squares_line() -> None:
    t = fit_trend([(0.0, 10.0), (10.0, 8.0), (20.0, 6.0), (30.0, 4.0)])
    assert t is not None
    assert t.slope == pytest.approx(-0.2)
    assert t.now_value == pytest.approx(4.0)
    assert t.r2 == pytest.approx(1.0)
    assert fit_trend([(5.0, 1.0), (5.0, 2.0)]) is None


@pytest.mark.parametrize("placeholder", [999.0, 65535.0, 0.0])
def test_placeholder_vendor_figures_are_distrusted_and_the_trend_used(placeholder: float) -> None:
    samples = drain(20, vendor=placeholder)
    est = estimate("s1", "pwr", samples, cutoff_voltage=46.0)
    assert not est.vendor_trusted
    assert est.method in ("trends", "charge_trend", "voltage_trend")
    assert est.seconds == pytest.approx(truth(samples), rel=0.10)
    assert "distrusted" in str(est.reason)
    assert ("0 min while the plant still answers" if placeholder == 0 else "placeholder") in str(est.reason)


def test_a_real_vendor_figure_that_agrees_with_the_trend_is_trusted() -> None:
    samples = drain(20, vendor=None)
    est = estimate("s1", "pwr", samples, cutoff_voltage=46.0)
    assert est.vendor_trusted
    assert (est.method, est.confidence) == ("vendor", "high")
    assert "agrees with the measured trend" in str(est.reason)
    assert est.seconds == pytest.approx(truth(samples), rel=0.05)


def test_a_vendor_figure_far_from_the_trend_loses_and_a_stuck_one_is_distrusted() -> None:
    samples = drain(20, vendor=None)
    # a controller still assuming a new battery bank: four times too optimistic, but moving
    samples = [
        PowerSample(s.at, True, s.voltage, s.charge, (s.vendor_minutes or 0) * 4, None) for s in samples
    ]
    est = estimate("s1", "pwr", samples, cutoff_voltage=46.0)
    assert est.vendor_trusted
    assert est.method != "vendor"
    assert est.confidence == "medium"
    assert "disagrees with the measured trend" in str(est.reason)
    assert est.seconds == pytest.approx(truth(samples), rel=0.10)
    # a plausible figure that never moves for ten minutes on battery is stuck
    stuck = drain(12, vendor=120.0)
    ok, why = vendor_verdict(stuck)
    assert not ok
    assert str(why) == "the vendor figure is stuck at 120 min for 11 min"


def test_a_wrong_cutoff_makes_the_voltage_trend_too_long_and_the_shorter_charge_trend_wins() -> None:
    samples = drain(20, vendor=999.0)
    est = estimate("s1", "pwr", samples, cutoff_voltage=43.2)  # the plant really disconnects at 46 V
    assert est.voltage_trend_seconds is not None
    assert est.charge_trend_seconds is not None
    assert est.voltage_trend_seconds > 1.3 * est.charge_trend_seconds
    assert est.method == "charge_trend"
    assert "trusting the shorter" in str(est.reason)
    assert est.seconds == pytest.approx(truth(samples), rel=0.10)


def test_before_a_trend_time_since_mains_failed_gives_a_first_estimate() -> None:
    # two samples 5 min apart: too few for a trend; the charge used since mains failed gives a rate
    samples = drain(31, vendor=999.0, every=10.0, start=0.8)[::30]
    est = estimate("s1", "pwr", samples, cutoff_voltage=46.0, on_battery_since=T0, charge_before=80.0)
    assert est.method == "elapsed"
    assert est.confidence == "low"
    assert est.elapsed_seconds is not None
    assert est.seconds == pytest.approx(truth(samples, start=0.8), rel=0.10)
    # nothing to go on yet: said so, no number
    est = estimate("s1", "pwr", samples[:1], cutoff_voltage=46.0)
    assert est.dark_at is None
    assert est.method == "none"
    assert "waiting for the charge or voltage to fall measurably" in str(est.reason)


def _config(cutoff: float | None = None) -> Config:
    defaults = {"power": {"cutoff_voltage_volts": cutoff}} if cutoff else {}
    return Config.model_validate(
        {
            "province": {"id": "hb", "name": "Hòa Bình"},
            "defaults": defaults,
            "carriers": [{"id": "vnpt", "name": "VNPT"}],
            "districts": [{"id": "d1", "name": "Mai Châu"}],
            "sites": [
                {
                    "id": f"s{i}",
                    "name": f"S{i}",
                    "district": "d1",
                    "carrier": "vnpt",
                    "devices": [{"id": "pwr", "role": "power", "address": f"127.0.0.{i}"}],
                    **({"defaults": {"power": {"cutoff_voltage_volts": 46.0}}} if i == 3 else {}),
                }
                for i in (1, 2, 3)
            ],
        }
    )


def _obs(site: str, s: PowerSample) -> Observation:
    return Observation(
        site_id=site,
        device_id="pwr",
        probe="snmp",
        started_at=s.at,
        duration_s=0.1,
        fields={
            "power.on_battery": s.on_battery,
            "power.battery_voltage_volts": s.voltage,
            "power.battery_charge_percent": s.charge,
            "power.battery_minutes_remaining": s.vendor_minutes,
        },
    )


def test_tracker_ranks_sites_tracks_recharge_and_keeps_history_bounded() -> None:
    config = _config()
    devices = resolve_all(config)
    # the built-in 48 V figure, and one site's plant set to its own low-voltage disconnect
    assert [d.power.cutoff_voltage_volts for d in devices] == [43.2, 43.2, 46.0]
    assert [d.power.cutoff_voltage_volts for d in resolve_all(_config(cutoff=44.0))] == [44.0, 44.0, 46.0]
    tracker = PowerTracker(devices)
    # s1 on mains and full; s2 drains from full, s3 from half
    for k in range(HISTORY + 30):
        at = T0 + k * 60.0
        tracker.ingest(_obs("s1", PowerSample(at, False, 54.5, 100.0, 999.0, None)))
        if k < 25:
            for site, start in (("s2", 1.0), ("s3", 0.5)):
                s = drain(k + 1, vendor=None, start=start)[-1]
                tracker.ingest(_obs(site, s))
    now = T0 + 24 * 60.0
    soon = tracker.time_to_dark(now)
    assert set(soon) == {"s2", "s3"}
    assert soon["s3"] < soon["s2"]
    assert soon["s3"] == pytest.approx(0.5 * RUNTIME - 24 * 60.0, rel=0.10)
    assert [e.site_id for e in tracker.soon(now)] == ["s3"]  # within the 2 h default horizon
    assert tracker.sites()["s1"].status == "mains"
    assert len(tracker._plants[("s1", "pwr")].samples) <= 1  # a full plant on mains keeps nothing

    # mains returns at s3: recharge from ~42 % at 20 %/h (a 5 h recharge)
    back = T0 + 30 * 60.0
    for k in range(200):  # full after 174 min
        charge = min(100.0, 42.0 + 20.0 * k / 60.0)
        tracker.ingest(
            _obs("s3", PowerSample(back + k * 60.0, False, 53.5, float(round(charge)), 999.0, None))
        )
        if k == 60:
            est = tracker.sites()["s3"]
            assert est.status == "recharging"
            assert est.charge_rate_percent_per_hour == pytest.approx(20.0, rel=0.1)
            assert est.full_at is not None
            assert est.full_at - est.at == pytest.approx((100.0 - 62.0) / 20.0 * 3600.0, rel=0.1)
    assert len(tracker._plants[("s3", "pwr")].samples) <= HISTORY
    assert tracker.sites()["s3"].status == "mains"


def test_the_reasoning_is_written_in_the_readers_language() -> None:
    """The API's and the site page's time-to-dark reasoning: English by default, Vietnamese when
    the reader reads Vietnamese (no English left on a Vietnamese page)."""
    samples = drain(20, vendor=999.0)
    est = estimate("s1", "pwr", samples, cutoff_voltage=46.0)
    english = est.to_dict(samples[-1].at)["reason"]
    vietnamese = est.to_dict(samples[-1].at, speaker("vi", None))["reason"]
    assert "distrusted" in english
    assert english == est.to_dict(samples[-1].at, speaker("en", None))["reason"]
    assert vietnamese != english
    assert "distrusted" not in vietnamese
    assert any(ch in vietnamese for ch in "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
