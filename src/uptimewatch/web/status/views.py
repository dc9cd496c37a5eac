"""The province map and the site page as JSON: pure functions of the health snapshot, the
configuration (coordinates), the ledger's history, the recent samples and the time-to-dark
estimates, so they are tested without a daemon.

Words an operator reads are not made here: states, check names and methods go out as codes
(``down``, ``icmp.loss``, ``trends``) and the page translates them. Reasons are the health
model's own text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from ...config.models import Site
from ...ledger import Interval, SiteHistory
from ...model.checks import CheckState
from ...model.fields import (
    LINK_OPER_UP,
    LINK_RX_LEVEL,
    LINK_SNR,
    POWER_BATTERY_CHARGE,
    POWER_BATTERY_MINUTES,
    POWER_BATTERY_VOLTAGE,
    POWER_ON_BATTERY,
    POWER_SOURCE,
)
from ...model.health import DeviceStatus, HealthSnapshot, SiteState, SiteStatus
from ...model.history import Discharge, PingSeries
from ...model.observation import FieldValue
from ...model.outages import outages
from ...model.topology import UpstreamRef
from ...power import TimeToDark

__all__ = ["TIMELINE_S", "Say", "link_state", "map_view", "power_of", "site_page_view"]

#: Renders a reason (a translatable phrase of the health model, or a plain string) for the reader.
Say = Callable[[Any], str]

#: How far back the site page's timeline reaches.
TIMELINE_S: Final = 24 * 3600.0
ON_BATTERY_CHECK: Final = "power.on_battery"


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    return float(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _word(state: CheckState | SiteState) -> str:
    return state.value if isinstance(state, SiteState) else state.name.lower()


def power_of(site: SiteStatus, on_battery_since: float | None = None) -> dict[str, Any] | None:
    """The site's power plant as the pages need it; None without a power device.

    ``on_battery_since`` (from the time-to-dark tracker, which sees every reading) says since when;
    without it, the plant's own "seconds on battery", else when its on-battery check turned.
    """
    powers = [d for d in site.devices if d.role.value == "power"]
    if not powers:
        return None
    on_battery = any(d.fields.get(POWER_ON_BATTERY) is True for d in powers)
    chosen = next((d for d in powers if d.fields.get(POWER_ON_BATTERY) is True), powers[0])
    f: Mapping[str, FieldValue] = chosen.fields
    source = f.get(POWER_SOURCE)
    known = "power.on_battery" in f
    seconds = _num(f.get("power.on_battery_seconds"))
    since = on_battery_since
    if on_battery and since is None:
        check = chosen.check(ON_BATTERY_CHECK)
        snmp = chosen.probes.get("snmp")
        if seconds is not None and snmp is not None:
            since = snmp.at - seconds
        elif check is not None and check.hard_state is not CheckState.OK:
            since = check.since
    return {
        "device": chosen.device_id,
        "on_battery": on_battery if known or on_battery else None,
        "source": source if isinstance(source, str) else ("battery" if on_battery else None),
        "battery_minutes": _num(f.get(POWER_BATTERY_MINUTES)),
        "charge_percent": _num(f.get(POWER_BATTERY_CHARGE)),
        "voltage_volts": _num(f.get(POWER_BATTERY_VOLTAGE)),
        "on_battery_seconds": seconds,
        "on_battery_since": since if on_battery else None,
        "reachable": chosen.reachable,
    }


# -- the province map ----------------------------------------------------------------------------


def _device_failing(device: DeviceStatus | None) -> bool:
    if device is None:
        return False
    oper = device.check("link.oper")
    return device.reachable is False or (oper is not None and oper.hard_state is CheckState.CRITICAL)


def link_state(snap: HealthSnapshot, child: SiteStatus, ref: str) -> str:
    """How one upstream entry of ``child`` looks: ``up``, ``down`` (the hub or link failed),
    ``cut_off`` (the hub is itself cut off further up) or ``unknown``."""
    up = UpstreamRef.parse(ref)
    hub = snap.sites.get(up.site_id)
    if hub is None or hub.state is SiteState.UNKNOWN:
        return "unknown"
    if hub.state is SiteState.DOWN:
        return "down"
    if hub.state is SiteState.UNREACHABLE:
        return "cut_off"
    if up.device_id is not None and _device_failing(hub.device(up.device_id)):
        return "down"
    if ref in child.lost_uplinks:
        return "down"
    return "up"


def map_view(snap: HealthSnapshot, sites: Iterable[Site], say: Say = str) -> dict[str, Any]:
    """Every site with coordinates, the upstream lines between them and the current outages."""
    located = {s.id: s for s in sites if s.location is not None}
    has_children: set[str] = set()
    for status in snap.sites.values():
        has_children.update(UpstreamRef.parse(r).site_id for r in status.upstream)
    out_sites: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for sid, conf in located.items():
        found = snap.sites.get(sid)
        if found is None or conf.location is None:
            continue
        status = found
        power = power_of(status)
        out_sites.append(
            {
                "id": sid,
                "name": status.name,
                "district": status.district,
                "lat": conf.location.lat,
                "lon": conf.location.lon,
                "state": status.state.value,
                "reason": say(status.reason),
                "since": status.since,
                "priority": status.priority,
                "hub": sid in has_children,
                "on_battery": bool(power and power["on_battery"]),
                "cut_off_by": list(status.cut_off_by),
            }
        )
        for ref in status.upstream:
            parent = UpstreamRef.parse(ref).site_id
            if parent in located:
                lines.append({"from": parent, "to": sid, "via": ref, "state": link_state(snap, status, ref)})
    out_sites.sort(key=lambda s: s["id"])
    lines.sort(key=lambda line: (line["from"], line["to"], line["via"]))
    return {
        "generated_at": snap.generated_at,
        "sites": out_sites,
        "lines": lines,
        "unplaced": sorted(set(snap.sites) - located.keys()),
        "districts": [
            {"id": r.id, "name": r.name, "state": r.state.value} for r in snap.rollups_at("district")
        ],
        "outages": [
            {
                "root": o.root,
                "kind": o.kind,
                "name": o.name,
                "state": o.state,
                "reason": say(o.reason),
                "since": o.since,
                "sites": list(o.sites),
            }
            for o in outages(snap)
        ],
    }


# -- the site page -------------------------------------------------------------------------------


def _interval(i: Interval, say: Say, start: float | None = None) -> dict[str, Any]:
    return {
        "state": i.state,
        "reason": say(i.reason),
        "start": i.start if start is None else max(start, i.start),
        "end": i.end,
    }


def _open_since(intervals: Sequence[Interval]) -> float | None:
    last = intervals[-1] if intervals else None
    return last.start if last is not None and last.end is None else None


def _device(d: DeviceStatus, history: Sequence[Interval], say: Say) -> dict[str, Any]:
    return {
        "id": d.device_id,
        "name": d.name,
        "role": d.role.value,
        "address": d.address,
        "reachable": d.reachable,
        "state": _word(d.state),
        "reason": say(d.reason),
        "since": _open_since(history),
        "checks": [
            {
                "name": c.name,
                "state": _word(c.state),
                "hard_state": _word(c.hard_state),
                "hard": c.hard,
                "reason": say(c.reason),
                "since": c.since,
                "attempts": c.attempts,
            }
            for c in d.checks
        ],
        "probes": {
            name: {"at": p.at, "ok": p.ok, "error_kind": p.error_kind.value if p.error_kind else None}
            for name, p in d.probes.items()
        },
    }


def _links(site: SiteStatus) -> list[dict[str, Any]]:
    out = []
    for d in site.devices:
        f = d.fields
        rx, snr = _num(f.get(LINK_RX_LEVEL)), _num(f.get(LINK_SNR))
        if d.role.value != "link" and rx is None and snr is None:
            continue
        oper = f.get(LINK_OPER_UP)
        levels = {c.name: _word(c.hard_state) for c in d.checks if c.name.startswith("link.")}
        out.append(
            {
                "device": d.device_id,
                "name": d.name,
                "rx_level_dbm": rx,
                "tx_level_dbm": _num(f.get("link.tx_level_dbm")),
                "snr_db": snr,
                "oper_up": oper if isinstance(oper, bool) else None,
                "state": _word(d.state),
                "checks": levels,
            }
        )
    return out


def _ping(series: Sequence[PingSeries]) -> list[dict[str, Any]]:
    return [
        {
            "device": s.device_id,
            "points": [
                [at, None if rtt is None else round(rtt * 1000.0, 3), _round(loss, 4)]
                for at, rtt, loss in s.points
            ],
        }
        for s in series
    ]


def _discharges(found: Sequence[Discharge], cutoff: float | None) -> list[dict[str, Any]]:
    return [
        {
            "device": d.device_id,
            "started_at": d.started_at,
            "ended_at": d.ended_at,
            "cutoff_voltage": cutoff,
            "points": [[at, _round(c, 2), _round(v, 3)] for at, c, v in d.points],
        }
        for d in found
    ]


def site_page_view(
    snap: HealthSnapshot,
    site_id: str,
    *,
    now: float,
    config_site: Site | None = None,
    history: SiteHistory | None = None,
    estimate: TimeToDark | None = None,
    ping: Sequence[PingSeries] = (),
    discharges: Sequence[Discharge] = (),
    say: Say = str,
) -> dict[str, Any] | None:
    """Everything the site page shows; None for an unknown site."""
    site = snap.sites.get(site_id)
    if site is None:
        return None
    names = {(r.level, r.parent, r.id): r.name for r in snap.rollups}
    start = now - TIMELINE_S
    devices_history = history.devices if history is not None else {}
    downstream = [
        {"id": s.site_id, "name": s.name, "state": s.state.value, "via": ref}
        for s in snap.sites.values()
        for ref in s.upstream
        if UpstreamRef.parse(ref).site_id == site_id
    ]
    upstream = []
    for ref in site.upstream:
        up = UpstreamRef.parse(ref)
        hub = snap.sites.get(up.site_id)
        dev = hub.device(up.device_id) if hub is not None and up.device_id else None
        upstream.append(
            {
                "ref": ref,
                "site": up.site_id,
                "name": hub.name if hub is not None else up.site_id,
                "device_name": dev.name if dev is not None else up.device_id,
                "state": link_state(snap, site, ref),
                "site_state": hub.state.value if hub is not None else "unknown",
            }
        )
    power = power_of(site, estimate.on_battery_since if estimate is not None else None)
    if power is not None:
        power["time_to_dark"] = estimate.to_dict(now, say) if estimate is not None else None
        spells = history.battery if history is not None else {}
        power["spells"] = [
            _interval(i, say) | {"device": dev} for dev, items in sorted(spells.items()) for i in items
        ]
        power["spells"].sort(key=lambda i: i["start"])
    location = config_site.location if config_site is not None else None
    return {
        "generated_at": snap.generated_at,
        "id": site.site_id,
        "name": site.name,
        "district": site.district,
        "district_name": names.get(("district", None, site.district), site.district),
        "commune": site.commune,
        "commune_name": names.get(("commune", site.district, site.commune or ""), site.commune),
        "carrier": site.carrier,
        "carrier_name": names.get(("carrier", None, site.carrier), site.carrier),
        "priority": site.priority,
        "location": None if location is None else {"lat": location.lat, "lon": location.lon},
        "state": site.state.value,
        "reason": say(site.reason),
        "since": site.since,
        "rechecking": site.rechecking,
        "cut_off_by": list(site.cut_off_by),
        "upstream": upstream,
        "downstream": sorted(downstream, key=lambda s: s["name"]),
        "devices": [_device(d, devices_history.get(d.device_id, ()), say) for d in site.devices],
        "power": power,
        "links": _links(site),
        "timeline": {
            "start": start,
            "end": now,
            "spans": [_interval(i, say, start) for i in (history.states if history is not None else ())],
        },
        "charts": {
            "ping": _ping(ping),
            "discharges": _discharges(discharges, estimate.cutoff_voltage if estimate is not None else None),
        },
    }
