"""Topology on the health model, with replayed observations: unreachable behind a failed hub or
link (several levels deep), degraded on a lost uplink, and the re-check after recovery."""

from __future__ import annotations

from typing import Any

from tests.test_health import LINK_OK, MINUTE, T0, dev, make_config, ping, site, snmp
from uptimewatch.config.resolve import resolve_all
from uptimewatch.model.health import HealthModel, SiteState, StateChange
from uptimewatch.model.outages import outages, rechecking
from uptimewatch.model.topology import Topology, UpstreamRef


def province(hard_after: int = 1) -> list[dict[str, Any]]:
    """hub <- agg <- leaf1, leaf2 (single paths); twin <- hub and agg (two paths); far <- hub:mw1."""
    return [
        site(
            "hub",
            "d1",
            "c1",
            "vnpt",
            [dev("rtr", "router", 1), dev("mw1", "link", 2)],
            name="Trạm HUB Mai Châu",
        ),
        site("agg", "d1", "c1", "vnpt", [dev("rtr", "router", 3)], upstream="hub", name="Trạm gom Vạn Mai"),
        site("leaf1", "d1", "c2", "viettel", [dev("bts", "bts", 4)], upstream="agg", name="BTS Pà Cò 01"),
        site("leaf2", "d1", "c2", "vnpt", [dev("bts", "bts", 5)], upstream=["agg"], name="BTS Pà Cò 02"),
        site("twin", "d2", "c3", "vnpt", [dev("bts", "bts", 6)], upstream=["hub", "agg"], name="BTS Tú Lý"),
        site("far", "d2", "c3", "vnpt", [dev("bts", "bts", 7)], upstream="hub:mw1", name="BTS Xa"),
    ]


ALL = [
    ("hub", "rtr"),
    ("hub", "mw1"),
    ("agg", "rtr"),
    ("leaf1", "bts"),
    ("leaf2", "bts"),
    ("twin", "bts"),
    ("far", "bts"),
]


def make(hard_after: int = 1) -> HealthModel:
    config = make_config(province(), defaults={"hard_after": hard_after})
    return HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)


def poll(model: HealthModel, at: float, down: set[tuple[str, str]] = frozenset()) -> list[StateChange]:  # type: ignore[assignment]
    """One cycle: ping every device (those in ``down`` lose every packet), SNMP on the radio."""
    changes: list[StateChange] = []
    for sid, did in ALL:
        changes += model.ingest(ping(sid, did, at, loss=1.0 if (sid, did) in down else 0.0))
        if did == "mw1" and (sid, did) not in down:
            changes += model.ingest(snmp(sid, did, at + 0.1, LINK_OK))
    return changes


def states(model: HealthModel) -> dict[str, SiteState]:
    return {sid: s.state for sid, s in model.snapshot().sites.items()}


HUB_DOWN = {("hub", "rtr"), ("hub", "mw1")}
EVERYTHING_BEHIND = {("agg", "rtr"), ("leaf1", "bts"), ("leaf2", "bts"), ("twin", "bts"), ("far", "bts")}


def test_upstream_refs_and_graph() -> None:
    assert UpstreamRef.parse("hub:mw1") == UpstreamRef("hub", "mw1")
    assert UpstreamRef.parse("hub").ref == "hub"
    topo = Topology(make_config(province()).sites)
    assert topo.children["hub"] == ("agg", "twin", "far")
    assert topo.links == {"hub": ("mw1",)}
    assert topo.downstream("hub") == ["agg", "twin", "far", "leaf1", "leaf2"]
    order = topo.order()
    assert order.index("agg") < order.index("leaf1")
    assert order.index("agg") < order.index("twin")


def test_hub_down_makes_every_site_behind_it_unreachable_naming_the_hub() -> None:
    model = make()
    poll(model, T0)
    assert set(states(model).values()) == {SiteState.UP}
    changes = poll(model, T0 + MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    snap = model.snapshot()
    assert snap.sites["hub"].state is SiteState.DOWN
    for sid in ("agg", "leaf1", "leaf2", "twin", "far"):
        s = snap.sites[sid]
        assert s.state is SiteState.UNREACHABLE, sid
        # the root cause, not the nearest upstream: leaf1 is behind agg, which is behind the hub
        assert str(s.reason) == "cut off behind Trạm HUB Mai Châu (hub down)", sid
        assert s.cut_off_by == ("hub",)
    # no site behind the hub ever counted as down
    site_changes = [(c.site_id, c.new) for c in changes if c.kind == "site"]
    assert ("hub", SiteState.DOWN) in site_changes
    assert not [c for c in site_changes if c[0] != "hub" and c[1] is SiteState.DOWN]

    [outage] = outages(snap)
    assert (outage.root, outage.kind, outage.name, outage.state) == (
        "hub",
        "site",
        "Trạm HUB Mai Châu",
        "down",
    )
    assert sorted(outage.sites) == ["agg", "far", "leaf1", "leaf2", "twin"]
    assert {(c.district, c.commune, c.name, c.sites) for c in outage.communes} == {
        ("d1", "c1", "Vạn Mai", 1),
        ("d1", "c2", "Pà Cò", 2),
        ("d2", "c3", "Tú Lý", 2),
    }
    assert outage.districts == ("Mai Châu", "Đà Bắc")


def test_children_that_fail_first_wait_for_the_hub_and_turn_unreachable_never_down() -> None:
    model = make()
    poll(model, T0)
    # the children's polls come in before the hub's within the cycle
    changes = []
    for sid, did in [("agg", "rtr"), ("leaf1", "bts")]:
        changes += model.ingest(ping(sid, did, T0 + MINUTE, loss=1.0))
    assert not [c for c in changes if c.kind == "site"]
    snap = model.snapshot()
    # agg is not down yet: the hub in front of it is re-checked first; leaf1 waits for agg
    for sid in ("agg", "leaf1"):
        assert (snap.sites[sid].state, snap.sites[sid].confirming) == (SiteState.UP, True)
    assert "re-checking upstream Trạm HUB Mai Châu" in str(snap.sites["agg"].reason)
    assert ("hub", "rtr") in model.take_polls()
    changes = model.ingest(ping("hub", "rtr", T0 + MINUTE + 1, loss=1.0))
    # the hub's router is silent: the hub waits for its radio's word before it is down
    assert model.snapshot().sites["hub"].confirming
    assert ("hub", "mw1") in model.take_polls()
    changes += model.ingest(ping("hub", "mw1", T0 + MINUTE + 1, loss=1.0))
    moved = {c.site_id: (c.old, c.new, c.at) for c in changes if c.kind == "site"}
    assert moved["hub"] == (SiteState.UP, SiteState.DOWN, T0 + MINUTE + 1)
    # dated from their own failed polls, not from the hub's verdict
    assert moved["agg"] == (SiteState.UP, SiteState.UNREACHABLE, T0 + MINUTE)
    assert moved["leaf1"] == (SiteState.UP, SiteState.UNREACHABLE, T0 + MINUTE)
    assert str(model.snapshot().sites["leaf1"].reason) == "cut off behind Trạm HUB Mai Châu (hub down)"


def test_one_of_two_uplinks_lost_is_degraded_and_a_site_that_answers_is_never_unreachable() -> None:
    model = make()
    poll(model, T0)
    poll(model, T0 + MINUTE, {("agg", "rtr")})
    snap = model.snapshot()
    twin = snap.sites["twin"]
    assert twin.state is SiteState.DEGRADED
    assert str(twin.reason) == "lost uplink via Trạm gom Vạn Mai (hub down)"
    assert twin.lost_uplinks == ("agg",)
    # leaf1's own device answers although its only upstream is down: it is up
    assert snap.sites["leaf1"].state is SiteState.UP
    # both paths gone and its own device silent: cut off, behind both roots
    poll(model, T0 + 2 * MINUTE, HUB_DOWN | {("agg", "rtr"), ("twin", "bts")})
    twin = model.snapshot().sites["twin"]
    assert twin.state is SiteState.UNREACHABLE
    assert twin.cut_off_by == ("hub",)  # agg is cut off behind the hub too: one root cause


def test_a_failed_link_device_cuts_off_the_sites_behind_it_only() -> None:
    model = make()
    poll(model, T0)
    # the radio answers but reports its link down; far's own base station goes silent
    model.ingest(snmp("hub", "mw1", T0 + MINUTE, {**LINK_OK, "link.oper_up": False}))
    model.ingest(ping("far", "bts", T0 + MINUTE, loss=1.0))
    snap = model.snapshot()
    assert snap.sites["hub"].state is SiteState.DEGRADED  # a radio link down at the hub
    far = snap.sites["far"]
    assert far.state is SiteState.UNREACHABLE
    assert str(far.reason) == "cut off behind mw1 at Trạm HUB Mai Châu (link down)"
    assert far.cut_off_by == ("hub:mw1",)
    [outage] = outages(snap)
    assert (outage.root, outage.kind, outage.name, outage.sites) == (
        "hub:mw1",
        "link",
        "mw1 at Trạm HUB Mai Châu",
        ("far",),
    )


def test_recovery_rechecks_each_child_before_believing_it() -> None:
    model = make(hard_after=2)
    poll(model, T0)
    for k in (1, 2):
        poll(model, T0 + k * MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    assert states(model)["leaf1"] is SiteState.UNREACHABLE
    assert model.take_rechecks() == []

    back = T0 + 3 * MINUTE
    model.ingest(ping("hub", "rtr", back))
    changes = model.ingest(ping("hub", "rtr", back + 1))  # hard after two
    # the hub's router is back, its radio not yet: the hub is degraded, far still cut off by the radio
    assert [(c.site_id, c.new) for c in changes if c.kind == "site"] == [("hub", SiteState.DEGRADED)]
    assert model.snapshot().sites["far"].cut_off_by == ("hub:mw1",)
    # agg's own results still say "down" (from the outage): it is not believed, and it is polled now
    assert model.take_rechecks() == ["agg", "twin"]
    snap = model.snapshot()
    assert snap.sites["agg"].state is SiteState.UNREACHABLE
    assert snap.sites["agg"].rechecking
    assert str(snap.sites["agg"].reason) == "Trạm HUB Mai Châu (hub down) is back; re-checking this site"
    assert sorted(rechecking(snap)) == ["agg", "leaf1", "leaf2", "twin"]  # the leaves wait for agg
    assert [o.root for o in outages(snap)] == ["hub:mw1"]  # the hub is no root cause any more

    # a poll that started before the recovery proves nothing
    model.ingest(ping("agg", "rtr", back - 5, loss=1.0))
    assert states(model)["agg"] is SiteState.UNREACHABLE
    # the fresh poll answers; hysteresis still holds the old hard "unreachable": keep waiting
    model.ingest(ping("agg", "rtr", back + 2))
    assert states(model)["agg"] is SiteState.UNREACHABLE
    changes = model.ingest(ping("agg", "rtr", back + 3))
    assert {c.site_id: c.new for c in changes if c.kind == "site"} == {"agg": SiteState.UP}
    # the level below is re-checked in turn, never shown down
    assert model.take_rechecks() == ["leaf1", "leaf2"]
    snap = model.snapshot()
    assert snap.sites["leaf1"].state is SiteState.UNREACHABLE
    assert snap.sites["leaf1"].rechecking

    # leaf1 really lost its base station meanwhile: the fresh poll says so, and once agg in front
    # of it has been polled again (it answers), leaf1 is down, from its own failed poll on
    model.take_polls()
    changes = model.ingest(ping("leaf1", "bts", back + 4, loss=1.0))
    assert not [c for c in changes if c.kind == "site"]
    assert model.take_polls() == [("agg", "rtr"), ("hub", "rtr")]
    changes = model.ingest(ping("agg", "rtr", back + 5))
    assert {c.site_id: (c.old, c.new, c.at) for c in changes if c.kind == "site"} == {
        "leaf1": (SiteState.UNREACHABLE, SiteState.DOWN, back + 4)
    }
    assert str(model.snapshot().sites["leaf1"].reason).startswith("base station: no reply to ping")


def test_reload_keeps_topology_states_and_applies_new_upstreams() -> None:
    model = make()
    poll(model, T0)
    poll(model, T0 + MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    config = make_config(province(), defaults={"hard_after": 1})
    assert model.reconfigure(config, resolve_all(config)) == []
    assert states(model)["leaf1"] is SiteState.UNREACHABLE
    # leaf1 is now declared with no upstream: nothing says it is cut off, so it is down
    sites = province()
    sites[2]["upstream"] = []
    config = make_config(sites, defaults={"hard_after": 1})
    changes = model.reconfigure(config, resolve_all(config))
    assert [(c.site_id, c.old, c.new) for c in changes] == [("leaf1", SiteState.UNREACHABLE, SiteState.DOWN)]
    counts = next(r for r in model.snapshot().rollups if r.level == "province").counts
    assert (counts[SiteState.DOWN], counts[SiteState.UNREACHABLE]) == (2, 4)


def test_a_fresh_answer_of_another_protocol_does_not_end_the_recheck_before_the_ping() -> None:
    """After a hub comes back, a child whose SNMP answered first still has the ping of the outage
    deciding whether it answers: it stays cut off and re-checking, never down, until a ping of
    its own started after the recovery tells (the demo's hub cut gave a child an incident so)."""
    model = make(hard_after=1)
    poll(model, T0)
    poll(model, T0 + MINUTE, HUB_DOWN | EVERYTHING_BEHIND)
    assert states(model)["agg"] is SiteState.UNREACHABLE

    back = T0 + 2 * MINUTE
    model.ingest(ping("hub", "rtr", back))
    model.ingest(ping("hub", "mw1", back))
    assert states(model)["hub"] is SiteState.UP
    assert model.snapshot().sites["agg"].rechecking
    changes = model.ingest(snmp("agg", "rtr", back + 1, LINK_OK))
    assert not [c for c in changes if c.kind == "site" and c.site_id == "agg"]
    snap = model.snapshot()
    assert snap.sites["agg"].state is SiteState.UNREACHABLE
    assert snap.sites["agg"].rechecking
    # the fresh ping answers: the site is up, and it never was down
    changes = model.ingest(ping("agg", "rtr", back + 2))
    assert {c.site_id: c.new for c in changes if c.kind == "site"}.get("agg") is SiteState.UP
