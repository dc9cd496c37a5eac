"""The alert engine inside the whole daemon: a real SNMP agent (snmpsim serving a real recording)
stops answering, the site goes down, a SiteDown notice comes out; ``uptimewatch ack`` acknowledges
it over HTTP with a token; and a daemon killed with SIGKILL neither repeats its firing notice nor
loses the resolved one after a restart."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemon import (
    async_http,
    free_tcp_port,
    http_get,
    province_config,
    wait_until,
    write_yaml,
)
from tests.fixtures.snmpsim import SnmpsimEndpoint, SnmpsimProcess, corpus_recording, free_udp_port
from uptimewatch.app import run_daemon
from uptimewatch.notify.types import Notification

TOKEN = "ack-token-Qz31"
RECORDING = "iosxe_asr920"
FAST = {"interval": "1s", "timeout": "2s", "hard_after": 1, "icmp": {"enabled": False}}


class MemorySink:
    def __init__(self) -> None:
        self.notices: list[Notification] = []

    async def enqueue(self, notifications: Sequence[Notification]) -> None:
        known = {n.id for n in self.notices}
        self.notices += [n for n in notifications if n.id not in known]


def _site(port: int) -> dict[str, Any]:
    return {
        "id": "bts-paco",
        "name": "Trạm Pà Cò",
        "district": "d1",
        "commune": "c2",
        "carrier": "vnpt",
        "devices": [
            {
                "id": "bts",
                "role": "bts",
                "address": "127.0.0.1",
                "snmp": {"port": port, "community": RECORDING, "timeout": "0.3s", "retries": 0},
            }
        ],
    }


def _config(path: Path, listen: str, port: int, **extra: Any) -> Path:
    data = province_config([_site(port)], listen=listen, defaults=FAST)
    data["alerting"] = {
        "evaluation_interval": "1s",
        "group_wait": 0,
        "group_interval": "1s",
        "default_receiver": "noc",
        "auth": {"bearer_tokens": [TOKEN]},
    }
    data.update(extra)
    return write_yaml(path, data)


async def _alerts(base: str) -> list[dict[str, Any]]:
    status, body = await async_http("GET", base + "/api/v1/alerts")
    assert status == 200, body
    alerts: list[dict[str, Any]] = json.loads(body)["alerts"]
    return alerts


async def _ack(base: str, alert_id: str, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uptimewatch.cli",
        "ack",
        alert_id,
        "--by",
        "Lò Văn Bình",
        "--comment",
        "xe đang đến trạm",
        "--url",
        base,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_device_that_stops_answering_fires_site_down_and_ack_works(tmp_path: Path) -> None:
    sim = SnmpsimProcess({RECORDING: corpus_recording(RECORDING)}, v3=False)
    try:
        await asyncio.to_thread(sim.wait_ready)
        listen = f"127.0.0.1:{free_tcp_port()}"
        config = _config(tmp_path / "config.yaml", listen, sim.port)
        async with run_daemon(config) as daemon:
            sink = MemorySink()
            daemon.alerts.set_sink(sink)
            base = daemon.url

            async def site_up() -> bool:
                _s, body = await async_http("GET", base + "/api/v1/sites/bts-paco")
                return bool(json.loads(body)["state"] == "up")

            await wait_until(site_up, timeout=30)
            assert await _alerts(base) == []

            await asyncio.to_thread(sim.stop)  # the agent goes silent
            await wait_until(lambda: [n for n in sink.notices if n.kind == "firing"], timeout=30)
            (notice,) = sink.notices
            assert (notice.receiver, notice.title) == (
                "noc",
                str(notice.alerts[0].summary).join(["[FIRING] ", ""]),
            )
            (info,) = notice.alerts
            assert (info.name, info.labels["site"], info.severity) == ("SiteDown", "bts-paco", "critical")
            assert "Trạm Pà Cò down" in str(info.summary)
            assert "SNMP timeout" in str(info.summary)

            (alert,) = await _alerts(base)
            assert (alert["id"], alert["state"], alert["notified"]) == (info.fingerprint, "firing", ["noc"])

            # the CLI without credentials is refused; with the token it acknowledges
            rc, _out, err = await _ack(base, alert["id"][:8])
            assert rc == 1
            assert "401" in err
            rc, out, err = await _ack(base, alert["id"][:8], "--token", TOKEN)
            assert rc == 0, err
            assert "acknowledged" in out
            assert "Trạm Pà Cò" in out
            (alert,) = await _alerts(base)
            assert alert["ack"]["by"] == "Lò Văn Bình"
            assert alert["ack"]["comment"] == "xe đang đến trạm"
            assert [n.kind for n in sink.notices] == ["firing", "acknowledged"]

            _s, text = await async_http("GET", base + "/metrics")
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
            }
            assert samples[("uptimewatch_alerts", (("severity", "critical"), ("state", "firing")))] == 1
            assert samples[("uptimewatch_alert_notifications_total", (("kind", "firing"),))] == 1
            beat = samples[("uptimewatch_heartbeat_timestamp_seconds", ())]
            assert abs(beat - time.time()) < 30
            assert TOKEN not in text
    finally:
        sim.stop()


def _history(base: str, alert_id: str) -> list[str]:
    status, body = http_get(f"{base}/api/v1/alerts/{alert_id}")
    assert status == 200, body
    return [h["event"] for h in reversed(json.loads(body)["history"])]


def _wait(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


def _firing(base: str) -> dict[str, Any] | None:
    status, body = http_get(base + "/api/v1/alerts")
    if status != 200:
        return None
    alerts = [a for a in json.loads(body)["alerts"] if a["name"] == "SiteDown"]
    return alerts[0] if alerts and alerts[0]["notified"] else None


def test_sigkill_neither_repeats_firing_nor_loses_resolved(
    tmp_path: Path, daemon_process: Any, snmpsim: SnmpsimEndpoint
) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    notify = {
        "notify": {"receivers": [{"name": "noc", "webhook": {"url": f"http://127.0.0.1:{free_tcp_port()}/"}}]}
    }
    config = _config(tmp_path / "config.yaml", listen, free_udp_port(), **notify)  # nothing answers there

    first = daemon_process(config, listen)
    first.wait_ready()
    alert = _wait(lambda: _firing(first.url))
    assert _history(first.url, alert["id"]).count("notice:firing") == 1
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)

    second = daemon_process(config, listen)
    second.wait_ready()
    again = _wait(lambda: _firing(second.url))
    assert again["id"] == alert["id"]
    time.sleep(3)  # several evaluations with the site still down
    assert _history(second.url, alert["id"]).count("notice:firing") == 1

    # the agent answers again (the device now points at a live recording): resolved, exactly once
    _config(tmp_path / "config.yaml", listen, snmpsim.port, **notify)
    second.signal(signal.SIGHUP)

    def resolved() -> bool:
        return _history(second.url, alert["id"]).count("notice:resolved") == 1

    _wait(resolved)
    events = _history(second.url, alert["id"])
    assert events.count("notice:firing") == 1, events
    assert events.count("notice:resolved") == 1, events
    assert second.stop() == 0
