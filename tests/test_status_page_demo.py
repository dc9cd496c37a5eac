"""The status page against the demo province, in Debian's Chromium driven by Playwright: the map
(a marker for every site, the right colours after a hub is cut, the cut-off area, the hover
reason, click through), the site page and its charts, the dispatch list while a site is on
battery, both languages (province default, Accept-Language, ``?lang=``, the switch and its
memory) and no console errors anywhere.

Screenshots are kept in var/test-artifacts/ for a person to look at:
status-map-{vi,en}.png, status-site-{vi,en}.png, status-dispatch-vi.png, status-district-vi.png,
status-map-phone-vi.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import REPO, async_http, free_tcp_port, wait_until
from tests.fixtures.ports import free_udp_port as free_port_below_ephemeral
from uptimewatch.demo import DemoOptions, DemoRuntime, run_demo
from uptimewatch.demo.firewall import unavailable_reason

playwright = pytest.importorskip("playwright.async_api", reason="playwright (Python package) not installed")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = REPO / "var" / "test-artifacts"
SITES, DISTRICTS = 24, 3
FIRST_NET = 213  # 127.213.x.y: apart from a demo someone runs (127.16.x.y) and the other demo tests
SPEED = 20.0
#: scenario seconds (at speed 20, a scenario minute is 3 real seconds and the hub's hour of battery
#: lasts 3 real minutes): mains fails at hub#0, hub#1 is cut, nothing recovers while the test looks
SCENARIO = f"""\
name: "status page: một buổi chiều mất điện"
speed: {SPEED:g}
steps:
  - {{at: 60, site: hub#0, mains: false}}
  - {{at: 120, site: hub#1, cut: true}}
"""
RGB = {
    "up": "rgb(31, 157, 85)",
    "degraded": "rgb(245, 180, 0)",
    "down": "rgb(229, 57, 53)",
    "unreachable": "rgb(142, 108, 239)",
}

pytestmark = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed"),
    pytest.mark.skipif(
        unavailable_reason() is not None,
        reason=f"a cut hub must be dead to ping too, which needs nftables as root: {unavailable_reason()}",
    ),
]


def free_udp_port() -> int:
    return free_port_below_ephemeral(f"127.{FIRST_NET}.1.1")


async def get_json(url: str) -> Any:
    status, body = await async_http("GET", url)
    assert status == 200, (url, body)
    return json.loads(body)


class Watch:
    """Everything a page says went wrong: console errors, page errors, failed or refused requests."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Any) -> None:
        page.on(
            "console", lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on(
            "response",
            lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
        )

    def _failed(self, request: Any) -> None:
        # leaving a page aborts its event stream and pending fetches: the browser's doing, not ours
        if "ABORTED" not in (request.failure or ""):
            self.problems.append(f"failed: {request.url} {request.failure}")


async def fill_of(page: Any, selector: str) -> str:
    return str(await page.eval_on_selector(selector, "e => getComputedStyle(e).fill"))


async def test_map_site_page_languages_on_the_demo(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    opts = DemoOptions(
        sites=SITES,
        districts=DISTRICTS,
        listen=f"127.0.0.1:{free_tcp_port()}",
        workdir=tmp_path / "demo",
        duration=240,
        snmp_port=free_udp_port(),
        scenario=scenario,
        interval="1s",
        first_net=FIRST_NET,
        nft_table=f"uwdemo_page_{os.getpid()}",
        mqtt=False,
    )
    started: list[DemoRuntime] = []
    demo = asyncio.create_task(run_demo(opts, out=lambda _line: None, on_start=started.append))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watch = Watch()
    try:
        await wait_until(lambda: bool(started) or demo.done(), timeout=60)
        assert started, "the demo ended before it started"
        rt = started[0]
        base = rt.url
        assert base is not None
        hub0, hub1 = rt.province.select("hub#0"), rt.province.select("hub#1")
        behind = set(rt.province.downstream(hub1))
        assert behind

        async def cut_and_on_battery() -> dict[str, Any] | None:
            sites = {s["id"]: s for s in (await get_json(base + "/api/v1/sites"))["sites"]}
            ttd = (await get_json(base + "/api/v1/power/time-to-dark"))["sites"]
            if sites[hub1]["state"] != "down" or any(sites[s]["state"] != "unreachable" for s in behind):
                return None
            if not any(r["site_id"] == hub0 and r["status"] == "on_battery" for r in ttd):
                return None
            return sites

        sites = await wait_until(cut_and_on_battery, timeout=60)
        # the charts need a few samples of the discharge and of ping
        await asyncio.sleep(6)
        sites = {s["id"]: s for s in (await get_json(base + "/api/v1/sites"))["sites"]}

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                # -- Vietnamese: the province's language, and the browser asks for it too ---------
                vi = await browser.new_context(viewport={"width": 1600, "height": 1000}, locale="vi-VN")
                page = await vi.new_page()
                watch.attach(page)
                await page.goto(base + "/")
                await page.wait_for_selector(f".marker[data-site='{hub1}'][data-state='down']")
                assert await page.get_attribute("html", "lang") == "vi"
                assert (await page.inner_text("#nav-overview-text")) == "Tổng quan"
                # a marker for every site, each coloured by its state
                markers = await page.eval_on_selector_all(
                    ".marker[data-site]", "els => els.map(e => [e.dataset.site, e.dataset.state])"
                )
                assert sorted(m[0] for m in markers) == sorted(sites)
                assert len(markers) == SITES
                assert await fill_of(page, f".marker[data-site='{hub1}'] .dot") == RGB["down"]
                for sid in behind:
                    assert await fill_of(page, f".marker[data-site='{sid}'] .dot") == RGB["unreachable"]

                async def markers_match_api() -> bool:
                    api = {s["id"]: s["state"] for s in (await get_json(base + "/api/v1/sites"))["sites"]}
                    drawn = await page.eval_on_selector_all(
                        ".marker[data-site]", "els => els.map(e => [e.dataset.site, e.dataset.state])"
                    )
                    return dict(drawn) == api

                await wait_until(markers_match_api, timeout=20)  # states move on: the page follows
                # the cut-off area is drawn, and the hub's uplinks to it are marked failed
                await page.wait_for_selector(f".cutoff[data-root='{hub1}'] path")
                failed = await page.eval_on_selector_all(
                    f"line.uplink[data-from='{hub1}']", "els => els.map(e => e.getAttribute('class'))"
                )
                assert failed
                assert all("link-down" in c for c in failed)
                # hover: the reason; no emoji that the fonts lack
                # the marker drawn last is on top of any it overlaps
                leaf = await page.eval_on_selector_all(
                    ".marker[data-state='unreachable']", "els => els[els.length - 1].dataset.site"
                )
                assert leaf in behind
                await page.hover(f".marker[data-site='{leaf}']")
                await page.wait_for_selector("#maptip:not([hidden])")
                tip = await page.inner_text("#maptip")
                # the API's reason is English; the page says it in Vietnamese, naming the same hub
                assert sites[leaf]["reason"].startswith("cut off behind " + sites[hub1]["name"])
                assert "bị cô lập sau " + sites[hub1]["name"] in tip
                assert "🔋" not in await page.content()
                await page.wait_for_selector(".card .icon.battery")
                await page.mouse.move(5, 5)
                await page.screenshot(path=str(ARTIFACTS / "status-map-vi.png"), full_page=True)
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.screenshot(path=str(ARTIFACTS / "status-map-phone-vi.png"), full_page=True)
                await page.set_viewport_size({"width": 1600, "height": 1000})

                # -- click through to the site page of the hub on battery -----------------------------
                await page.click(f".marker[data-site='{hub0}']")
                await page.wait_for_url(f"**/status/site/{hub0}")
                await page.wait_for_selector(f"h1[data-site-page='{hub0}']")
                for chart in ("charge", "voltage", "rtt", "loss"):
                    # a flat line (no loss at all) has no height: attached, not visible
                    await page.wait_for_selector(
                        f"figure.chart[data-chart='{chart}'] path.line", state="attached"
                    )
                    d = await page.get_attribute(f"figure.chart[data-chart='{chart}'] path.line", "d")
                    assert d is not None
                    assert d.count("L") >= 2, (chart, d)
                assert await page.locator("svg.timeline rect.span").count() >= 1
                power = await page.inner_text("[data-panel='power']")
                assert "Thời gian đến khi mất điện" in power
                assert "đang chạy ắc quy" in power.lower()
                # Vietnamese numbers: a decimal comma in the battery voltage
                volts = await page.inner_text("[data-panel='power'] table.facts")
                assert any(ch.isdigit() for ch in volts)
                assert "," in volts.split("V")[0] or "." not in volts
                await page.screenshot(path=str(ARTIFACTS / "status-site-vi.png"), full_page=True)

                # -- the dispatch list says for how long the site has been on battery -----------------
                await page.goto(base + "/status/dispatch")
                cell = f"tr[data-site='{hub0}'] td.on-battery-for"
                await page.wait_for_selector(cell)
                assert (await page.inner_text(cell)).strip() not in ("", "–")
                await page.screenshot(path=str(ARTIFACTS / "status-dispatch-vi.png"), full_page=True)
                district = sites[hub1]["district"]
                await page.goto(f"{base}/status/district/{district}")
                await page.wait_for_selector(f"tr[data-site='{hub1}'][data-state='down']")
                await page.screenshot(path=str(ARTIFACTS / "status-district-vi.png"), full_page=True)

                # -- the switch: English at once, and remembered --------------------------------------
                await page.goto(f"{base}/status/site/{hub0}")
                await page.wait_for_selector("figure.chart[data-chart='rtt'] path.line", state="attached")
                await page.click("#lang button[data-lang='en']")
                await page.wait_for_function("document.documentElement.lang === 'en'")
                await page.wait_for_selector("text=Time to dark")
                assert (await page.inner_text("#nav-overview-text")) == "Overview"
                await page.wait_for_selector("figure.chart[data-chart='voltage'] path.line", state="attached")
                await page.screenshot(path=str(ARTIFACTS / "status-site-en.png"), full_page=True)
                await page.goto(base + "/")
                await page.wait_for_selector(f".marker[data-site='{hub1}'][data-state='down']")
                assert await page.get_attribute("html", "lang") == "en"
                assert "Districts" in await page.inner_text("main")
                await page.screenshot(path=str(ARTIFACTS / "status-map-en.png"), full_page=True)
                # ?lang= beats the remembered choice
                await page.goto(base + "/?lang=vi")
                await page.wait_for_selector(".marker[data-site]")
                assert await page.get_attribute("html", "lang") == "vi"
                await vi.close()

                # -- Accept-Language without a remembered choice; the province's language otherwise ----
                for locale, expected in (("en-US", "en"), ("vi-VN", "vi"), ("fr-FR", "vi")):
                    ctx = await browser.new_context(locale=locale)
                    p = await ctx.new_page()
                    watch.attach(p)
                    await p.goto(base + "/")
                    await p.wait_for_selector(".marker[data-site]")
                    assert await p.get_attribute("html", "lang") == expected, locale
                    await ctx.close()
            finally:
                await browser.close()
        assert watch.problems == []
    finally:
        demo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo
