"""A reload is all or nothing: one test per way the new configuration can fail beyond its file
(a port held by another process, an unreadable file, a broken CA file, a hung file system).
Each checks that the old configuration keeps running whole, the metric says 0, and the answer
says why."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.fixtures.daemon import free_tcp_port, http_get, http_request, province_config, write_yaml
from tests.fixtures.snmpsim import free_udp_port
from uptimewatch.app import run_daemon


def _site(site_id: str) -> dict[str, Any]:
    return {
        "id": site_id,
        "name": f"Trạm {site_id}",
        "district": "d1",
        "commune": "c1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
    }


def _config(tmp_path: Path, listen: str, sites: list[str], **extra: Any) -> dict[str, Any]:
    data = province_config([_site(s) for s in sites], listen=listen, defaults={"interval": "30s"})
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    data.update(extra)
    return data


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _site_ids(url: str) -> list[str]:
    status, body = http_get(url + "/api/v1/sites")
    assert status == 200
    return sorted(s["id"] for s in json.loads(body)["sites"])


def test_trap_port_held_by_another_process_keeps_the_old_config_whole(
    tmp_path: Path, daemon_process: Any
) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    path = write_yaml(tmp_path / "config.yaml", _config(tmp_path, listen, ["s1"]))
    proc = daemon_process(path, listen)
    proc.wait_ready()

    port = free_udp_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(('127.0.0.1', {port}))\n"
            "print('bound', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "bound"
        # valid, and more than traps: a second site that must not appear either
        traps = {"enabled": True, "listen": f"127.0.0.1:{port}", "communities": ["trap-community"]}
        write_yaml(tmp_path / "config.yaml", _config(tmp_path, listen, ["s1", "s2"], traps=traps))

        status, body = http_request("POST", proc.url + "/-/reload")
        assert status == 400, body
        answer = json.loads(body)
        assert answer["ok"] is False
        assert f"traps: cannot listen on udp 127.0.0.1:{port}" in answer["message"]
        assert "in use" in answer["message"]
        assert _site_ids(proc.url) == ["s1"]  # the old configuration, whole
        _status, metrics = http_get(proc.url + "/metrics")
        assert _metric(metrics, "uptimewatch_config_last_reload_successful") == 0
        assert http_get(proc.url + "/readyz")[0] == 200  # running, on the old configuration

        # the same through SIGHUP: logged with the reason, and no task exception lost on the way
        proc.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.log().count("configuration reload failed") < 2:
            time.sleep(0.1)
        log = proc.log()
        assert log.count("configuration reload failed") == 2, log
        assert "Task exception was never retrieved" not in log
        assert _site_ids(proc.url) == ["s1"]
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    # the port is free now: the same file applies, traps and the second site together
    status, body = http_request("POST", proc.url + "/-/reload")
    assert status == 200, body
    assert _site_ids(proc.url) == ["s1", "s2"]
    _status, metrics = http_get(proc.url + "/metrics")
    assert _metric(metrics, "uptimewatch_config_last_reload_successful") == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            raise AssertionError("the daemon does not hold the trap port after the reload")
    assert proc.stop() == 0
    assert "Task exception was never retrieved" not in proc.log()


async def _post_reload(base: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(base + "/-/reload", headers=headers) as resp:
        return resp.status, json.loads(await resp.text())


async def _reload_metric(base: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        return _metric(await resp.text(), "uptimewatch_config_last_reload_successful")


async def test_trap_settings_change_on_the_same_port_hands_the_socket_over(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    port = free_udp_port()
    traps = {"enabled": True, "listen": f"127.0.0.1:{port}", "communities": ["first-community"]}
    path = write_yaml(tmp_path / "config.yaml", _config(tmp_path, listen, ["s1"], traps=traps))
    async with run_daemon(path) as daemon:
        old = daemon.trap_receiver
        assert old is not None
        traps["communities"] = ["second-community"]
        write_yaml(path, _config(tmp_path, listen, ["s1"], traps=traps))
        status, answer = await _post_reload(daemon.url)
        assert status == 200, answer
        assert daemon.trap_receiver is not None
        assert daemon.trap_receiver is not old
        assert daemon.trap_receiver.address == ("127.0.0.1", port)


async def test_unreadable_token_file_keeps_the_running_credentials(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    token = "first-token-value"
    alerting = {"auth": {"bearer_tokens": [token]}}
    path = write_yaml(tmp_path / "config.yaml", _config(tmp_path, listen, ["s1"], alerting=alerting))
    async with run_daemon(path) as daemon:
        # valid YAML and schema; the token file it names is missing (a directory stands in for
        # an unreadable file, since the tests run as root)
        (tmp_path / "tokens").mkdir()
        alerting = {"auth": {"bearer_token_file": str(tmp_path / "tokens")}}
        write_yaml(path, _config(tmp_path, listen, ["s1", "s2"], alerting=alerting))
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(daemon.url + "/-/reload", headers=headers) as resp,
        ):
            status, answer = resp.status, json.loads(await resp.text())
        assert status == 400, answer
        assert "bearer_token_file" in answer["message"]
        assert [d.site_id for d in daemon.devices] == ["s1"]
        assert await _reload_metric(daemon.url) == 0
        # the old token still works, so the operator can fix the file and reload
        write_yaml(
            path, _config(tmp_path, listen, ["s1", "s2"], alerting={"auth": {"bearer_tokens": [token]}})
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(daemon.url + "/-/reload", headers=headers) as resp,
        ):
            assert resp.status == 200, await resp.text()
        assert sorted(d.site_id for d in daemon.devices) == ["s1", "s2"]
        assert await _reload_metric(daemon.url) == 1


async def test_broken_ca_file_of_a_channel_keeps_the_running_channels(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    notify = {"receivers": [{"name": "duty", "webhook": {"url": "http://127.0.0.1:9/hook"}}]}
    path = write_yaml(tmp_path / "config.yaml", _config(tmp_path, listen, ["s1"], notify=notify))
    async with run_daemon(path) as daemon:
        before = [(s.receiver, s.channel) for s in daemon.notify.stats()]
        bad_ca = tmp_path / "ca.pem"
        bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        notify = {
            "receivers": [
                {"name": "duty", "webhook": {"url": "https://127.0.0.1:9/hook", "ca_file": str(bad_ca)}},
                {"name": "noc", "webhook": {"url": "http://127.0.0.1:9/other"}},
            ]
        }
        write_yaml(path, _config(tmp_path, listen, ["s1"], notify=notify))
        status, answer = await _post_reload(daemon.url)
        assert status == 400, answer
        assert "notify channel duty/webhook: ca_file" in answer["message"]
        assert [(s.receiver, s.channel) for s in daemon.notify.stats()] == before
        assert await _reload_metric(daemon.url) == 0


async def test_reload_on_a_hung_file_system_gives_up_within_its_bound(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_tcp_port()}"
    data = _config(tmp_path, listen, ["s1"])
    data["server"]["reload_timeout"] = "1s"
    path = write_yaml(tmp_path / "config.yaml", data)
    async with run_daemon(path) as daemon:
        # a FIFO nobody writes to: reading it blocks like a file on a dead NFS server
        text = path.read_text(encoding="utf-8")
        path.unlink()
        os.mkfifo(path)
        started = time.monotonic()
        status, answer = await _post_reload(daemon.url)
        took = time.monotonic() - started
        assert status == 400, answer
        assert "server.reload_timeout" in answer["message"]
        assert took < 10  # bounded by the timeout, not by the file system
        assert await _reload_metric(daemon.url) == 0

        # the given-up read still waits in its thread: feed it, then put the file back. The
        # lock is free already, so the next reload is not stuck behind the given-up one.
        def feed() -> None:
            with open(path, "w", encoding="utf-8") as fifo:
                fifo.write(text)

        await asyncio.to_thread(feed)
        path.unlink()
        path.write_text(text, encoding="utf-8")
        # (the running bound is still 1 s: a busy machine may need a second try, never a restart)
        for _ in range(5):
            status, answer = await _post_reload(daemon.url)
            if status == 200:
                break
        assert status == 200, answer
        assert await _reload_metric(daemon.url) == 1
