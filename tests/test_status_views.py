"""The status page's server side without a browser: the recent samples behind the site page's
charts, the map and site views over a real health model, the ledger's per-site history, the
dispatch list's "on battery for", and how a request's language is chosen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from babel.dates import format_datetime

from tests.test_health import LINK_OK, T0, UPS_OK, dev, make_config, ping, site, snmp
from uptimewatch.config.resolve import resolve_all
from uptimewatch.i18n import translator
from uptimewatch.ledger import Ledger
from uptimewatch.model.health import HealthModel
from uptimewatch.model.history import DISCHARGE_POINTS, PING_POINTS, RecentSamples
from uptimewatch.model.observation import ErrorKind, ProbeError
from uptimewatch.store import SqliteStore
from uptimewatch.web.status import dispatch_view
from uptimewatch.web.status.i18n import COOKIE, PATTERNS, page_catalog, page_language
from uptimewatch.web.status.views import map_view, site_page_view

TIMEOUT = ProbeError(ErrorKind.TIMEOUT, "no answer")


def province(locations: bool = True) -> Any:
    def loc(lat: float, lon: float) -> dict[str, Any]:
        return {"location": {"lat": lat, "lon": lon}} if locations else {}

    return make_config(
        [
            site("hub", "d1", "c1", "vnpt", [dev("rtr", "router", 1), dev("pwr", "power", 2)],
                 **loc(20.6, 105.0)),
            site("leaf1", "d1", "c2", "vnpt", [dev("bts", "bts", 3)], upstream="hub", **loc(20.7, 105.1)),
            site("leaf2", "d1", "c2", "viettel", [dev("bts", "bts", 4)], upstream="hub", **loc(20.5, 105.2)),
            site("far", "d2", "c3", "vnpt", [dev("bts", "bts", 5), dev("lnk", "link", 6)]),
        ]
    )  # fmt: skip


def on_battery(at: float, charge: float, volts: float, **extra: Any) -> dict[str, Any]:
    return UPS_OK | {
        "power.on_battery": True,
        "power.battery_charge_percent": charge,
        "power.battery_voltage_volts": volts,
        **extra,
    }


# -- recent samples --------------------------------------------------------------------------------


def test_ping_history_is_bounded_ordered_and_kept_for_core_devices_only() -> None:
    config = province()
    samples = RecentSamples(resolve_all(config))
    for i in range(PING_POINTS + 30):
        samples.ingest(ping("hub", "rtr", T0 + i, rtt=0.001 * (i + 1), loss=0.0))
        samples.ingest(ping("hub", "pwr", T0 + i))  # not a core device: no chart of its own
    samples.ingest(ping("hub", "rtr", T0 + 5))  # a late result of an old poll
    [series] = samples.ping("hub")
    assert series.device_id == "rtr"
    assert len(series.points) == PING_POINTS
    times = [p[0] for p in series.points]
    assert times == sorted(times)
    assert times[-1] == T0 + PING_POINTS + 29
    assert series.points[-1][1] == pytest.approx(0.001 * (PING_POINTS + 30), rel=1e-5)
    # total loss: no round trip, loss 1
    samples.ingest(ping("hub", "rtr", T0 + 500, loss=1.0))
    assert samples.ping("hub")[0].points[-1][1:] == (None, 1.0)
    assert samples.ping("far") == []


def test_a_discharge_is_kept_after_mains_returns_and_thinned_not_cut() -> None:
    samples = RecentSamples(resolve_all(province()))
    samples.ingest(snmp("hub", "pwr", T0, UPS_OK))
    assert samples.discharges("hub") == []
    n = DISCHARGE_POINTS * 3
    for i in range(n):
        samples.ingest(snmp("hub", "pwr", T0 + 10 + i * 10, on_battery(0, 100 - i * 0.1, 53 - i * 0.005)))
    [d] = samples.discharges("hub")
    assert d.ended_at is None
    assert d.started_at == T0 + 10
    assert len(d.points) < DISCHARGE_POINTS
    assert d.points[0][0] == T0 + 10  # the start of the curve survives the thinning
    assert d.points[-1][0] == T0 + 10 + (n - 1) * 10  # and so does the newest reading
    mains_at = T0 + 20 + n * 10
    samples.ingest(snmp("hub", "pwr", mains_at, UPS_OK | {"power.battery_charge_percent": 70}))
    samples.ingest(snmp("hub", "pwr", mains_at + 10, UPS_OK))
    [d] = samples.discharges("hub")
    assert d.ended_at == mains_at
    assert d.points[-1] == (mains_at, 70.0, pytest.approx(54.2))  # kept as float32
    # the next discharge replaces it; seconds on battery say when it began
    samples.ingest(
        snmp("hub", "pwr", mains_at + 100, on_battery(0, 99, 52, **{"power.on_battery_seconds": 40}))
    )
    [d] = samples.discharges("hub")
    assert (d.started_at, d.ended_at, len(d.points)) == (mains_at + 60, None, 1)


def test_reconfigure_drops_the_series_of_removed_devices() -> None:
    config = province()
    samples = RecentSamples(resolve_all(config))
    samples.ingest(ping("leaf1", "bts", T0))
    samples.ingest(ping("leaf2", "bts", T0))
    samples.reconfigure([d for d in resolve_all(config) if d.site_id != "leaf1"])
    assert samples.ping("leaf1") == []
    assert len(samples.ping("leaf2")) == 1


# -- the map and the site page over a real health model --------------------------------------------


def hub_cut(config: Any) -> HealthModel:
    model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 100)
    at = T0
    for _ in range(3):
        for sid, did in (("hub", "rtr"), ("hub", "pwr"), ("leaf1", "bts"), ("leaf2", "bts")):
            model.ingest(snmp(sid, did, at, error=TIMEOUT))
            model.ingest(ping(sid, did, at, loss=1.0))
        model.ingest(snmp("far", "bts", at))
        model.ingest(ping("far", "bts", at))
        model.ingest(snmp("far", "lnk", at, LINK_OK))
        at += 10
    return model


def test_map_view_draws_sites_lines_and_the_cut_off_area() -> None:
    config = province()
    view = map_view(hub_cut(config).snapshot(), config.sites)
    states = {s["id"]: s["state"] for s in view["sites"]}
    assert states == {"hub": "down", "leaf1": "unreachable", "leaf2": "unreachable"}
    assert view["unplaced"] == ["far"]
    assert {(line["from"], line["to"], line["state"]) for line in view["lines"]} == {
        ("hub", "leaf1", "down"),
        ("hub", "leaf2", "down"),
    }
    hub = next(s for s in view["sites"] if s["id"] == "hub")
    assert hub["hub"] is True
    assert (hub["lat"], hub["lon"]) == (20.6, 105.0)
    [outage] = view["outages"]
    assert (outage["root"], sorted(outage["sites"])) == ("hub", ["leaf1", "leaf2"])
    leaf = next(s for s in view["sites"] if s["id"] == "leaf1")
    assert leaf["cut_off_by"] == ["hub"]
    assert "hub" in leaf["reason"].lower() or "cut off" in leaf["reason"]


def test_map_view_reasons_go_through_the_given_translator() -> None:
    config = province()
    view = map_view(hub_cut(config).snapshot(), config.sites, say=lambda r: f"<{r}>")
    assert all(s["reason"].startswith("<") for s in view["sites"])


def test_site_page_view() -> None:
    config = province()
    model = hub_cut(config)
    snap = model.snapshot()
    assert site_page_view(snap, "nowhere", now=T0 + 100) is None
    view = site_page_view(snap, "leaf1", now=T0 + 100, config_site=config.sites[1])
    assert view is not None
    assert view["state"] == "unreachable"
    assert view["cut_off_by"] == ["hub"]
    assert [(u["site"], u["state"]) for u in view["upstream"]] == [("hub", "down")]
    assert view["location"] == {"lat": 20.7, "lon": 105.1}
    assert view["devices"][0]["checks"]
    assert view["timeline"]["end"] - view["timeline"]["start"] == 24 * 3600
    hub = site_page_view(snap, "hub", now=T0 + 100)
    assert hub is not None
    assert sorted(s["id"] for s in hub["downstream"]) == ["leaf1", "leaf2"]
    assert hub["power"] is not None
    assert hub["power"]["spells"] == []
    assert site_page_view(snap, "far", now=T0 + 100)["links"][0]["rx_level_dbm"] == -48.0  # type: ignore[index]


# -- "On battery for –": the dispatch list says since when -----------------------------------------


def test_dispatch_list_knows_since_when_without_seconds_from_the_plant() -> None:
    config = province()
    model = HealthModel(config, resolve_all(config), clock=lambda: T0 + 100)
    model.ingest(snmp("hub", "pwr", T0, UPS_OK))
    for i in range(1, 4):
        model.ingest(snmp("hub", "pwr", T0 + i * 10, on_battery(0, 90, 51)))
    [row] = dispatch_view(model.snapshot())["sites"]
    assert row["power"]["on_battery_since"] == T0 + 10  # when the on-battery check turned
    # the time-to-dark tracker's figure wins when there is one
    [row] = dispatch_view(model.snapshot(), {"hub": T0 + 5})["sites"]
    assert row["power"]["on_battery_since"] == T0 + 5
    # the plant's own "seconds on battery" counts from its last poll
    model.ingest(snmp("hub", "pwr", T0 + 50, on_battery(0, 88, 51, **{"power.on_battery_seconds": 45})))
    [row] = dispatch_view(model.snapshot())["sites"]
    assert row["power"]["on_battery_since"] == T0 + 5


# -- the ledger's history of one site ---------------------------------------------------------------


async def test_ledger_site_history(tmp_path: Path) -> None:
    config = province()
    model = HealthModel(config, resolve_all(config), clock=lambda: T0)
    store = SqliteStore(tmp_path / "state.sqlite")
    await store.open()
    ledger = Ledger(store, clock=lambda: T0 + 1000)
    try:
        await ledger.start(config)
        model_changes = []
        for i in range(3):
            model_changes += model.ingest(snmp("hub", "rtr", T0 + i, error=TIMEOUT))
            model_changes += model.ingest(snmp("hub", "pwr", T0 + i, on_battery(0, 90, 51)))
        for i in range(3, 7):
            model_changes += model.ingest(snmp("hub", "rtr", T0 + i))
            model_changes += model.ingest(snmp("hub", "pwr", T0 + i, UPS_OK))
        ledger.record(model_changes)
        await ledger.flush()
        history = await ledger.site_history("hub", T0 - 10)
        assert [i.state for i in history.states][-1] in ("up", "degraded")
        assert history.states[-1].end is None
        # reasons come back as they were recorded (what the page then renders in its language)
        last_site_change = [c for c in model_changes if c.kind == "site"][-1]
        assert str(history.states[-1].reason) == str(last_site_change.reason)
        assert history.states[0].start >= T0
        assert set(history.devices) == {"rtr", "pwr"}
        [spell] = history.battery["pwr"]
        assert spell.state == "on_battery"
        assert spell.end is not None
        assert (await ledger.site_history("hub", T0 + 10_000)).states[-1:] == history.states[-1:]
        assert (await ledger.site_history("leaf1", T0)).states == ()
    finally:
        await ledger.stop()
        await store.close()


# -- the reader's language -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "default", "expected"),
    [
        ("", "", "", "vi", "vi"),
        ("", "", "en-US,en;q=0.9", "vi", "en"),
        ("", "", "fr-FR,fr;q=0.9", "vi", "vi"),
        ("", "", "fr;q=1, vi;q=0.5, en;q=0.4", "en", "vi"),
        ("", "en", "vi-VN", "vi", "en"),  # the switch remembered beats the browser
        ("?lang=vi", "en", "en-US", "en", "vi"),  # the link beats both
        ("?lang=xx", "xx", "", "en", "en"),  # nonsense is ignored
    ],
)
def test_page_language(query: str, cookie: str, accept: str, default: str, expected: str) -> None:
    headers = {}
    if accept:
        headers["Accept-Language"] = accept
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    request = make_mocked_request("GET", "/" + query, headers=headers)
    assert page_language(request, default) == expected


def test_page_catalog_vi_and_en() -> None:
    vi = page_catalog("vi", "Asia/Ho_Chi_Minh")
    assert vi["lang"] == "vi"
    assert vi["messages"]["Overview"] == "Tổng quan"
    assert vi["messages"]["{n} site on battery"] == ["{n} trạm đang chạy ắc quy"]
    assert vi["plural"].strip() == "0"
    assert (vi["formats"]["decimal"], vi["formats"]["group"]) == (",", ".")
    assert vi["units"]["minute"]["other"] == "{0} phút"
    en = page_catalog("en", None)
    assert en["messages"].get("Overview", "Overview") == "Overview"
    assert (en["formats"]["decimal"], en["formats"]["group"]) == (".", ",")
    assert en["formats"]["months"][11] == "Dec"
    assert "{0}" in en["units"]["hour"]["one"]


@pytest.mark.parametrize("language", ["vi", "en"])
def test_page_dates_are_written_like_the_emails_and_reports(language: str) -> None:
    moment = dt.datetime(2026, 12, 3, 14, 5, tzinfo=dt.UTC)
    t = translator(language, tz="UTC")
    patterns = PATTERNS[language]
    assert format_datetime(moment, patterns["date"], locale=language) == t.date(moment.timestamp())
    assert format_datetime(moment, patterns["datetime"], locale=language) == t.datetime(moment.timestamp())
    assert format_datetime(moment, patterns["time"], locale=language) == t.time(moment.timestamp())
    if language == "vi":
        assert t.date(moment.timestamp()) == "03/12/2026"
