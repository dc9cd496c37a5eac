"""Rules: the health snapshot in, the conditions that hold now (:class:`Candidate`) out.

Built-in rules read the health model's judgements (hard states, so its hysteresis applies) and,
where a threshold is configured or a critical period sets one, the device's latest value. User
rules compare one field of every device in scope with a value.

A snapshot rebuilds only the sites that changed, and keeps the same ``SiteStatus`` object for the
others; the evaluator caches each site's verdict by that identity, so an evaluation costs
O(changed sites), not O(province).

Topology: a site cut off behind a failed hub or link (``unreachable``) raises nothing of its own,
neither while the outage lasts nor while it is re-checked after the recovery; the root cause raises
one ``UpstreamDown`` listing what it cut off, and a hub that is such a root raises no ``SiteDown``
besides. Sites whose verdict the health model still waits for (``confirming``,
``root_in_doubt``) are not judged yet. A site found down before its upstream was looked at
again (polls of a cycle finish in any order) is not judged until it has been: otherwise each child
of a failing hub would page as down for the few seconds before the hub's own result arrives.
``TimeToDarkSoon`` reads the time-to-dark estimates, handed in as plain data (:class:`DarkOutlook`)
next to the snapshot. ``MonitorOverloaded`` is about the daemon itself: it reads the event loop's
lag (:class:`MonitorView`), and while it holds the timeouts that would have raised site alerts are
not held against the devices (see :mod:`uptimewatch.looplag`).
"""

from __future__ import annotations

import logging
import operator
import string
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..config.alerting import BUILTIN_RULES, AlertingConfig, UserRule
from ..i18n import N_, Phrase, Text
from ..looplag import Overload
from ..model.checks import CheckState, role_text
from ..model.fields import ICMP_LOSS_RATIO, LINK_RX_LEVEL, LINK_SNR, POWER_BATTERY_MINUTES, POWER_ON_BATTERY
from ..model.health import DeviceStatus, HealthSnapshot, SiteState, SiteStatus
from ..model.observation import ErrorKind, FieldValue
from ..model.outages import Outage, outages
from ..model.topology import UpstreamRef
from ..power.timetodark import TimeToDark
from ..probing.registry import builtin
from .engine import Candidate, Evaluation, fingerprint
from .routing import Period

log = logging.getLogger(__name__)

#: (severity, for) of each built-in rule unless the configuration says otherwise.
BUILTIN_DEFAULTS: Final[dict[str, tuple[str, float]]] = {
    "SiteDown": ("critical", 0.0),
    "UpstreamDown": ("critical", 0.0),
    "DeviceDown": ("warning", 0.0),
    "OnBattery": ("warning", 0.0),
    "BatteryLow": ("critical", 0.0),
    "TimeToDarkSoon": ("critical", 0.0),
    "HighPacketLoss": ("warning", 0.0),
    "LinkRxLevelLow": ("warning", 0.0),
    "LinkSnrLow": ("warning", 0.0),
    "DeviceRebooted": ("info", 0.0),
    "SnmpAuthFailure": ("warning", 0.0),
    "MonitorOverloaded": ("warning", 0.0),
}
#: How long DeviceRebooted stays firing after the uptime went back.
REBOOT_HOLD: Final = 900.0
#: Once a site fired TimeToDarkSoon, its prediction must move this fraction beyond the horizon
#: before the condition ends: an estimate wobbling around the horizon would flap with every sample.
HORIZON_SLACK: Final = 0.1
#: Communes named in an UpstreamDown summary before "and N more"; the description lists them all.
SUMMARY_PLACES: Final = 4
#: Cut-off sites named in an UpstreamDown description before "and N more".
DESCRIPTION_SITES: Final = 50

_BAD: Final = (CheckState.WARNING, CheckState.CRITICAL)
_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Builtin:
    enabled: bool
    severity: str
    for_s: float
    threshold: float | None


@dataclass(frozen=True, slots=True)
class DarkOutlook:
    """What TimeToDarkSoon reads about one power plant: its estimate and its alert horizon."""

    estimate: TimeToDark
    horizon_s: float


class PowerView(Protocol):
    """The part of :class:`uptimewatch.power.PowerTracker` the rules read."""

    def sites(self) -> Mapping[str, TimeToDark]: ...

    def horizon(self, site_id: str, device_id: str) -> float: ...


class MonitorView(Protocol):
    """The part of :class:`uptimewatch.looplag.LoopLag` the rules read."""

    def overload(self) -> Overload | None: ...


def battery_outlook(power: PowerView) -> list[DarkOutlook]:
    """The estimates of every site on battery with its horizon: the rules' input, as plain data."""
    return [
        DarkOutlook(est, power.horizon(est.site_id, est.device_id))
        for est in power.sites().values()
        if est.status == "on_battery"
    ]


_METHOD_WORDS: Final[dict[str, str]] = {
    "vendor": N_("vendor figure"),
    "charge_trend": N_("charge trend"),
    "voltage_trend": N_("voltage trend"),
    "trends": N_("charge and voltage trends"),
    "elapsed": N_("charge used since mains failed"),
}


def dark_summary(site_name: str, est: TimeToDark, left_s: float) -> Text:
    """``Trạm Pà Cò: ~24 min to dark (voltage trend, vendor figure 999 distrusted)``."""
    word = _METHOD_WORDS.get(est.method)
    why: list[Phrase] = [Text(word) if word else est.method]
    vendor = est.vendor_minutes
    if vendor is not None and est.method != "vendor":
        msgid = (
            N_("vendor figure {vendor} overruled")
            if est.vendor_trusted
            else N_("vendor figure {vendor} distrusted")
        )
        why.append(Text(msgid, {"vendor": f"{vendor:g}"}))
    return Text(
        N_("{site}: ~{minutes} min to dark ({why:list})"),
        {"site": site_name, "minutes": round(left_s / 60.0), "why": why},
    )


#: the checks that say whether a device answers, of the shipped protocols (``Registry.reachability_checks()``)
SHIPPED_REACHABILITY: Final = builtin().reachability_checks()


def upstream_in_doubt(
    site: SiteStatus, snap: HealthSnapshot, reachability: Collection[str] = SHIPPED_REACHABILITY
) -> bool:
    """Whether a site found down may yet turn out cut off: one of its upstreams that still counts
    as up has not been polled since the site went down, or its latest reachability result failed
    while hysteresis still holds it up."""
    if not site.upstream or site.since is None:
        return False
    for text in site.upstream:
        ref = UpstreamRef.parse(text)
        up = snap.sites.get(ref.site_id)
        if up is None or up.state in (SiteState.DOWN, SiteState.UNREACHABLE):
            continue
        if ref.device_id is not None:
            link = up.device(ref.device_id)
            devices: tuple[DeviceStatus, ...] = (link,) if link is not None else ()
        else:
            devices = up.devices
        for dev in devices:
            if not dev.probes or max(p.at for p in dev.probes.values()) < site.since:
                return True
            for chk in dev.checks:
                if chk.name in reachability and chk.state in _BAD and chk.hard_state not in _BAD:
                    return True
    return False


def _listing(names: Sequence[str], limit: int) -> Phrase:
    if len(names) <= limit:
        return ", ".join(names)
    return Text(N_("{names} and {n} more"), {"names": ", ".join(names[:limit]), "n": len(names) - limit})


def _collate(text: str) -> str:
    """Sort key that files Vietnamese names where a reader looks for them (Đà Bắc among the D)."""
    plain = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(ch for ch in plain if not unicodedata.combining(ch)).casefold()


def upstream_texts(outage: Outage, site_names: Mapping[str, str]) -> tuple[Text, Text]:
    """(summary, description) of one root cause:
    ``Trạm HUB Mai Châu down: 7 sites cut off in Xã Vạn Mai, Xã Pà Cò``.

    Communes with the most sites cut off come first, then by name; sites by name: the snapshot's
    order is no order a reader would recognise, and the text must not change between evaluations.
    """
    n = len(outage.sites)
    communes = sorted(outage.communes, key=lambda c: (-c.sites, _collate(c.name)))
    places = [c.name for c in communes] or sorted(outage.districts, key=_collate)
    params: dict[str, Any] = {"root": outage.name, "n": n}
    if places:
        params["places"] = _listing(places, SUMMARY_PLACES)
        msgid = (
            N_("{root} down: {n} site cut off in {places}")
            if n == 1
            else N_("{root} down: {n} sites cut off in {places}")
        )
    else:
        msgid = N_("{root} down: {n} site cut off") if n == 1 else N_("{root} down: {n} sites cut off")
    summary = Text(msgid, params)
    names = sorted((site_names.get(sid, sid) for sid in outage.sites), key=_collate)
    parts: list[Phrase] = [Text(N_("Cut off: {sites}."), {"sites": _listing(names, DESCRIPTION_SITES)})]
    if communes:
        listed = ", ".join(f"{c.name} ({c.sites})" for c in communes)
        parts.append(Text(N_("Communes: {communes}."), {"communes": listed}))
    if outage.districts:
        districts = ", ".join(sorted(outage.districts, key=_collate))
        parts.append(Text(N_("Districts: {districts}."), {"districts": districts}))
    if outage.reason:
        parts.append(Text(N_("Cause: {reason}."), {"reason": outage.reason}))
    return summary, Text("{parts:sp}", {"parts": parts})


class _Safe(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, values: Mapping[str, Any]) -> str:
    """``str.format`` that leaves unknown placeholders as written instead of failing."""
    try:
        return string.Formatter().vformat(template, (), _Safe(values))
    except (ValueError, IndexError, AttributeError, TypeError):
        return template


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    return float(value)


_CONFIDENCE: Final[dict[str, str]] = {
    "high": N_("high"),
    "medium": N_("medium"),
    "low": N_("low"),
    "none": N_("none"),
}


#: the thresholds a critical period can set: battery minutes, loss ratio, receive level, SNR
Overrides = tuple[float | None, float | None, float | None, float | None]
_NO_OVERRIDES: Final[Overrides] = (None, None, None, None)
#: the field each of those thresholds is compared with, the check judged without one, and its
#: bit in a site's cache entry
_PERIOD_READS: Final = (
    (1, POWER_BATTERY_MINUTES, "power.battery_minutes"),
    (2, ICMP_LOSS_RATIO, "icmp.loss"),
    (4, LINK_RX_LEVEL, "link.rx_level"),
    (8, LINK_SNR, "link.snr"),
)
_BITS: Final = tuple(bit for bit, _field, _check in _PERIOD_READS)


def _overrides(period: Period | None) -> Overrides:
    if period is None:
        return _NO_OVERRIDES
    return (period.battery_minutes, period.loss_ratio, period.rx_level_dbm, period.snr_db)


def _period_reads(site: SiteStatus) -> int:
    """The bits of the period thresholds some device of ``site`` has a field or a check for: the
    only ones that can change its verdict."""
    mask = 0
    for dev in site.devices:
        fields = dev.fields
        for bit, name, check in _PERIOD_READS:
            if name in fields or dev.check(check) is not None:
                mask |= bit
    return mask


def _of_site(site_name: str, reason: Phrase) -> Text:
    return Text(N_("{site}: {reason}"), {"site": site_name, "reason": reason})


def _fmt(value: FieldValue) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Evaluator:
    """Turns snapshots into :class:`Evaluation` events. Holds only caches and reboot memory."""

    def __init__(
        self, cfg: AlertingConfig, province: str, *, reachability: Collection[str] = SHIPPED_REACHABILITY
    ) -> None:
        """``reachability``: the daemon's registry's ``reachability_checks()``."""
        self.province = province
        self._reachability = reachability
        b = cfg.builtins
        self.builtins: dict[str, Builtin] = {}
        for name in BUILTIN_RULES:
            setting = getattr(b, name)
            severity, for_s = BUILTIN_DEFAULTS[name]
            self.builtins[name] = Builtin(
                setting.enabled,
                setting.severity or severity,
                setting.for_ if setting.for_ is not None else for_s,
                setting.threshold,
            )
        self.rules: tuple[UserRule, ...] = tuple(cfg.rules)
        # per site: (the status judged, what was found, judged at all, the period thresholds it read)
        self._cache: dict[str, tuple[SiteStatus, list[Candidate], bool, int]] = {}
        self._cache_overrides: Overrides = _NO_OVERRIDES
        self._uptime: dict[tuple[str, str], float] = {}
        self._rebooted: dict[tuple[str, str], tuple[float, Candidate]] = {}
        #: where TimeToDarkSoon reads the estimates when :meth:`evaluate` is not handed them
        self.power: PowerView | None = None
        #: where MonitorOverloaded reads the daemon's event-loop lag
        self.monitor: MonitorView | None = None
        self._dark_soon: frozenset[str] = frozenset()
        self._outage_key: tuple[SiteStatus | None, ...] = ()
        self._outage_found: list[Candidate] = []

    def adopt(self, old: Evaluator) -> None:
        """Keep what a reload must not forget: last uptimes, recent reboots, the power source and
        which sites are already predicted dark soon."""
        self._uptime = old._uptime
        self._rebooted = old._rebooted
        self.power = old.power
        self.monitor = old.monitor
        self._dark_soon = old._dark_soon
        if (self.province, self.builtins, self.rules) == (old.province, old.builtins, old.rules):
            # the same rules judge an unchanged site's status object the same way: after a
            # reload only the sites that changed are judged again
            self._cache = old._cache
            self._cache_overrides = old._cache_overrides

    def rebase(self, step: float) -> None:
        """The wall clock stepped by ``step`` seconds: recent reboots keep the hold they had left."""
        self._rebooted = {key: (at + step, cand) for key, (at, cand) in self._rebooted.items()}

    def evaluate(
        self,
        snap: HealthSnapshot,
        now: float,
        period: Period | None = None,
        *,
        batteries: Iterable[DarkOutlook] | None = None,
    ) -> Evaluation:
        """The conditions that hold at ``now``. ``batteries``: the time-to-dark estimates of the
        sites on battery (default: read from :attr:`power`, if set)."""
        overrides = _overrides(period)
        if overrides != self._cache_overrides:
            # a period boundary: judge again only the sites that read a threshold it moves
            moved = sum(
                bit for bit, a, b in zip(_BITS, overrides, self._cache_overrides, strict=True) if a != b
            )
            self._cache = {k: v for k, v in self._cache.items() if not v[3] & moved}
            self._cache_overrides = overrides
        candidates: dict[str, Candidate] = {}
        unjudged: set[str] = set()
        cut_off: list[SiteStatus] = []
        cache = self._cache
        for site_id, site in snap.sites.items():
            if site.state is SiteState.UNREACHABLE and not site.rechecking:
                cut_off.append(site)
            hit = cache.get(site_id)
            if hit is not None and hit[0] is site:
                found, judged = hit[1], hit[2]
            else:
                # a verdict the health model still waits for (the upstream of a site found down,
                # the sites behind a site gone down) is no verdict yet: the alerts keep their state
                judged = (
                    site.state is not SiteState.UNKNOWN
                    and not site.confirming
                    and not site.root_in_doubt
                    and all(d.probes for d in site.devices)
                )
                if (
                    judged
                    and site.state is SiteState.DOWN
                    and upstream_in_doubt(site, snap, self._reachability)
                ):
                    unjudged.add(site_id)  # not cached: asked again once the upstream has answered
                    continue
                found = self._site(site, now, period) if judged else []
                cache[site_id] = (site, found, judged, _period_reads(site))
            if not judged:
                unjudged.add(site_id)
            for c in found:
                candidates[c.fingerprint] = c
        for site_id in [s for s in cache if s not in snap.sites]:
            del cache[site_id]
        rebooted = self.builtins["DeviceRebooted"]
        for key, (at, cand) in list(self._rebooted.items()):
            if now - at >= REBOOT_HOLD or key[0] not in snap.sites or not rebooted.enabled:
                del self._rebooted[key]
            elif snap.sites[key[0]].state is not SiteState.UNREACHABLE:
                candidates[cand.fingerprint] = cand
        if self.builtins["UpstreamDown"].enabled:
            for c in self._upstream_down(snap, cut_off):
                candidates[c.fingerprint] = c
                if c.labels.get("kind") == "site":
                    # one root-cause alert: it says the hub is down and lists what it cut off
                    candidates.pop(fingerprint("SiteDown", {"site": c.labels["site"]}), None)
        if self.builtins["TimeToDarkSoon"].enabled:
            if batteries is None:
                batteries = battery_outlook(self.power) if self.power is not None else ()
            for c in self._time_to_dark(snap, batteries, now):
                candidates[c.fingerprint] = c
        else:
            self._dark_soon = frozenset()
        monitor = self.monitor if self.builtins["MonitorOverloaded"].enabled else None
        if monitor is not None and (overload := monitor.overload()) is not None:
            c = self._overloaded(overload)
            candidates[c.fingerprint] = c
        return Evaluation(candidates, frozenset(unjudged))

    def _overloaded(self, overload: Overload) -> Candidate:
        b = self.builtins["MonitorOverloaded"]
        labels = {"province": self.province, "alertname": "MonitorOverloaded", "severity": b.severity}
        lag = round(overload.lag, 1)
        summary = Text(N_("uptimewatch itself is overloaded: its event loop ran {lag} s late"), {"lag": lag})
        description = Text(
            N_(
                "Polls that timed out meanwhile are unknown, not held against the devices: a reply"
                " may have waited for the daemon. Look at the daemon's CPU, its host and the API"
                " clients before the network."
            )
        )
        return Candidate(
            fingerprint("MonitorOverloaded", labels),
            "MonitorOverloaded",
            b.severity,
            labels,
            summary,
            b.for_s,
            description,
            lag,
        )

    # -- topology and power: across sites -------------------------------------------------------

    def _upstream_down(self, snap: HealthSnapshot, cut_off: list[SiteStatus]) -> list[Candidate]:
        """One alert per root cause. :func:`outages` walks the province, so its answer is kept
        while neither the cut-off sites nor their roots changed (same status objects)."""
        if not cut_off:
            self._outage_key, self._outage_found = (), []
            return []
        roots = sorted({UpstreamRef.parse(r).site_id for s in cut_off for r in s.cut_off_by})
        key = (*cut_off, None, *(snap.sites.get(r) for r in roots))
        old = self._outage_key
        if len(old) == len(key) and all(a is b for a, b in zip(old, key, strict=True)):
            return self._outage_found
        found: list[Candidate] = []
        names = {s.site_id: s.name for s in cut_off}
        settled = True
        for outage in outages(snap):
            ref = UpstreamRef.parse(outage.root)
            root = snap.sites.get(ref.site_id)
            if root is None:
                continue
            if root.state is SiteState.DOWN and upstream_in_doubt(root, snap, self._reachability):
                # it may turn out cut off itself, behind the real root cause; its doubt rests on
                # sites outside the key, so this answer must not be kept
                settled = False
                continue
            dev = root.device(ref.device_id) if ref.device_id is not None else None
            summary, description = upstream_texts(outage, names)
            found.append(
                self._cand(
                    "UpstreamDown",
                    root,
                    dev,
                    summary,
                    len(outage.sites),
                    extra={"kind": outage.kind},
                    description=description,
                )
            )
        self._outage_key, self._outage_found = (key if settled else ()), found
        return found

    def _time_to_dark(
        self, snap: HealthSnapshot, batteries: Iterable[DarkOutlook], now: float
    ) -> list[Candidate]:
        found: list[Candidate] = []
        soon: set[str] = set()
        ranked: list[tuple[float, DarkOutlook]] = []
        for item in batteries:
            left = item.estimate.remaining(now)
            if item.estimate.status == "on_battery" and left is not None and item.horizon_s > 0:
                ranked.append((left, item))
        ranked.sort(key=lambda pair: pair[0])
        for left, item in ranked:
            est = item.estimate
            if est.site_id in soon:
                continue  # a second plant at the same site: the sooner one speaks for it
            slack = 1.0 + HORIZON_SLACK if est.site_id in self._dark_soon else 1.0
            if left > item.horizon_s * slack:
                continue
            site = snap.sites.get(est.site_id)
            if site is None or site.state is SiteState.UNREACHABLE:
                continue
            plant = site.device(est.device_id)
            if plant is not None and plant.reachable is False:
                continue  # its figures are stale; DeviceDown or SiteDown speaks now
            soon.add(est.site_id)
            description = Text(
                N_("{reason} (confidence {confidence}; power plant {device}; alert horizon {minutes} min)"),
                {
                    "reason": est.reason,
                    "confidence": Text(_CONFIDENCE.get(est.confidence, est.confidence)),
                    "device": est.device_id,
                    "minutes": round(item.horizon_s / 60.0),
                },
            )
            found.append(
                self._cand(
                    "TimeToDarkSoon",
                    site,
                    None,
                    dark_summary(site.name, est, left),
                    round(left / 60.0, 1),
                    description=description,
                )
            )
        self._dark_soon = frozenset(soon)
        return found

    # -- one site ------------------------------------------------------------------------------

    def _labels(self, site: SiteStatus, dev: DeviceStatus | None) -> dict[str, str]:
        labels = {
            "province": self.province,
            "district": site.district,
            "carrier": site.carrier,
            "site": site.site_id,
            "priority": site.priority,
        }
        if site.commune:
            labels["commune"] = site.commune
        if dev is not None:
            labels["device"] = dev.device_id
            labels["role"] = dev.role.value
        return labels

    def _cand(
        self,
        name: str,
        site: SiteStatus,
        dev: DeviceStatus | None,
        summary: Phrase,
        value: FieldValue = None,
        *,
        rule: Builtin | None = None,
        extra: Mapping[str, str] | None = None,
        description: Phrase = "",
    ) -> Candidate:
        b = rule or self.builtins[name]
        labels = self._labels(site, dev)
        if extra:
            labels.update(extra)
        labels["alertname"] = name
        labels["severity"] = b.severity
        return Candidate(
            fingerprint(name, labels), name, b.severity, labels, summary, b.for_s, description, value
        )

    def _site(self, site: SiteStatus, now: float, period: Period | None) -> list[Candidate]:
        out: list[Candidate] = []
        on = self.builtins
        if site.state is SiteState.UNREACHABLE:
            # cut off, or being re-checked after its upstream came back: what its devices said
            # last is about the outage, not about the site; the root cause has its UpstreamDown
            for rule in self.rules:
                if rule.field == "site.state":
                    self._user_rule(rule, site, out)
            return out
        if site.state is SiteState.DOWN and on["SiteDown"].enabled:
            summary = Text(N_("{site} down: {reason}"), {"site": site.name, "reason": site.reason})
            out.append(self._cand("SiteDown", site, None, summary))
        for dev in site.devices:
            self._device(site, dev, now, period, out)
        for rule in self.rules:
            self._user_rule(rule, site, out)
        return out

    def _device(
        self, site: SiteStatus, dev: DeviceStatus, now: float, period: Period | None, out: list[Candidate]
    ) -> None:
        on = self.builtins
        who = Text(
            N_("{site}: {role} {device}"),
            {"site": site.name, "role": role_text(dev.role.value), "device": dev.name},
        )
        fields = dev.fields
        uptime = _num(fields.get("device.uptime_seconds"))
        key = (site.site_id, dev.device_id)
        if uptime is not None:
            before = self._uptime.get(key)
            self._uptime[key] = uptime
            if before is not None and uptime < before and on["DeviceRebooted"].enabled:
                summary = Text(
                    N_("{who} rebooted (up {minutes} min)"), {"who": who, "minutes": round(uptime / 60)}
                )
                cand = self._cand("DeviceRebooted", site, dev, summary, uptime)
                self._rebooted[key] = (now, cand)
        if dev.reachable is False:
            if site.state is not SiteState.DOWN and on["DeviceDown"].enabled:
                summary = Text(N_("{who} does not answer: {reason}"), {"who": who, "reason": dev.reason})
                out.append(self._cand("DeviceDown", site, dev, summary))
            return  # its last known values are stale: judge nothing else

        snmp = dev.probes.get("snmp")
        if snmp is not None and snmp.error_kind is ErrorKind.AUTH and on["SnmpAuthFailure"].enabled:
            summary = Text(N_("{who} rejects our SNMP credentials"), {"who": who})
            out.append(self._cand("SnmpAuthFailure", site, dev, summary))

        chk = dev.check("power.on_battery")
        if chk is not None and chk.hard_state in _BAD and on["OnBattery"].enabled:
            out.append(self._cand("OnBattery", site, dev, _of_site(site.name, chk.reason)))

        self._threshold_rule(
            "BatteryLow",
            site,
            dev,
            out,
            check="power.battery_minutes",
            field="power.battery_minutes_remaining",
            override=period.battery_minutes if period else None,
            below=True,
            bad=(CheckState.CRITICAL,),
            text=lambda v: Text(
                N_("{site}: battery ~{minutes} min left"), {"site": site.name, "minutes": round(v)}
            ),
            applies=lambda: fields.get(POWER_ON_BATTERY) is not False,
        )
        loss = _num(fields.get(ICMP_LOSS_RATIO))
        icmp = dev.probes.get("icmp")
        if icmp is not None and icmp.error_kind is None and loss is not None and loss < 1.0:
            self._threshold_rule(
                "HighPacketLoss",
                site,
                dev,
                out,
                check="icmp.loss",
                field="icmp.loss_ratio",
                override=period.loss_ratio if period else None,
                below=False,
                bad=_BAD,
                text=lambda v: Text(N_("{who}: packet loss {loss:pct}"), {"who": who, "loss": round(v, 2)}),
            )
        self._threshold_rule(
            "LinkRxLevelLow",
            site,
            dev,
            out,
            check="link.rx_level",
            field="link.rx_level_dbm",
            override=period.rx_level_dbm if period else None,
            below=True,
            bad=_BAD,
            text=lambda v: Text(N_("{who}: receive level {dbm} dBm"), {"who": who, "dbm": round(v)}),
        )
        self._threshold_rule(
            "LinkSnrLow",
            site,
            dev,
            out,
            check="link.snr",
            field="link.snr_db",
            override=period.snr_db if period else None,
            below=True,
            bad=_BAD,
            text=lambda v: Text(N_("{who}: SNR {db} dB"), {"who": who, "db": round(v)}),
        )

    def _threshold_rule(
        self,
        name: str,
        site: SiteStatus,
        dev: DeviceStatus,
        out: list[Candidate],
        *,
        check: str,
        field: str,
        override: float | None,
        below: bool,
        bad: tuple[CheckState, ...],
        text: Callable[[float], Phrase],
        applies: Callable[[], bool] = lambda: True,
    ) -> None:
        rule = self.builtins[name]
        if not rule.enabled:
            return
        threshold = override if override is not None else rule.threshold
        if threshold is not None:
            value = _num(dev.fields.get(field))
            if value is None or not applies():
                return
            if (value < threshold) if below else (value >= threshold):
                out.append(self._cand(name, site, dev, text(value), value))
            return
        chk = dev.check(check)
        if chk is not None and chk.hard_state in bad:
            value = _num(chk.value)
            summary = text(value) if value is not None else _of_site(site.name, chk.reason)
            out.append(self._cand(name, site, dev, summary, chk.value))

    def _user_rule(self, rule: UserRule, site: SiteStatus, out: list[Candidate]) -> None:
        scope = rule.scope
        if (
            (scope.districts and site.district not in scope.districts)
            or (scope.carriers and site.carrier not in scope.carriers)
            or (scope.priorities and site.priority not in scope.priorities)
            or (scope.sites and site.site_id not in scope.sites)
        ):
            return
        setting = Builtin(True, rule.severity, rule.for_, None)
        compare = _OPS[rule.op]
        for dev in site.devices:
            if scope.roles and dev.role.value not in scope.roles:
                continue
            value = _field(rule.field, site, dev)
            if value is None:
                continue
            if dev.reachable is False and rule.field not in ("device.reachable", "site.state"):
                continue
            try:
                if isinstance(rule.value, float):
                    num = _num(value)
                    if num is None or not compare(num, rule.value):
                        continue
                elif isinstance(rule.value, bool):
                    if not isinstance(value, bool) or not compare(value, rule.value):
                        continue
                elif not compare(str(value), rule.value):
                    continue
            except TypeError:
                continue
            values = {
                "site": site.site_id,
                "site_name": site.name,
                "device": dev.device_id,
                "device_name": dev.name,
                "district": site.district,
                "carrier": site.carrier,
                "field": rule.field,
                "value": _fmt(value),
                "threshold": _fmt(rule.value),
            }
            tpl = rule.annotations.summary or "{site_name}: {device_name} {field} = {value}"
            out.append(
                self._cand(
                    rule.name,
                    site,
                    dev,
                    render(tpl, values),
                    value,
                    rule=setting,
                    extra=rule.labels,
                    description=render(rule.annotations.description, values),
                )
            )


def _field(name: str, site: SiteStatus, dev: DeviceStatus) -> FieldValue:
    if name == "device.reachable":
        return dev.reachable
    if name == "device.state":
        return dev.state.name.lower()
    if name == "site.state":
        return site.state.value
    return dev.fields.get(name)
