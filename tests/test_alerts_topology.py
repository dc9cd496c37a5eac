"""UpstreamDown and TimeToDarkSoon on replayed timelines: observations go through the real health
model (and the real time-to-dark tracker), the rules judge its snapshots, and the pure engine
decides the notices, so each test checks what an operator would actually receive."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.netns import NetnsHost
from tests.test_health import MINUTE, T0, dev, make_config, ping, site, snmp
from tests.test_topology import ALL, EVERYTHING_BEHIND, HUB_DOWN
from tests.test_topology import make as make_topology
from tests.test_topology import poll as poll_topology
from tests.test_topology_e2e import FAST as E2E_TIMING
from uptimewatch.alerts.engine import EngineState, Evaluation, step
from uptimewatch.alerts.routing import Policy
from uptimewatch.alerts.rules import DarkOutlook, Evaluator, battery_outlook, dark_summary
from uptimewatch.app import run_daemon
from uptimewatch.config.alerting import AlertingConfig
from uptimewatch.config.resolve import resolve_all
from uptimewatch.model.health import HealthModel, SiteState
from uptimewatch.model.observation import FieldValue
from uptimewatch.notify.types import Notification
from uptimewatch.power import PowerTracker, TimeToDark

ALERTING: dict[str, Any] = {"group_wait": 0, "group_interval": 0, "default_receiver": "noc"}


class Replay:
    """Evaluator plus engine, stepped at injected times; keeps every notice handed out."""

    def __init__(self, **alerting: Any) -> None:
        cfg = AlertingConfig.model_validate({**ALERTING, **alerting})
        self.evaluator = Evaluator(cfg, "hb")
        self.state = EngineState(Policy.from_config(cfg, province="hb"))
        self.sent: list[Notification] = []

    def run(self, model: HealthModel, now: float, **kwargs: Any) -> Evaluation:
        ev = self.evaluator.evaluate(model.snapshot(), now, **kwargs)
        self.state, notes = step(self.state, ev, now)
        self.sent += notes
        return ev

    def about(self, sites: Iterable[str]) -> list[tuple[str, str, str]]:
        """(kind, alert name, site) of every notice that mentions one of ``sites``."""
        wanted = set(sites)
        return [
            (n.kind, a.name, a.labels["site"])
            for n in self.sent
            for a in n.alerts
            if a.labels["site"] in wanted
        ]

    def notices(self, name: str) -> list[tuple[str, Notification]]:
        return [(n.kind, n) for n in self.sent if any(a.name == name for a in n.alerts)]


# -- a hub with three sites behind it --------------------------------------------------------------

CHILDREN = ("k1", "k2", "k3")
STAR = [
    site("hub", "d1", "c1", "vnpt", [dev("rtr", "router", 1)], name="Trạm HUB Mai Châu"),
    site(
        "k1",
        "d1",
        "c1",
        "vnpt",
        [dev("bts", "bts", 2), dev("pwr", "power", 3)],
        upstream="hub",
        name="BTS Vạn Mai",
    ),
    site(
        "k2",
        "d1",
        "c2",
        "vnpt",
        [dev("bts", "bts", 4), dev("lnk", "link", 5)],
        upstream="hub",
        name="BTS Pà Cò",
    ),
    site(
        "k3",
        "d2",
        "c3",
        "viettel",
        [dev("bts", "bts", 6), dev("lnk", "link", 7)],
        upstream="hub",
        name="BTS Tú Lý",
    ),
]
STAR_DEVICES = [
    ("hub", "rtr"),
    ("k1", "bts"),
    ("k1", "pwr"),
    ("k2", "bts"),
    ("k2", "lnk"),
    ("k3", "bts"),
    ("k3", "lnk"),
]


def star(hard_after: int = 1) -> HealthModel:
    config = make_config(STAR, defaults={"hard_after": hard_after})
    return HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)


def ping_all(
    model: HealthModel, at: float, devices: Iterable[tuple[str, str]], loss: Mapping[tuple[str, str], float]
) -> None:
    for key in devices:
        model.ingest(ping(*key, at, loss=loss.get(key, 0.0)))


def test_hub_down_gives_one_root_cause_alert_and_nothing_from_the_sites_behind_it() -> None:
    model, replay = star(), Replay()
    at = T0
    ping_all(model, at, STAR_DEVICES, {})
    replay.run(model, at)
    assert replay.sent == []

    # the hub and everything behind it go silent; k3's radio still answers, badly (its own path)
    outage = dict.fromkeys(STAR_DEVICES, 1.0) | {("k3", "lnk"): 0.4}
    for _ in range(3):
        at += MINUTE
        ping_all(model, at, STAR_DEVICES, outage)
        replay.run(model, at)
    snap = model.snapshot()
    assert {sid: snap.sites[sid].state for sid in CHILDREN} == dict.fromkeys(CHILDREN, SiteState.UNREACHABLE)

    ups = replay.notices("UpstreamDown")
    assert [kind for kind, _ in ups] == ["firing"]
    [alert] = [a for a in ups[0][1].alerts if a.name == "UpstreamDown"]
    assert str(alert.summary) == "Trạm HUB Mai Châu down: 3 sites cut off in Pà Cò, Tú Lý, Vạn Mai"
    assert str(alert.description).startswith("Cut off: BTS Pà Cò, BTS Tú Lý, BTS Vạn Mai.")
    assert "Communes: Pà Cò (1), Tú Lý (1), Vạn Mai (1)." in str(alert.description)
    assert "Cause: router: no reply to ping" in str(alert.description)
    assert alert.severity == "critical"
    assert {k: alert.labels[k] for k in ("site", "district", "carrier", "kind", "alertname")} == {
        "site": "hub",
        "district": "d1",
        "carrier": "vnpt",
        "kind": "site",
        "alertname": "UpstreamDown",
    }
    assert "device" not in alert.labels
    # nothing about the children: no SiteDown, DeviceDown or HighPacketLoss (k3's radio loses 40%)
    assert replay.about(CHILDREN) == []
    # and one alert for the hub: the root-cause alert says it is down; no SiteDown besides
    firing = {(a.name, a.labels["site"]) for a in replay.state.alerts.values() if a.state == "firing"}
    assert firing == {("UpstreamDown", "hub")}
    assert [a.name for n in replay.sent for a in n.alerts] == ["UpstreamDown"]

    # the hub comes back: the children are re-checked before they are believed
    at += MINUTE
    ping_all(model, at, [("hub", "rtr")], {})
    assert sorted(model.take_rechecks()) == list(CHILDREN)
    replay.run(model, at)
    snap = model.snapshot()
    assert all(
        snap.sites[sid].state is SiteState.UNREACHABLE and snap.sites[sid].rechecking for sid in CHILDREN
    )
    assert [kind for kind, _ in replay.notices("UpstreamDown")] == ["firing", "resolved"]
    assert replay.about(CHILDREN) == []
    # evaluations inside the re-check window still say nothing about them
    replay.run(model, at + 5)
    assert replay.about(CHILDREN) == []

    # the fresh polls: k1 and k2 answer, k3's base station is really dead: now that is news
    at += 10
    ping_all(model, at, STAR_DEVICES[1:], {("k3", "bts"): 1.0})
    replay.run(model, at)
    # believed once the hub, polled after k3 went down, still answers
    k3 = model.snapshot().sites["k3"]
    assert (k3.state, k3.confirming) == (SiteState.UNREACHABLE, True)
    assert replay.about(CHILDREN) == []
    ping_all(model, at + 1, [("hub", "rtr")], {})
    replay.run(model, at + 1)
    assert model.snapshot().sites["k3"].state is SiteState.DOWN
    assert replay.about(CHILDREN) == [("firing", "SiteDown", "k3")]


def test_children_found_down_before_the_hub_answered_again_wait_for_it() -> None:
    """Polls of one cycle finish in any order, and hysteresis makes the hub's failure count only
    after ``hard_after`` results: until the hub has been seen again, a silent child is not down
    (nor news), and the hub is re-polled at once."""

    def children_hard_silent() -> tuple[HealthModel, Replay, float]:
        model, replay = star(hard_after=2), Replay()
        at = T0
        for _ in range(2):
            ping_all(model, at, STAR_DEVICES, {})
            at += MINUTE
        model.take_polls()
        for _ in range(2):
            ping_all(model, at, STAR_DEVICES[1:], dict.fromkeys(STAR_DEVICES, 1.0))
            replay.run(model, at)
            at += MINUTE
        at -= MINUTE
        snap = model.snapshot()
        for sid in CHILDREN:  # the hub still counts as up, and was last polled before they failed
            assert (snap.sites[sid].state, snap.sites[sid].confirming) == (SiteState.UP, True)
        # the hub, and each site's other devices (silent too)
        assert set(model.take_polls()) == {("hub", "rtr"), ("k1", "pwr"), ("k2", "lnk"), ("k3", "lnk")}
        assert replay.about(CHILDREN) == []
        return model, replay, at

    model, replay, at = children_hard_silent()
    model.ingest(ping("hub", "rtr", at + 5, loss=1.0))  # the hub's first silent result: soft
    ev = replay.run(model, at + 5)
    assert ev.unjudged >= set(CHILDREN)
    assert replay.sent == []
    changes = model.ingest(ping("hub", "rtr", at + 65, loss=1.0))  # hard: the children are cut off
    replay.run(model, at + 65)
    moved = {c.site_id: (c.old, c.new) for c in changes if c.kind == "site"}
    assert moved == {"hub": (SiteState.UP, SiteState.DOWN)} | dict.fromkeys(
        CHILDREN, (SiteState.UP, SiteState.UNREACHABLE)
    )
    assert sorted((n.kind, a.name, a.labels["site"]) for n in replay.sent for a in n.alerts) == [
        ("firing", "UpstreamDown", "hub"),
    ]
    assert replay.about(CHILDREN) == []

    # the same, but the hub answers: the children really are down, and each says so
    model, replay, at = children_hard_silent()
    model.ingest(ping("hub", "rtr", at + 5))
    replay.run(model, at + 5)
    assert {sid: s.state for sid, s in model.snapshot().sites.items() if sid in CHILDREN} == dict.fromkeys(
        CHILDREN, SiteState.DOWN
    )
    assert sorted(replay.about(CHILDREN)) == [("firing", "SiteDown", sid) for sid in CHILDREN]


# -- two levels, and a failed link -----------------------------------------------------------------


def test_two_levels_one_alert_for_the_top_root_then_the_next_level_after_recovery() -> None:
    model, replay = make_topology(), Replay()
    poll_topology(model, T0)
    poll_topology(model, T0 + MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    ev = replay.run(model, T0 + MINUTE)
    behind = ("agg", "leaf1", "leaf2", "twin", "far")
    up = [c for c in ev.candidates.values() if c.name == "UpstreamDown"]
    # agg is cut off itself, so it is no root cause: the hub is the only one, five sites behind it
    assert [(c.labels["site"], c.value) for c in up] == [("hub", 5)]
    assert str(up[0].summary) == "Trạm HUB Mai Châu down: 5 sites cut off in Pà Cò, Tú Lý, Vạn Mai"
    # most sites first, then by name; Đà Bắc files among the D, not after Z
    described = str(up[0].description)
    assert "Communes: Pà Cò (2), Tú Lý (2), Vạn Mai (1). Districts: Đà Bắc, Mai Châu." in described
    assert replay.about(behind) == []

    # the hub comes back, agg's router does not: once re-checked, agg is down and is the new root
    at = T0 + 2 * MINUTE
    still_down = {("agg", "rtr"), ("leaf1", "bts"), ("leaf2", "bts")}
    for sid, did in ALL:
        if sid == "hub":
            model.ingest(ping(sid, did, at, loss=0.0))
            if did == "mw1":
                model.ingest(snmp(sid, did, at + 0.1, {"link.oper_up": True}))
    replay.run(model, at)
    assert replay.about(behind) == []
    assert [k for k, _ in replay.notices("UpstreamDown")] == ["firing", "resolved"]
    poll_topology(model, at + 10, still_down)
    poll_topology(model, at + 20, still_down)  # the leaves' re-check follows agg's
    replay.run(model, at + 20)
    snap = model.snapshot()
    assert snap.sites["agg"].state is SiteState.DOWN
    assert (snap.sites["leaf1"].state, snap.sites["leaf1"].rechecking) == (SiteState.UNREACHABLE, False)
    assert sorted(replay.about(behind)) == [("firing", "UpstreamDown", "agg")]
    [(_, note)] = [(k, n) for k, n in replay.notices("UpstreamDown") if k == "firing"][1:]
    [alert] = [a for a in note.alerts if a.name == "UpstreamDown"]
    assert str(alert.summary) == "Trạm gom Vạn Mai down: 2 sites cut off in Pà Cò"
    assert "Cut off: BTS Pà Cò 01, BTS Pà Cò 02." in str(alert.description)


def test_a_root_found_down_before_its_own_upstream_answered_fires_once_that_answer_comes() -> None:
    model, replay = make_topology(), Replay()
    poll_topology(model, T0)
    model.take_polls()
    at = T0 + MINUTE
    for key in (("agg", "rtr"), ("leaf1", "bts"), ("leaf2", "bts")):
        model.ingest(ping(*key, at, loss=1.0))
    ev = replay.run(model, at)
    # agg may yet turn out cut off behind the hub, which was last polled before agg went silent:
    # it is not down yet, the hub is polled at once, and nothing fires meanwhile
    assert model.snapshot().sites["agg"].confirming
    assert model.snapshot().sites["agg"].state is SiteState.UP
    assert ("hub", "rtr") in model.take_polls()
    assert {c.name for c in ev.candidates.values()} == set()
    assert {"agg", "leaf1", "leaf2"} <= ev.unjudged
    # the hub answers: agg is down after all, the root of its own outage; one alert for it
    model.ingest(ping("hub", "rtr", at + 1))
    model.ingest(ping("hub", "mw1", at + 1))
    ev = replay.run(model, at + 1)
    snap = model.snapshot()
    assert snap.sites["agg"].state is SiteState.DOWN
    assert {snap.sites[s].state for s in ("leaf1", "leaf2")} == {SiteState.UNREACHABLE}
    assert sorted((c.name, c.labels["site"]) for c in ev.candidates.values()) == [("UpstreamDown", "agg")]


def test_a_failed_link_is_the_root_cause_with_its_device_in_the_labels() -> None:
    model, replay = make_topology(), Replay()
    poll_topology(model, T0)
    model.ingest(snmp("hub", "mw1", T0 + MINUTE, {"link.oper_up": False}))
    model.ingest(ping("far", "bts", T0 + MINUTE, loss=1.0))
    ev = replay.run(model, T0 + MINUTE)
    [c] = [c for c in ev.candidates.values() if c.name == "UpstreamDown"]
    assert str(c.summary) == "mw1 at Trạm HUB Mai Châu down: 1 site cut off in Tú Lý"
    assert {k: c.labels[k] for k in ("site", "device", "role", "kind")} == {
        "site": "hub",
        "device": "mw1",
        "role": "link",
        "kind": "link",
    }
    assert not [c for c in ev.candidates.values() if c.labels["site"] == "far"]


def test_upstream_down_can_be_disabled_or_re_severitied() -> None:
    model = make_topology()
    poll_topology(model, T0)
    poll_topology(model, T0 + MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    off = Replay(builtins={"UpstreamDown": {"enabled": False}}).run(model, T0 + MINUTE)
    assert {c.name for c in off.candidates.values()} == {"SiteDown"}
    warn = Replay(builtins={"UpstreamDown": {"severity": "warning", "for": "5m"}}).run(model, T0 + MINUTE)
    [c] = [c for c in warn.candidates.values() if c.name == "UpstreamDown"]
    assert (c.severity, c.labels["severity"], c.for_s) == ("warning", "warning", 300.0)


# -- time to dark ----------------------------------------------------------------------------------

POWER_SITES = [
    site("p1", "d1", "c1", "vnpt", [dev("bts", "bts", 1), dev("pwr", "power", 2)], name="Trạm Pà Cò"),
]


def plant_fields(charge: float, *, on_battery: bool = True) -> dict[str, FieldValue]:
    return {
        "power.on_battery": on_battery,
        "power.mains_ok": not on_battery,
        "power.battery_minutes_remaining": 999,  # the controller's placeholder
        "power.battery_charge_percent": round(charge),
        "power.battery_voltage_volts": round(46.0 + 6.0 * charge / 100.0, 1),
    }


class Plant:
    """A site with one power plant; the health model and the time-to-dark tracker both see it."""

    def __init__(self, **power: Any) -> None:
        config = make_config(POWER_SITES, defaults={"hard_after": 1, "power": power})
        devices = resolve_all(config)
        self.model = HealthModel(config, devices, clock=lambda: T0 + 999_999)
        self.power = PowerTracker(devices)

    def poll(self, at: float, fields: Mapping[str, FieldValue]) -> None:
        for obs in (
            ping("p1", "bts", at),
            ping("p1", "pwr", at),
            snmp("p1", "pwr", at, fields),
        ):
            self.model.ingest(obs)
            self.power.ingest(obs)

    def drain(self, at: float, start: float, per_minute: float, minutes: int) -> float:
        """One poll a minute while the charge falls ``per_minute`` % a minute; returns the time."""
        for k in range(minutes):
            self.poll(at, plant_fields(start - per_minute * k))
            at += MINUTE
        return at - MINUTE


def test_time_to_dark_within_the_horizon_fires_before_it_happens_and_resolves_on_mains() -> None:
    plant, replay = Plant(time_to_dark_alert_horizon="1h"), Replay()
    replay.evaluator.power = plant.power  # as the daemon wires it
    at = plant.drain(T0, start=45.0, per_minute=1.0, minutes=12)  # 34 % left: ~34 min
    replay.run(plant.model, at)
    est = plant.power.sites()["p1"]
    assert est.method in ("charge_trend", "trends")
    [(kind, note)] = replay.notices("TimeToDarkSoon")
    assert kind == "firing"
    [alert] = [a for a in note.alerts if a.name == "TimeToDarkSoon"]
    assert alert.summary == dark_summary("Trạm Pà Cò", est, est.remaining(at) or 0.0)
    match = re.fullmatch(r"Trạm Pà Cò: ~(\d+) min to dark \((.+)\)", str(alert.summary))
    assert match is not None, alert.summary
    assert 30 <= int(match[1]) <= 38
    assert "vendor figure 999 distrusted" in match[2]
    assert (alert.severity, alert.labels["site"], "device" in alert.labels) == ("critical", "p1", False)
    assert "confidence" in str(alert.description)
    assert "power plant pwr" in str(alert.description)

    # mains is back: the plant recharges, the prediction is gone, the alert resolves
    at += MINUTE
    plant.poll(at, plant_fields(34.0, on_battery=False))
    replay.run(plant.model, at)
    assert [k for k, _ in replay.notices("TimeToDarkSoon")] == ["firing", "resolved"]


def test_time_to_dark_beyond_the_horizon_does_not_fire() -> None:
    plant, replay = Plant(time_to_dark_alert_horizon="1h"), Replay()
    at = plant.drain(T0, start=100.0, per_minute=0.5, minutes=12)  # ~3 h left
    est = plant.power.sites()["p1"]
    assert est.status == "on_battery"
    assert (est.remaining(at) or 0) > 2 * 3600
    ev = replay.run(plant.model, at, batteries=battery_outlook(plant.power))
    assert "TimeToDarkSoon" not in {c.name for c in ev.candidates.values()}
    assert "OnBattery" in {c.name for c in ev.candidates.values()}


def _outlook(dark_in: float, at: float, horizon: float = 1800.0, **extra: Any) -> DarkOutlook:
    est = TimeToDark(
        site_id="p1",
        device_id="pwr",
        at=at,
        status="on_battery",
        dark_at=at + dark_in,
        method="voltage_trend",
        confidence="medium",
        reason="distrusted: the vendor figure 999 min is a known placeholder; the voltage trend says 24 min",
        vendor_minutes=999.0,
        **extra,
    )
    return DarkOutlook(est, horizon)


def test_the_prediction_must_move_clearly_beyond_the_horizon_to_end_and_severity_is_configurable() -> None:
    plant = Plant()
    at = T0 + 10 * MINUTE
    plant.poll(at, plant_fields(100.0, on_battery=False))  # the site itself: judged, quiet
    ev = Evaluator(
        AlertingConfig.model_validate({"builtins": {"TimeToDarkSoon": {"severity": "warning"}}}), "hb"
    )

    def soon(dark_in: float) -> list[str]:
        found = ev.evaluate(plant.model.snapshot(), at, batteries=[_outlook(dark_in, at)]).candidates.values()
        return [str(c.summary) for c in found if c.name == "TimeToDarkSoon" and c.severity == "warning"]

    assert soon(1900.0) == []  # beyond the 30 min horizon
    assert soon(24 * MINUTE) == ["Trạm Pà Cò: ~24 min to dark (voltage trend, vendor figure 999 distrusted)"]
    assert len(soon(1900.0)) == 1  # within the 10 % slack once firing
    assert soon(2100.0) == []
    assert soon(1900.0) == []  # and the slack is gone with it
    # a site whose horizon is 0 never fires; a disabled rule neither
    assert (
        ev.evaluate(plant.model.snapshot(), at, batteries=[_outlook(60.0, at, horizon=0.0)]).candidates == {}
    )
    off = Evaluator(AlertingConfig.model_validate({"builtins": {"TimeToDarkSoon": {"enabled": False}}}), "hb")
    assert off.evaluate(plant.model.snapshot(), at, batteries=[_outlook(60.0, at)]).candidates == {}


# -- the whole daemon ------------------------------------------------------------------------------


async def test_daemon_lists_one_upstream_down_and_no_child_alerts(
    tmp_path: Path, netns_host: Callable[[], NetnsHost]
) -> None:
    hub, paco, vanmai = netns_host(), netns_host(), netns_host()

    def one(sid: str, name: str, commune: str, address: str, role: str, **extra: Any) -> dict[str, Any]:
        device = {"id": role, "role": role, "address": address, "snmp_enabled": False}
        return {"id": sid, "name": name, "district": "d1", "commune": commune, "carrier": "vnpt"} | {
            "devices": [device],
            **extra,
        }

    sites = [
        one("hub", "Trạm HUB Mai Châu", "c1", hub.address, "router"),
        one("paco", "BTS Pà Cò", "c2", paco.address, "bts", upstream="hub"),
        one("vanmai", "BTS Vạn Mai", "c1", vanmai.address, "bts", upstream="hub"),
    ]
    data = province_config(sites, listen=f"127.0.0.1:{free_tcp_port()}", defaults=E2E_TIMING)
    data["alerting"] = {"evaluation_interval": "1s", "group_wait": 0, "group_interval": "1s"}
    async with run_daemon(write_yaml(tmp_path / "config.yaml", data)) as daemon:
        assert daemon.alerts._evaluator.power is daemon.power  # TimeToDarkSoon's estimates

        async def alerts() -> list[dict[str, Any]]:
            status, body = await async_http("GET", daemon.url + "/api/v1/alerts")
            assert status == 200, body
            found: list[dict[str, Any]] = json.loads(body)["alerts"]
            return found

        async def all_up() -> bool:
            snap = daemon.snapshot()
            return all(s.state is SiteState.UP for s in snap.sites.values())

        await wait_until(all_up, timeout=20)
        for host in (hub, paco, vanmai):
            host.link_down()

        async def root_cause() -> list[dict[str, Any]]:
            return [a for a in await alerts() if a["name"] == "UpstreamDown" and a["state"] == "firing"]

        [alert] = await wait_until(root_cause, timeout=20)
        assert alert["summary"] == "Trạm HUB Mai Châu down: 2 sites cut off in Xã Pà Cò, Xã Vạn Mai"
        assert (alert["labels"]["site"], alert["labels"]["kind"], alert["severity"]) == (
            "hub",
            "site",
            "critical",
        )
        assert {a["labels"]["site"] for a in await alerts()} == {"hub"}

        seen: set[str] = set()
        for host in (hub, paco, vanmai):
            host.link_up()

        async def resolved() -> bool:
            now = await alerts()
            seen.update(a["labels"]["site"] for a in now)
            return (
                any(a["name"] == "UpstreamDown" and a["state"] == "resolved" for a in now) and await all_up()
            )

        await wait_until(resolved, timeout=20, interval=0.05)
        assert seen == {"hub"}  # the children never raised anything, re-check included
        await daemon.reload()
        assert daemon.alerts._evaluator.power is daemon.power
