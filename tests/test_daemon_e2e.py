"""End to end: the whole daemon on a real configuration, polling snmpsim (real recordings) and
ICMP on loopback; checked through /metrics and the JSON API, as an operator would."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import (
    async_http,
    free_tcp_port,
    http_get,
    http_request,
    province_config,
    wait_until,
    write_yaml,
)
from tests.fixtures.snmpsim import SnmpsimEndpoint
from uptimewatch.app import run_daemon

FAST = {"interval": "1s", "timeout": "4s", "hard_after": 1, "icmp": {"count": 2, "interval": "20ms"}}


def _sites(sim: SnmpsimEndpoint, dead_port: int) -> list[dict[str, Any]]:
    def snmp(community: str) -> dict[str, Any]:
        return {"port": sim.port, "community": community, "timeout": "0.5s", "retries": 0}

    return [
        {
            "id": "hub-maichau",
            "name": "Trạm Mai Châu",
            "district": "d1",
            "commune": "c1",
            "carrier": "vnpt",
            "devices": [
                {"id": "power", "role": "power", "address": sim.host, "snmp": snmp("cetpower")},
                {"id": "router", "role": "router", "address": sim.host, "snmp": snmp("iosxe_asr920")},
            ],
        },
        {
            "id": "bts-paco",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "commune": "c2",
            "carrier": "viettel",
            "upstream": "hub-maichau",
            "devices": [
                # an SNMP agent that is not there: SNMP times out while ping still answers
                {
                    "id": "power",
                    "role": "power",
                    "address": "127.0.0.1",
                    "snmp": {
                        "port": dead_port,
                        "community": "s3cr3t-community",
                        "timeout": "0.3s",
                        "retries": 0,
                    },
                },
                {"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False},
            ],
        },
    ]


async def _promtool_check_metrics(text: str) -> tuple[int | None, str]:
    """``promtool check metrics`` on an exposition: its exit code and everything it printed."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus, in the Makefile's DEBIAN_PACKAGES) is missing"
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), timeout=60)
    return proc.returncode, out.decode().strip()


def _metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(metrics: dict[Any, float], name: str, **labels: str) -> float | None:
    want = set(labels.items())
    found = [v for (n, ls), v in metrics.items() if n == name and want <= ls]
    assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
    return found[0] if found else None


async def test_daemon_polls_and_exports(tmp_path: Path, snmpsim: SnmpsimEndpoint) -> None:
    from tests.fixtures.snmpsim import free_udp_port

    listen = f"127.0.0.1:{free_tcp_port()}"
    data = province_config(_sites(snmpsim, free_udp_port()), listen=listen, defaults=FAST)
    data["server"]["metrics_detail"] = "full"  # uptimewatch_snmp_up is read below
    config = write_yaml(tmp_path / "config.yaml", data)
    async with run_daemon(config) as daemon:
        base = daemon.url

        async def all_sites_judged() -> bool:
            status, body = await async_http("GET", base + "/api/v1/sites")
            return status == 200 and all(s["state"] != "unknown" for s in json.loads(body)["sites"])

        await wait_until(all_sites_judged, timeout=30)

        async def hub_devices_read() -> bool:
            _status, body = await async_http("GET", base + "/api/v1/sites/hub-maichau")
            devices = {d["device_id"]: d for d in json.loads(body)["devices"]}
            return "power.battery_minutes_remaining" in devices["power"]["fields"] and all(
                "snmp" in d["probes"] for d in devices.values()
            )

        await wait_until(hub_devices_read, timeout=30)

        # the power unit of bts-paco needs its SNMP timeout before its check is judged
        async def paco_power_judged() -> dict[str, Any] | None:
            _status, body = await async_http("GET", base + "/api/v1/sites/bts-paco")
            site = json.loads(body)
            power = next(d for d in site["devices"] if d["device_id"] == "power")
            return site if any(c["name"] == "snmp.reachable" for c in power["checks"]) else None

        paco = await wait_until(paco_power_judged, timeout=30)

        status, body = await async_http("GET", base + "/api/v1/sites/hub-maichau")
        assert status == 200
        hub = json.loads(body)
        assert hub["name"] == "Trạm Mai Châu"
        assert hub["state"] == "up", hub["reason"]
        power = next(d for d in hub["devices"] if d["device_id"] == "power")
        # cetpower (CE+T inverter): 6000 min, 51.3 V; source says battery but mains is fine
        assert power["fields"]["power.battery_minutes_remaining"] == 6000
        assert power["fields"]["power.battery_voltage_volts"] == 51.3
        assert power["fields"]["power.on_battery"] is False

        assert paco["state"] == "degraded"
        assert "SNMP" in paco["reason"]
        assert "timeout" in paco["reason"].lower()

        status, text = await async_http("GET", base + "/metrics")
        assert status == 200
        m = _metrics(text)
        assert _value(m, "uptimewatch_site_state", site="hub-maichau", state="up") == 1
        assert _value(m, "uptimewatch_site_state", site="hub-maichau", state="down") == 0
        assert _value(m, "uptimewatch_site_state", site="bts-paco", state="degraded") == 1
        assert _value(m, "uptimewatch_power_battery_runtime_seconds", site="hub-maichau") == 6000 * 60
        assert _value(m, "uptimewatch_power_battery_voltage_volts", site="hub-maichau") == 51.3
        assert _value(m, "uptimewatch_power_on_battery", site="hub-maichau") == 0
        assert _value(m, "uptimewatch_snmp_up", site="bts-paco", device="power") == 0
        assert _value(m, "uptimewatch_snmp_up", site="hub-maichau", device="router") == 1
        assert _value(m, "uptimewatch_icmp_loss_ratio", site="bts-paco", device="bts") == 0
        assert _value(m, "uptimewatch_config_last_reload_successful") == 1
        assert _value(m, "uptimewatch_build_info") == 1
        assert "s3cr3t-community" not in text
        # the exposition a Prometheus scrapes, as it is: promtool's linter has nothing to say
        assert await _promtool_check_metrics(text) == (0, "")

        status, body = await async_http("GET", base + "/api/v1/sites/bts-paco")
        assert "s3cr3t-community" not in body
        status, body = await async_http("GET", base + "/api/v1/sites?carrier=viettel")
        assert [s["id"] for s in json.loads(body)["sites"]] == ["bts-paco"]
        assert (await async_http("GET", base + "/api/v1/sites/nope"))[0] == 404
        assert (await async_http("GET", base + "/healthz"))[0] == 200
        assert (await async_http("GET", base + "/readyz"))[0] == 200


def test_sighup_keeps_old_config_on_error(
    tmp_path: Path, snmpsim: SnmpsimEndpoint, daemon_process: Any
) -> None:
    from tests.fixtures.snmpsim import free_udp_port

    listen = f"127.0.0.1:{free_tcp_port()}"
    good = province_config(_sites(snmpsim, free_udp_port()), listen=listen, defaults=FAST)
    config = write_yaml(tmp_path / "config.yaml", good)
    proc = daemon_process(config, listen)
    proc.wait_ready()

    def site_ids() -> list[str]:
        return sorted(s["id"] for s in json.loads(http_get(proc.url + "/api/v1/sites")[1])["sites"])

    def reload_ok() -> float | None:
        return _value(
            _metrics(http_get(proc.url + "/metrics")[1]), "uptimewatch_config_last_reload_successful"
        )

    assert site_ids() == ["bts-paco", "hub-maichau"]
    assert reload_ok() == 1

    # a broken file: an unknown district; the daemon keeps polling the old configuration
    broken = json.loads(json.dumps(good))
    broken["sites"][1]["district"] = "d9"
    write_yaml(config, broken)
    proc.signal(signal.SIGHUP)
    _poll(lambda: reload_ok() == 0)
    assert site_ids() == ["bts-paco", "hub-maichau"]
    assert "district 'd9'" in proc.log()

    # the same through POST /-/reload: refused with the reason
    status, body = http_request("POST", proc.url + "/-/reload")
    assert status == 400
    assert "d9" in body

    # a good file with one more site: swapped in
    fixed = json.loads(json.dumps(good))
    fixed["sites"].append(
        {
            "id": "bts-new",
            "name": "Trạm Mới",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.3", "snmp_enabled": False}],
        }
    )
    write_yaml(config, fixed)
    proc.signal(signal.SIGHUP)
    _poll(lambda: reload_ok() == 1)
    assert site_ids() == ["bts-new", "bts-paco", "hub-maichau"]
    assert proc.stop() == 0


def _poll(predicate: Any, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
