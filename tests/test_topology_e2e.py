"""Topology end to end: the whole daemon pinging hosts in network namespaces; the test cuts the
hub's link (and, since their traffic runs through it, the links of the sites behind it) and reads
the verdict through /api/v1/sites and /api/v1/topology/outages, as an operator would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from tests.fixtures.netns import NetnsHost
from uptimewatch.app import run_daemon

FAST = {
    "interval": "0.5s",
    "timeout": "3s",
    "hard_after": 1,
    "icmp": {"count": 2, "interval": "20ms", "timeout": "0.4s"},
}


def _site(sid: str, name: str, commune: str, address: str, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "name": name,
        "district": "d1",
        "commune": commune,
        "carrier": "vnpt",
        "devices": [{"id": role, "role": role, "address": address, "snmp_enabled": False}],
        **extra,
    }


async def _sites(url: str) -> dict[str, dict[str, Any]]:
    status, body = await async_http("GET", url + "/api/v1/sites")
    assert status == 200
    return {s["id"]: s for s in json.loads(body)["sites"]}


async def test_cut_hub_gives_one_root_cause_and_unreachable_sites_then_rechecks(
    tmp_path: Path, netns_host: Callable[[], NetnsHost]
) -> None:
    hub, paco, vanmai = netns_host(), netns_host(), netns_host()
    sites = [
        _site("hub", "Trạm HUB Mai Châu", "c1", hub.address, "router"),
        _site("paco", "BTS Pà Cò", "c2", paco.address, "bts", upstream="hub"),
        _site("vanmai", "BTS Vạn Mai", "c1", vanmai.address, "bts", upstream=["hub"]),
        # reached through the hub as configured, but it answers: its own word wins
        _site("local", "BTS Nội Bộ", "c1", "127.0.0.1", "bts", upstream="hub"),
    ]
    listen = f"127.0.0.1:{free_tcp_port()}"
    config = write_yaml(tmp_path / "config.yaml", province_config(sites, listen=listen, defaults=FAST))
    async with run_daemon(config) as daemon:
        url = daemon.url

        async def states() -> dict[str, str]:
            return {sid: s["state"] for sid, s in (await _sites(url)).items()}

        async def all_up() -> bool:
            return set((await states()).values()) == {"up"}

        await wait_until(all_up, timeout=20)

        for host in (hub, paco, vanmai):
            host.link_down()

        async def cut_off() -> bool:
            return await states() == {
                "hub": "down",
                "paco": "unreachable",
                "vanmai": "unreachable",
                "local": "up",
            }

        await wait_until(cut_off, timeout=20)
        listed = await _sites(url)
        assert listed["paco"]["reason"] == "cut off behind Trạm HUB Mai Châu (hub down)"
        status, body = await async_http("GET", url + "/api/v1/sites/vanmai")
        assert status == 200
        assert json.loads(body)["cut_off_by"] == ["hub"]

        status, body = await async_http("GET", url + "/api/v1/topology/outages")
        assert status == 200
        data = json.loads(body)
        assert data["count"] == 1
        [outage] = data["outages"]
        assert (outage["root"], outage["kind"], outage["name"], outage["state"]) == (
            "hub",
            "site",
            "Trạm HUB Mai Châu",
            "down",
        )
        assert sorted(outage["sites"]) == ["paco", "vanmai"]
        assert sorted(c["name"] for c in outage["communes"]) == ["Xã Pà Cò", "Xã Vạn Mai"]
        # the site-level alert is the hub's only: children are unreachable, never down
        assert sum(1 for s in (await states()).values() if s == "down") == 1

        # repair: the children come back through a re-check, never through "down"
        seen: set[tuple[str, str]] = set()
        for host in (hub, paco, vanmai):
            host.link_up()

        async def recovered() -> bool:
            now = await states()
            seen.update(now.items())
            return set(now.values()) == {"up"}

        await wait_until(recovered, timeout=20, interval=0.05)
        assert ("paco", "down") not in seen
        assert ("vanmai", "down") not in seen
        status, body = await async_http("GET", url + "/api/v1/topology/outages")
        assert json.loads(body)["count"] == 0
