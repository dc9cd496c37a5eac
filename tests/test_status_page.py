"""The operators' status page in headless Chromium (Debian's, driven by Playwright) against the
real daemon polling snmpsim: pages load clean, a site going down turns red through the live
stream without a reload, acknowledging needs the configured token, diacritics reach the DOM.

Screenshots are kept in var/test-artifacts/ (wide and phone) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import REPO, async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.snmpsim import SnmpsimEndpoint, free_udp_port
from uptimewatch.app import run_daemon

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TOKEN = "tok-Ack-2026-example"
ARTIFACTS = REPO / "var" / "test-artifacts"

playwright = pytest.importorskip("playwright.async_api", reason="playwright (Python package) not installed")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _config(sim: SnmpsimEndpoint, listen: str, paco_port: int) -> dict[str, Any]:
    def snmp(community: str, port: int | None = None) -> dict[str, Any]:
        # the agents that answer get headroom for a loaded machine, so that only the dead one goes down
        timeout = "0.9s" if port is None or port == sim.port else "0.3s"
        return {"port": port or sim.port, "community": community, "timeout": timeout, "retries": 0}

    sites = [
        {
            "id": "hub-maichau",
            "name": "Trạm HUB Mai Châu",
            "district": "d1",
            "commune": "c1",
            "carrier": "vnpt",
            "devices": [
                {"id": "router", "role": "router", "address": sim.host, "snmp": snmp("iosxe_asr920")},
                {"id": "power", "role": "power", "address": sim.host, "snmp": snmp("cetpower")},
            ],
        },
        {
            "id": "bts-paco",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "commune": "c2",
            "carrier": "viettel",
            "priority": "critical",
            "devices": [
                {"id": "bts", "role": "bts", "address": sim.host, "snmp": snmp("iosxe_asr920", paco_port)}
            ],
        },
        {
            "id": "bts-dabac",
            "name": "Trạm Đà Bắc",
            "district": "d2",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": sim.host, "snmp": snmp("iosxe_asr920")}],
        },
    ]
    data = province_config(
        sites,
        listen=listen,
        defaults={"interval": "1s", "timeout": "3s", "hard_after": 1, "icmp": {"enabled": False}},
    )
    data["districts"].append({"id": "d2", "name": "Huyện Đà Bắc"})
    data["alerting"] = {"evaluation_interval": "1s", "auth": {"bearer_tokens": [TOKEN]}}
    return data


async def test_status_page_live(tmp_path: Path, snmpsim: SnmpsimEndpoint) -> None:
    from playwright.async_api import async_playwright

    listen = f"127.0.0.1:{free_tcp_port()}"
    config = write_yaml(tmp_path / "config.yaml", _config(snmpsim, listen, snmpsim.port))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with run_daemon(config) as daemon:
        base = daemon.url

        async def all_up() -> bool:
            _, body = await async_http("GET", base + "/api/v1/sites")
            return all(s["state"] == "up" for s in json.loads(body)["sites"])

        await wait_until(all_up, timeout=30)
        status, body = await async_http("GET", base + "/api/v1/status/overview")
        overview = json.loads(body)
        assert status == 200
        assert overview["province"]["counts"]["up"] == 3
        assert {d["id"]: d["total"] for d in overview["districts"]} == {"d1": 2, "d2": 1}
        assert (await async_http("GET", base + "/api"))[1].startswith("uptimewatch")

        problems: list[str] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                args=ARGS,
                viewport={"width": 1600, "height": 900},
                locale="vi-VN",
            )
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on(
                    "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
                )
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

                def failed(request: Any) -> None:
                    # leaving a page aborts its event stream and the fetches still in flight (the
                    # dispatch list's two, on a loaded machine): the browser's doing, not ours
                    if "ABORTED" not in (request.failure or ""):
                        problems.append(f"failed: {request.url} {request.failure}")

                page.on("requestfailed", failed)
                page.on(
                    "response",
                    lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
                )

                # -- province overview
                await page.goto(base + "/")
                await page.wait_for_selector(".card[data-district='d1']")
                text = await page.inner_text("body")
                for words in ("Tỉnh Thử Nghiệm", "Huyện Mai Châu", "Huyện Đà Bắc"):
                    assert words in text
                await page.wait_for_selector("#live.on")  # the event stream is open
                await page.screenshot(path=str(ARTIFACTS / "status-page-overview.png"), full_page=True)

                # -- district page, then the site goes down with the page left alone
                await page.click(".card[data-district='d1']")
                row = "tr[data-site='bts-paco']"
                await page.wait_for_selector(f"{row}[data-state='up']")
                assert "Trạm Pà Cò" in await page.inner_text(row)
                await page.wait_for_selector("#live.on")
                dead = free_udp_port()
                write_yaml(config, _config(snmpsim, listen, dead))
                assert (await daemon.reload()).ok
                await page.wait_for_selector(f"{row}[data-state='down']", timeout=15_000)
                colour = await page.eval_on_selector(
                    f"{row} .pill", "e => getComputedStyle(e).backgroundColor"
                )
                assert colour == "rgb(229, 57, 53)"  # --down
                # the reason, in the page's language
                assert "SNMP quá thời gian chờ" in await page.inner_text(row)
                await page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.screenshot(path=str(ARTIFACTS / "status-page-phone.png"), full_page=True)
                await page.set_viewport_size({"width": 1600, "height": 900})

                # -- the dispatch list renders (nothing on battery in these recordings), in the
                # language the browser asks for
                await page.goto(base + "/status/dispatch")
                await page.wait_for_selector("[data-empty='dispatch']")
                assert "Không có trạm nào đang chạy ắc quy" in await page.inner_text("main")

                # -- acknowledging: refused without credentials, done with the token
                async def site_down_alert() -> dict[str, Any] | None:
                    _, body = await async_http("GET", base + "/api/v1/alerts?state=firing")
                    found = [
                        a
                        for a in json.loads(body)["alerts"]
                        if a["name"] == "SiteDown" and a["labels"].get("site") == "bts-paco"
                    ]
                    return found[0] if found else None

                alert = await wait_until(site_down_alert, timeout=20)
                status, _ = await async_http("POST", f"{base}/api/v1/alerts/{alert['id']}/ack")
                assert status == 401
                await page.goto(base + "/status/alerts")
                button = f"tr[data-alert='{alert['id']}'] button.ack"
                await page.click(button)
                await page.wait_for_selector("#auth:not([hidden])")
                await page.fill("#auth-token", TOKEN)
                await page.fill("#auth-name", "Nguyễn Văn Trực")
                await page.click("#auth-form button[type=submit]")
                acked = f"tr[data-alert='{alert['id']}'] [data-acked]"
                await page.wait_for_selector(acked, timeout=10_000)
                assert "Nguyễn Văn Trực" in await page.inner_text(acked)
                assert await page.evaluate("sessionStorage.getItem('uptimewatch.token')") == TOKEN
                await page.screenshot(path=str(ARTIFACTS / "status-page-alerts.png"), full_page=True)
            finally:
                await browser.close()
        assert problems == []
        _, body = await async_http("GET", f"{base}/api/v1/alerts/{alert['id']}")
        assert json.loads(body)["ack"]["by"] == "Nguyễn Văn Trực"
