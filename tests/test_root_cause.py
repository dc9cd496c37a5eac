"""One incident per root cause, whatever the poll order.

A hub is cut with ten sites behind it (two levels, as in the demo's Huyện Đà Bắc), and the polls
of each cycle finish in a shuffled order; the out-of-cycle polls the health model asks for (the
upstream chain of a site found down, the sites behind a site gone down) are served at once or
left to the next cycle, as the scheduler may. Whatever the order, the real health model and the
real alert rules give: one ``down`` incident (the hub's), sites behind it ``unreachable`` and never
``down``, each dated from its own failed poll, and one alert, ``UpstreamDown``, that fires
once and resolves once. The demo's own hub cut is checked end to end (ledger, report, alerts) in
``tests/test_demo_e2e.py``; ``tests/test_topology_e2e.py`` cuts namespaces' links.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.test_alerts_topology import Replay
from tests.test_health import MINUTE, T0, dev, make_config, ping, site
from uptimewatch.config.resolve import resolve_all
from uptimewatch.model.health import HealthModel, SiteState, StateChange

AGG = ("agg1", "agg2")
LEAVES = tuple(f"leaf{i}" for i in range(8))
BEHIND = AGG + LEAVES


def province() -> list[dict[str, Any]]:
    """hub <- agg1, agg2 (aggregation sites) <- four leaves each."""
    out = [site("hub", "d2", "c3", "vnpt", [dev("rtr", "router", 1)], name="Trạm HUB Đà Bắc")]
    for i, agg in enumerate(AGG):
        out.append(site(agg, "d2", "c3", "vnpt", [dev("rtr", "router", 2 + i)], upstream="hub"))
    for i, leaf in enumerate(LEAVES):
        out.append(site(leaf, "d2", "c3", "vnpt", [dev("bts", "bts", 10 + i)], upstream=AGG[i % 2]))
    return out


DEVICES = [("hub", "rtr"), *((a, "rtr") for a in AGG), *((leaf, "bts") for leaf in LEAVES)]


class Run:
    """The province through one cut and its repair, polls in an order chosen by ``rng``."""

    def __init__(self, rng: random.Random, hard_after: int) -> None:
        config = make_config(province(), defaults={"hard_after": hard_after})
        self.model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)
        self.replay = Replay()
        self.rng = rng
        self.cut = False
        self.changes: list[StateChange] = []
        self.failures: dict[str, list[float]] = {}

    def result(self, key: tuple[str, str], at: float) -> None:
        if self.cut:
            self.failures.setdefault(key[0], []).append(at)
        self.changes += self.model.ingest(ping(*key, at, loss=1.0 if self.cut else 0.0))
        # the scheduler may start the polls asked for now, or find them running already
        wanted = self.model.take_polls()
        wanted += [(s, "rtr" if s == "hub" or s in AGG else "bts") for s in self.model.take_rechecks()]
        if wanted and self.rng.random() < 0.7:
            for extra in dict.fromkeys(wanted):
                self.result(extra, at + 0.5)

    def cycle(self, at: float) -> None:
        order = list(DEVICES)
        self.rng.shuffle(order)
        for i, key in enumerate(order):
            self.result(key, at + i)
            if self.rng.random() < 0.3:
                self.replay.run(self.model, at + i)
        self.replay.run(self.model, at + len(order))


@pytest.mark.parametrize("hard_after", [1, 2, 3])
def test_a_cut_hub_is_one_incident_and_one_alert_whatever_the_poll_order(hard_after: int) -> None:
    for seed in range(40):
        run = Run(random.Random(seed * 31 + hard_after), hard_after)
        at = T0
        run.cycle(at)
        assert {s.state for s in run.model.snapshot().sites.values()} == {SiteState.UP}
        run.cut = True
        for _ in range(hard_after + 1):
            at += MINUTE
            run.cycle(at)
        snap = run.model.snapshot()
        assert snap.sites["hub"].state is SiteState.DOWN, seed
        assert {snap.sites[s].state for s in BEHIND} == {SiteState.UNREACHABLE}, seed
        run.cut = False
        for _ in range(hard_after + 2):
            at += MINUTE
            run.cycle(at)
        assert {s.state for s in run.model.snapshot().sites.values()} == {SiteState.UP}, seed

        moves = [
            (c.site_id, c.new, c.at)
            for c in run.changes
            if c.kind == "site" and c.old is not SiteState.UNKNOWN
        ]
        downs = [(sid, when) for sid, new, when in moves if new is SiteState.DOWN]
        # the ledger's incidents are its down spells: one, the hub's
        assert [sid for sid, _ in downs] == ["hub"], (seed, moves)
        for sid in BEHIND:
            mine = [(new, when) for s, new, when in moves if s == sid]
            # up -> unreachable -> up, dated from the site's own failed poll that made it hard
            assert [new for new, _ in mine] == [SiteState.UNREACHABLE, SiteState.UP], (seed, sid, mine)
            assert mine[0][1] == run.failures[sid][hard_after - 1], (seed, sid, mine)

        notices = [(n.kind, a.name, a.labels["site"]) for n in run.replay.sent for a in n.alerts]
        assert notices == [("firing", "UpstreamDown", "hub"), ("resolved", "UpstreamDown", "hub")], (
            seed,
            notices,
        )


def test_a_site_that_is_down_on_its_own_is_down_once_its_upstream_answered() -> None:
    """The other verdict of the re-check: the hub answers, so the silent site is down, dated from
    its own failed poll, and it is one SiteDown (nothing cut off behind a leaf)."""
    config = make_config(province(), defaults={"hard_after": 1})
    model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)
    replay = Replay()
    for key in DEVICES:
        model.ingest(ping(*key, T0))
    model.take_polls()
    at = T0 + MINUTE
    assert not [c for c in model.ingest(ping("leaf3", "bts", at, loss=1.0)) if c.kind == "site"]
    leaf = model.snapshot().sites["leaf3"]
    assert (leaf.state, leaf.confirming) == (SiteState.UP, True)
    # its whole chain is polled at once: the aggregation site, then the hub in front of it
    assert model.take_polls() == [("agg2", "rtr"), ("hub", "rtr")]
    replay.run(model, at)
    assert replay.sent == []
    model.ingest(ping("hub", "rtr", at + 1))
    changes = model.ingest(ping("agg2", "rtr", at + 1))
    assert [(c.site_id, c.old, c.new, c.at) for c in changes if c.kind == "site"] == [
        ("leaf3", SiteState.UP, SiteState.DOWN, at)
    ]
    replay.run(model, at + 2)
    assert [(n.kind, a.name, a.labels["site"]) for n in replay.sent for a in n.alerts] == [
        ("firing", "SiteDown", "leaf3")
    ]


def test_a_hub_down_with_sites_behind_it_waits_for_them_before_it_alerts() -> None:
    """The hub's poll finishes first: is it one site down, or the root of an outage? Its alert
    waits until the sites behind it were polled again (asked for at once): one root-cause alert,
    not a SiteDown that an UpstreamDown replaces a moment later."""
    config = make_config(province(), defaults={"hard_after": 1})
    model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)
    replay = Replay()
    for key in DEVICES:
        model.ingest(ping(*key, T0))
    model.take_polls()
    at = T0 + MINUTE
    model.ingest(ping("hub", "rtr", at, loss=1.0))
    hub = model.snapshot().sites["hub"]
    assert (hub.state, hub.root_in_doubt) == (SiteState.DOWN, True)
    assert sorted(model.take_polls()) == [("agg1", "rtr"), ("agg2", "rtr")]
    replay.run(model, at)
    assert replay.sent == []
    model.ingest(ping("agg1", "rtr", at + 1, loss=1.0))
    model.ingest(ping("agg2", "rtr", at + 1, loss=1.0))
    assert not model.snapshot().sites["hub"].root_in_doubt
    replay.run(model, at + 2)
    notices = [(n.kind, a.name, a.labels["site"]) for n in replay.sent for a in n.alerts]
    assert notices == [("firing", "UpstreamDown", "hub")]
    [alert] = [a for n in replay.sent for a in n.alerts]
    assert alert.summary.startswith("Trạm HUB Đà Bắc down: 2 sites cut off")

    # the same hub going down while the sites behind it still answer (their own path): SiteDown
    model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 999_999)
    replay = Replay()
    for key in DEVICES:
        model.ingest(ping(*key, T0))
    model.ingest(ping("hub", "rtr", at, loss=1.0))
    model.ingest(ping("agg1", "rtr", at + 1))
    replay.run(model, at + 1)
    assert replay.sent == []  # agg2 has not told yet
    model.ingest(ping("agg2", "rtr", at + 1))
    replay.run(model, at + 2)
    assert [(n.kind, a.name, a.labels["site"]) for n in replay.sent for a in n.alerts] == [
        ("firing", "SiteDown", "hub")
    ]
