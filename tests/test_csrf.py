"""The open API (no ``alerting.auth``) is no CSRF target: the POSTs a page on another site can make
a browser send without a preflight are refused, and nothing they asked for happens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml
from uptimewatch.app import run_daemon

SILENCE = {"matchers": {"site": "s1"}, "duration": "30d", "created_by": "x", "comment": "forged"}
EVIL = "http://evil.example"


def _config(tmp_path: Path, listen: str) -> Path:
    site = {
        "id": "s1",
        "name": "Trạm 1",
        "district": "d1",
        "commune": "c1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
    }
    data = province_config([site], listen=listen, defaults={"interval": "30s"})
    data["server"]["trusted_origins"] = ["https://noc.example.vn"]
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    return write_yaml(tmp_path / "config.yaml", data)


async def _post(url: str, **kwargs: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as resp:
        return resp.status, await resp.text()


async def _silences(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(base + "/api/v1/silences") as resp:
        return int(json.loads(await resp.text())["count"])


# what a hostile page can send with <form> or fetch(..., {mode: "no-cors"}) and no preflight
BROWSER_POSTS = {
    "text/plain": {"data": json.dumps(SILENCE), "headers": {"Content-Type": "text/plain"}},
    "form-encoded": {"data": {"matchers": "x", "duration": "30d"}},
    "multipart": {},  # built in the test: a FormData is single-use
    "json from evil origin": {"json": SILENCE, "headers": {"Origin": EVIL}},
    "text/plain from evil origin": {
        "data": json.dumps(SILENCE),
        "headers": {"Content-Type": "text/plain;charset=UTF-8", "Origin": EVIL},
    },
    "sec-fetch-site cross-site": {"json": SILENCE, "headers": {"Sec-Fetch-Site": "cross-site"}},
    "origin null (sandboxed page)": {"json": SILENCE, "headers": {"Origin": "null"}},
}


@pytest.mark.parametrize("case", sorted(BROWSER_POSTS))
async def test_browser_style_posts_create_no_silence(tmp_path: Path, case: str) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    async with run_daemon(_config(tmp_path, listen)) as daemon:
        kwargs = dict(BROWSER_POSTS[case])
        if case == "multipart":
            kwargs = {"data": aiohttp.FormData({"duration": "30d", "comment": "forged"})}
        status, body = await _post(daemon.url + "/api/v1/silences", **kwargs)
        assert status in (403, 415), body
        assert "error" in json.loads(body)
        assert await _silences(daemon.url) == 0


async def test_reload_from_a_foreign_origin_is_refused(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    async with run_daemon(_config(tmp_path, listen)) as daemon:
        before = daemon._reload_state.success_timestamp
        for headers in ({"Origin": EVIL}, {"Content-Type": "application/x-www-form-urlencoded"}):
            status, body = await _post(daemon.url + "/-/reload", headers=headers)
            assert status in (403, 415), body
        assert daemon._reload_state.success_timestamp == before  # nothing was reloaded
        # curl -X POST (no Origin, no body) and the daemon's own page still can
        status, body = await _post(daemon.url + "/-/reload")
        assert status == 200, body
        status, body = await _post(daemon.url + "/-/reload", headers={"Origin": f"http://{listen}"})
        assert status == 200, body


async def test_json_from_no_origin_own_origin_or_a_trusted_one_is_accepted(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    async with run_daemon(_config(tmp_path, listen)) as daemon:
        url = daemon.url + "/api/v1/silences"
        for headers in (
            {},
            {"Origin": f"http://{listen}", "Sec-Fetch-Site": "same-origin"},
            {"Origin": "https://NOC.example.vn", "Sec-Fetch-Site": "cross-site"},
        ):
            status, body = await _post(url, json=SILENCE, headers=headers)
            assert status == 201, (headers, body)
        assert await _silences(daemon.url) == 3
