"""/metrics at scale: the hand-written text of the per-site families against prometheus_client's,
the per-site cache (changes, reloads), promtool, and the endpoint (worker thread, gzip)."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import shutil
import subprocess
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fixtures.daemon import free_tcp_port
from tests.test_health import MINUTE, T0, UPS_OK, make_config, ping, snmp, standard_sites
from tests.test_metrics_export import RUNTIME, STATS, busy_model
from uptimewatch.config.models import Config, Role
from uptimewatch.config.resolve import resolve_all
from uptimewatch.export.exposition import (
    PrerenderedFamily,
    format_value,
    gzip_accepted,
    render,
    render_body,
    scrape,
)
from uptimewatch.export.metrics import HealthCollector
from uptimewatch.export.site_series import (
    FIELD_GAUGES,
    GROUP_SITES,
    SITE_FAMILIES,
    SiteSeriesCache,
    site_families,
)
from uptimewatch.ledger import Ledger
from uptimewatch.model.checks import CheckState
from uptimewatch.model.health import (
    CheckStatus,
    DeviceStatus,
    HealthModel,
    HealthSnapshot,
    ProbeRecord,
    SiteState,
    SiteStatus,
)
from uptimewatch.model.history import RecentSamples
from uptimewatch.model.observation import ErrorKind, FieldValue, ProbeError
from uptimewatch.power import PowerTracker
from uptimewatch.store import SqliteStore
from uptimewatch.web.app import ReloadResult, build_app

# -- the reference: the per-site families as prometheus_client built them before ------------------

_DEVICE_LABELS = ("site", "device", "role")


def _num(value: FieldValue) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)


def reference_families(snap: HealthSnapshot) -> list[Metric]:
    """What HealthCollector yielded for the per-site families before the text was hand-written."""
    site_state = GaugeMetricFamily(
        "uptimewatch_site_state",
        "Site state: 1 on the current state (up, degraded, down, unreachable, unknown), 0 on the "
        "others. down = the base station is off the air; degraded = something needs attention.",
        labels=("site", "district", "commune", "carrier", "state"),
    )
    since = GaugeMetricFamily(
        "uptimewatch_site_state_since_timestamp_seconds",
        "Unix time when the site entered its current state (absent before the first poll).",
        labels=("site", "district", "commune", "carrier"),
    )
    per_device = {
        name: GaugeMetricFamily(name, help_text, labels=_DEVICE_LABELS)
        for name, help_text in (
            (
                "uptimewatch_device_up",
                "1 when the device answers (ping, or SNMP when it has no ping), 0 when it does not. "
                "Absent until the device was polled once.",
            ),
            (
                "uptimewatch_device_check_state",
                "State of one health check of a device, after hysteresis: "
                "0 ok, 1 warning, 2 critical, 3 unknown. "
                "Checks that are ok are left out (but link.rx_level) unless the metrics detail is full.",
            ),
            (
                "uptimewatch_icmp_loss_ratio",
                "Share of the last ping burst that got no reply, 0..1 (1 = nothing answered).",
            ),
            (
                "uptimewatch_icmp_rtt_seconds",
                "Round-trip time of the last ping burst in seconds: stat=avg or max over its replies "
                "(and min with the full metrics detail).",
            ),
            (
                "uptimewatch_icmp_jitter_seconds",
                "Mean difference between consecutive ping round trips of the last burst, in seconds.",
            ),
            (
                "uptimewatch_snmp_up",
                "1 when the last SNMP poll of the device got a usable answer, 0 when it failed "
                "(timeout, authentication, no such object...).",
            ),
            (
                "uptimewatch_snmp_poll_duration_seconds",
                "How long the last SNMP poll of the device took, in seconds.",
            ),
            *((name, help_text) for name, _f, _s, help_text in FIELD_GAUGES),
        )
    }

    def add(name: str, labels: dict[str, str], value: float) -> None:
        per_device[name].samples.append(Sample(name, labels, value))

    for site in snap.sites.values():
        labels = {
            "site": site.site_id,
            "district": site.district,
            "commune": site.commune or "",
            "carrier": site.carrier,
        }
        for state in SiteState:
            site_state.samples.append(
                Sample(site_state.name, {**labels, "state": state.value}, float(state is site.state))
            )
        if site.since is not None:
            since.samples.append(Sample(since.name, labels, site.since))
        for dev in site.devices:
            base = {"site": dev.site_id, "device": dev.device_id, "role": dev.role.value}
            if dev.reachable is not None:
                add("uptimewatch_device_up", base, 1.0 if dev.reachable else 0.0)
            for chk in dev.checks:
                add("uptimewatch_device_check_state", {**base, "check": chk.name}, float(chk.hard_state))
            icmp = dev.probes.get("icmp")
            if icmp is not None and icmp.error_kind is None:
                for name, key, extra in (
                    ("uptimewatch_icmp_loss_ratio", "icmp.loss_ratio", {}),
                    ("uptimewatch_icmp_rtt_seconds", "icmp.rtt_min_seconds", {"stat": "min"}),
                    ("uptimewatch_icmp_rtt_seconds", "icmp.rtt_avg_seconds", {"stat": "avg"}),
                    ("uptimewatch_icmp_rtt_seconds", "icmp.rtt_max_seconds", {"stat": "max"}),
                    ("uptimewatch_icmp_jitter_seconds", "icmp.jitter_seconds", {}),
                ):
                    value = _num(dev.fields.get(key))
                    if value is not None:
                        add(name, {**base, **extra}, value)
            record = dev.probes.get("snmp")
            if record is not None:
                add("uptimewatch_snmp_up", base, 1.0 if record.error_kind is None else 0.0)
                add("uptimewatch_snmp_poll_duration_seconds", base, record.duration_s)
                if record.error_kind is not None:
                    continue
            for name, key, scale, _help in FIELD_GAUGES:
                value = _num(dev.fields.get(key))
                if value is not None:
                    add(name, base, value * scale)

    sites = GaugeMetricFamily(
        "uptimewatch_sites",
        "Number of sites in each state, per district and carrier.",
        labels=("district", "carrier", "state"),
    )
    by_dc: dict[tuple[str, str], dict[SiteState, int]] = {}
    for site in snap.sites.values():
        by_dc.setdefault((site.district, site.carrier), dict.fromkeys(SiteState, 0))[site.state] += 1
    for (district, carrier), counts in sorted(by_dc.items()):
        for state, n in counts.items():
            sites.add_metric((district, carrier, state.value), n)
    return [site_state, since, *per_device.values(), sites]


def standard_families(snap: HealthSnapshot) -> list[Metric]:
    """The reference in the standard detail: no snmp_up, no stat="min" round trip, check states
    only when not ok (link.rx_level always)."""
    out = []
    for family in reference_families(snap):
        if family.name == "uptimewatch_snmp_up":
            continue
        family.samples = [
            s
            for s in family.samples
            if s.labels.get("stat") != "min"
            and not (
                s.name == "uptimewatch_device_check_state"
                and s.value == float(CheckState.OK)
                and s.labels["check"] != "link.rx_level"
            )
        ]
        out.append(family)
    return out


class _Static:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def series_set(text: str) -> set[tuple[str, frozenset[tuple[str, str]], str]]:
    """(name, labels, value) of every sample; the value as text so that NaN equals NaN."""
    out = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.add((s.name, frozenset(s.labels.items()), repr(s.value)))
    return out


# -- snapshots to render ------------------------------------------------------------------------


def _check(name: str, hard: CheckState) -> CheckStatus:
    return CheckStatus(name, hard, True, "", T0, 3, None, hard)


def _record(probe: str, error: ErrorKind | None = None, duration: float = 0.25) -> ProbeRecord:
    return ProbeRecord(probe, T0, duration, error, None if error is None else "x", "p")


def _device(
    site_id: str,
    device_id: str,
    role: Role,
    fields: Mapping[str, FieldValue],
    probes: Mapping[str, ProbeRecord],
    *,
    checks: tuple[CheckStatus, ...] = (),
    reachable: bool | None = True,
) -> DeviceStatus:
    return DeviceStatus(
        site_id, device_id, role, device_id, "127.0.0.1", reachable, CheckState.OK, "", checks, fields, probes
    )


def awkward_snapshot() -> HealthSnapshot:
    """Label values the text format must escape, diacritics, and every kind of value."""
    quoted = 'tram "Pà Cò"'
    slashed = "huyện\\Mai Châu"
    newline = "Xã\nVạn Mai"
    power: dict[str, FieldValue] = {
        "power.on_battery": True,
        "power.mains_ok": False,
        "power.battery_minutes_remaining": 38,
        "power.battery_charge_percent": 91,
        "power.battery_voltage_volts": 54.2,
        "link.oper_up": "up",  # a string: no number, no series
        "link.rx_level_dbm": -70.5,
        "link.snr_db": float("nan"),
    }
    icmp: dict[str, FieldValue] = {
        "icmp.loss_ratio": 1 / 3,
        "icmp.rtt_min_seconds": 1e-05,
        "icmp.rtt_avg_seconds": 12345678.9,  # prometheus_client writes it with an exponent
        "icmp.rtt_max_seconds": float("inf"),
        "icmp.jitter_seconds": None,
    }
    sites = [
        SiteStatus(
            quoted,
            "Trạm Pà Cò",
            slashed,
            newline,
            'Viettel "Tây Bắc"',
            "normal",
            (),
            SiteState.DEGRADED,
            "r",
            1_750_000_123.456,
            (
                _device(
                    quoted,
                    'pwr\\"1',
                    Role.POWER,
                    power,
                    {"snmp": _record("snmp", duration=0.0421)},
                    checks=(
                        _check("power.on_battery", CheckState.WARNING),
                        _check("điện.ắc quy", CheckState.UNKNOWN),
                    ),
                ),
                _device(quoted, "bts\n1", Role.BTS, icmp, {"icmp": _record("icmp")}, reachable=False),
                _device(
                    quoted,
                    "lnk-1",
                    Role.LINK,
                    {"link.rx_level_dbm": -65.0, "link.snr_db": 31},
                    {"snmp": _record("snmp", ErrorKind.TIMEOUT, 4.0)},
                    checks=(_check("snmp.reachable", CheckState.CRITICAL),),
                ),
            ),
        ),
        SiteStatus(
            "đèo-thung-khe",
            "Đèo Thung Khe",
            "d2",
            None,
            "vnpt",
            "critical",
            (),
            SiteState.UNKNOWN,
            "",
            None,
            (_device("đèo-thung-khe", "rtr", Role.ROUTER, {}, {}, reachable=None),),
        ),
        SiteStatus("empty", "Empty", slashed, "", "vnpt", "normal", (), SiteState.DOWN, "", -0.0, ()),
    ]
    return HealthSnapshot(T0, {s.site_id: s for s in sites}, ())


SNAPSHOTS: dict[str, Callable[[], HealthSnapshot]] = {
    "busy model": lambda: busy_model().snapshot(),
    "awkward values": awkward_snapshot,
    "no sites": lambda: HealthSnapshot(T0, {}, ()),
}


# -- the text -------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", SNAPSHOTS)
def test_the_text_is_what_prometheus_client_wrote(which: str) -> None:
    snap = SNAPSHOTS[which]()
    before = generate_latest(_Static(reference_families(snap))).decode()
    ours = render(site_families(SiteSeriesCache(), snap, full=True)).decode()
    assert series_set(ours) == series_set(before)
    if snap.sites:
        assert len(series_set(ours)) > 10
    # the same bytes even: label order, value formatting, help text and family order
    assert ours == before
    # the standard detail: the same text, less what it leaves out
    standard = render(site_families(SiteSeriesCache(), snap)).decode()
    assert standard == generate_latest(_Static(standard_families(snap))).decode()
    if snap.sites:
        assert len(series_set(standard)) < len(series_set(ours))


def test_the_standard_detail_keeps_every_series_the_shipped_rules_and_dashboards_read() -> None:
    snap = busy_model().snapshot()
    full = series_set(render(site_families(SiteSeriesCache(), snap, full=True)).decode())
    standard = series_set(render(site_families(SiteSeriesCache(), snap)).decode())
    left_out = full - standard
    assert {name for name, _labels, _value in left_out} == {
        "uptimewatch_snmp_up",
        "uptimewatch_icmp_rtt_seconds",
        "uptimewatch_device_check_state",
    }
    for name, labels, value in left_out:
        shown = dict(labels)
        if name == "uptimewatch_icmp_rtt_seconds":
            assert shown["stat"] == "min"
        if name == "uptimewatch_device_check_state":
            assert value == "0.0"
            assert shown["check"] != "link.rx_level"
    # a check that is not ok is there in both
    assert any(n == "uptimewatch_device_check_state" and v != "0.0" for n, _l, v in standard)


def test_values_are_formatted_as_go_does() -> None:
    from prometheus_client.utils import floatToGoString

    values = [0.0, -0.0, 1.0, 0.1, 1 / 3, 1e-05, 123456.0, 1234567.0, 12345678.9, 1.75e9, -1.75e9, 1e22]
    values += [float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308]
    for value in values:
        assert format_value(value) == floatToGoString(value), value  # type: ignore[no-untyped-call]


def test_generic_consumers_get_the_same_samples_by_parsing_the_text() -> None:
    # prometheus_client's own generate_latest reads .samples: the prerendered text parsed back
    registry = CollectorRegistry()
    snap = awkward_snapshot()
    HealthCollector(lambda: snap, lambda: STATS, lambda: RUNTIME, registry=registry, process_metrics=False)
    fast = render(registry.collect()).decode()
    generic = generate_latest(registry).decode()
    assert series_set(fast) == series_set(generic)
    assert fast == generic
    family = next(m for m in registry.collect() if isinstance(m, PrerenderedFamily))
    with pytest.raises(TypeError):
        family.samples = [Sample(family.name, {}, 1.0)]


# -- the cache ------------------------------------------------------------------------------------


def _model_text(model: HealthModel, cache: SiteSeriesCache) -> str:
    return render(site_families(cache, model.snapshot())).decode()


def test_only_the_sites_that_changed_are_rendered_again() -> None:
    model = busy_model()
    cache = SiteSeriesCache()
    first = cache.series(model.snapshot())
    assert first.rendered == 4
    assert cache.series(model.snapshot()) is first  # nothing changed: nothing to do at all

    model.ingest(ping("s2", "bts2", T0 + 10 * MINUTE, rtt=0.0075))
    second = cache.series(model.snapshot())
    assert second.rendered == 1
    sites = list(model.snapshot().sites)
    s2 = sites.index("s2")
    loss_index = [name for name, _help in SITE_FAMILIES].index("uptimewatch_icmp_loss_ratio")
    assert len(first.texts(loss_index)) == 1  # four sites: one group
    assert first.groups[0].texts[loss_index] != second.groups[0].texts[loss_index]
    text = _model_text(model, cache)
    assert 'uptimewatch_icmp_loss_ratio{device="bts2",role="bts",site="s2"} 0.0' in text
    assert 'uptimewatch_icmp_rtt_seconds{device="bts2",role="bts",site="s2",stat="avg"} 0.0075' in text
    assert text == generate_latest(_Static(standard_families(model.snapshot()))).decode()
    assert s2 >= 0


def test_a_reload_drops_removed_sites_and_relabels_moved_ones() -> None:
    model = busy_model()
    cache = SiteSeriesCache()
    before = _model_text(model, cache)
    assert 'site="s3"' in before
    assert len(cache) == 4

    sites = [s for s in standard_sites() if s["id"] != "s3"]
    moved = next(s for s in sites if s["id"] == "s4")
    moved["district"], moved["commune"] = "d1", "c1"
    config = make_config(sites)
    model.reconfigure(config, resolve_all(config))
    after = _model_text(model, cache)
    assert 'site="s3"' not in after
    assert len(cache) == 3
    assert 'uptimewatch_site_state{carrier="viettel",commune="c1",district="d1",site="s4",state=' in after
    assert 'district="d2",site="s4"' not in after
    assert after == generate_latest(_Static(standard_families(model.snapshot()))).decode()


# -- promtool and the endpoint ------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_lints_the_hand_written_text_clean() -> None:
    registry = CollectorRegistry()
    HealthCollector(awkward_snapshot, lambda: STATS, lambda: RUNTIME, registry=registry)
    text = render(registry.collect())
    assert b'site="tram \\"P\xc3\xa0 C\xc3\xb2\\""' in text  # escaped quotes, UTF-8 diacritics
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).decode()
    assert output.strip() == "", output
    assert result.returncode == 0, output


def test_gzip_is_offered_only_when_accepted() -> None:
    assert gzip_accepted("gzip")
    assert gzip_accepted("deflate, GZIP;q=0.5")
    assert not gzip_accepted("")
    assert not gzip_accepted("identity")
    assert not gzip_accepted("gzip;q=0")
    assert not gzip_accepted("x-gzip")


class _Context:
    """The web side's view of a daemon (``WebContext``), around a health model of the test's own."""

    def __init__(self, model: HealthModel, config: Config, ledger: Ledger) -> None:
        self.model = model
        self.config = config
        devices = resolve_all(config)
        self.power = PowerTracker(devices)
        self.samples = RecentSamples(devices)
        self.ledger = ledger
        self.registry = CollectorRegistry(auto_describe=True)
        HealthCollector(model.snapshot, lambda: STATS, lambda: RUNTIME, registry=self.registry)

    def snapshot(self) -> HealthSnapshot:
        return self.model.snapshot()

    def prepare_scrape(self) -> bool:
        return self.model.refresh(1)  # one site per step: a scrape takes several here

    def readiness(self) -> tuple[bool, str]:
        return True, "ready"

    async def reload(self) -> ReloadResult:
        return ReloadResult(True, "")

    def trusted_origins(self) -> list[str]:
        return []

    def site_pollers(self, site_id: str) -> tuple[str, ...]:
        return ()

    def extend_app(self, app: web.Application) -> None:
        pass


@pytest.fixture
async def served() -> Any:
    config = make_config(standard_sites())
    store = SqliteStore(":memory:")
    await store.open()
    ledger = Ledger(store)
    await ledger.start(config)
    ctx = _Context(busy_model(), config, ledger)
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield ctx, f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()
        await ledger.stop()
        await store.close()


async def _get(url: str, accept_encoding: str | None) -> tuple[dict[str, str], bytes]:
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {}
    async with (
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as http,
        http.get(url, headers=headers) as resp,
    ):
        assert resp.status == 200
        return dict(resp.headers), await resp.read()


def _network_series(text: str) -> set[tuple[str, frozenset[tuple[str, str]], str]]:
    return {s for s in series_set(text) if not s[0].startswith(("process_", "python_"))}


async def test_the_endpoint_gzips_for_prometheus_and_follows_changes(served: Any) -> None:
    ctx, url = served
    headers, plain = await _get(url, None)
    assert "Content-Encoding" not in headers
    assert headers["Content-Type"].startswith("text/plain; version=")
    headers, packed = await _get(url, "gzip")  # what Prometheus sends
    assert headers["Content-Encoding"] == "gzip"
    unpacked = gzip.decompress(packed)
    assert len(packed) < len(unpacked)
    assert _network_series(unpacked.decode()) == _network_series(plain.decode())
    assert "process_cpu_seconds_total" in unpacked.decode()  # the standard collectors ride along

    at = T0 + 20 * MINUTE
    ctx.model.ingest(snmp("s1", "pwr1", at, {**UPS_OK, "power.battery_minutes_remaining": 17}))
    ctx.model.ingest(snmp("s2", "pwr2", at, error=_timeout()))
    _headers, packed = await _get(url, "gzip")
    text = gzip.decompress(packed).decode()
    assert 'uptimewatch_power_battery_runtime_seconds{device="pwr1",role="power",site="s1"} 1020.0' in text
    assert 'uptimewatch_snmp_poll_duration_seconds{device="pwr2",role="power",site="s2"} ' in text
    assert "uptimewatch_snmp_up" not in text  # the full detail only
    expected = generate_latest(_Static(standard_families(ctx.model.snapshot()))).decode()
    assert expected in text


def many_sites(n: int) -> HealthSnapshot:
    """``n`` sites shaped like the awkward one, each with its own ids and values."""
    template = awkward_snapshot().sites['tram "Pà Cò"']
    sites = {}
    for i in range(n):
        site_id = f"site-{i:03d}"
        devices = tuple(
            dataclasses.replace(d, site_id=site_id, fields={**d.fields, "link.rx_level_dbm": -60.0 - i})
            for d in template.devices
        )
        sites[site_id] = dataclasses.replace(template, site_id=site_id, devices=devices)
    return HealthSnapshot(T0, sites, ())


def _gzip_body(cache: SiteSeriesCache, snap: HealthSnapshot) -> tuple[bytes, bytes]:
    families = site_families(cache, snap)
    return render(families), render_body(site_families(cache, snap), gzip=True)


def test_the_gzip_answer_is_the_text_and_recompresses_only_the_changed_groups() -> None:
    cache = SiteSeriesCache()
    snap = many_sites(3 * GROUP_SITES + 5)  # four groups, the last one short
    text, packed = _gzip_body(cache, snap)
    assert gzip.decompress(packed) == text  # CRC-32 and length checked by the gzip module
    assert zlib.decompress(packed, wbits=31) == text
    assert len(packed) < len(text) / 4
    groups = cache.series(snap).groups
    assert len(groups) == 4
    pieces = [list(g.packed) for g in groups]

    # one site of the third group changes: that group's text and pieces are new, the rest kept
    changed = dict(snap.sites)
    site_id = f"site-{2 * GROUP_SITES + 1:03d}"
    changed[site_id] = dataclasses.replace(changed[site_id], state=SiteState.DOWN)
    snap2 = HealthSnapshot(T0, changed, ())
    text2, packed2 = _gzip_body(cache, snap2)
    assert gzip.decompress(packed2) == text2 != text
    assert f'site="{site_id}",state="down"}} 1.0\n' in text2.decode()
    groups2 = cache.series(snap2).groups
    assert [g is h for g, h in zip(groups, groups2, strict=True)] == [True, True, False, True]
    for number, group in enumerate(groups2):
        same = [a is b for a, b in zip(pieces[number], group.packed, strict=True) if a]
        assert all(same) == (number != 2)
    # the same answer as compressing the whole text at once would give, once unpacked
    assert gzip.decompress(packed2) == gzip.decompress(gzip.compress(text2))


def test_a_site_added_in_the_middle_regroups_and_still_unpacks_to_the_text() -> None:
    cache = SiteSeriesCache()
    snap = many_sites(2 * GROUP_SITES)
    _gzip_body(cache, snap)
    sites = list(snap.sites.items())
    extra = many_sites(1).sites["site-000"]
    extra = dataclasses.replace(extra, site_id="new-site")
    sites.insert(3, ("new-site", extra))
    snap2 = HealthSnapshot(T0, dict(sites), ())
    text, packed = _gzip_body(cache, snap2)
    assert gzip.decompress(packed) == text
    assert text == render(site_families(SiteSeriesCache(), snap2))
    assert len(cache) == 2 * GROUP_SITES + 1


async def test_a_scrape_brings_the_snapshot_up_to_date_in_steps_that_let_others_run() -> None:
    model = busy_model()
    model.snapshot()
    at = T0 + 20 * MINUTE
    for site, device in (("s1", "pwr1"), ("s2", "pwr2"), ("s3", "bts3"), ("s4", "lnk4")):
        model.ingest(snmp(site, device, at, UPS_OK))
    registry = CollectorRegistry()
    HealthCollector(model.snapshot, lambda: STATS, lambda: RUNTIME, registry=registry, process_metrics=False)
    steps: list[int] = []
    others: list[int] = []

    def prepare() -> bool:
        steps.append(len(others))
        return model.refresh(1)

    async def other() -> None:
        for _ in range(10):
            others.append(1)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    body, _headers = await scrape(registry, "", prepare)
    await task
    assert len(steps) >= 3  # several changed sites, one per step
    assert steps[-1] > steps[0]  # the other task ran between the steps
    assert body == render(registry.collect())


def _timeout() -> ProbeError:
    return ProbeError(ErrorKind.TIMEOUT, "no response")
