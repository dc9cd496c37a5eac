"""Site power: how long each site on battery has before it goes dark, and its recharge after."""

from .timetodark import (
    PLACEHOLDER_MINUTES,
    PowerSample,
    PowerTracker,
    TimeToDark,
    Trend,
    dispatch_list,
    estimate,
    fit_trend,
    vendor_verdict,
)

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
