"""A protocol added from one file (tests/toy_tcp.py) and one registry line runs end to end:
config (``probes: {tcp: ...}``) -> scheduler -> health -> /metrics and the JSON API, against a
real TCP listener on 127.0.0.1 and a port nobody listens on."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests import toy_tcp
from tests.fixtures.daemon import async_http, free_tcp_port, province_config, wait_until, write_yaml
from uptimewatch.app import run_daemon
from uptimewatch.cli import main as cli_main
from uptimewatch.config.loader import ConfigError, load_config
from uptimewatch.export.site_series import SiteSeriesCache
from uptimewatch.model.checks import CheckState
from uptimewatch.model.health import HealthModel
from uptimewatch.model.observation import ErrorKind, Observation, ProbeError
from uptimewatch.probing.registry import Registry, RegistryError, builtin, installed


def _registry() -> Registry:
    registry = builtin()
    registry.register(toy_tcp.PROTOCOL)  # the one line that adds the protocol
    return registry


def _gateway(site_id: str, port: int) -> dict[str, Any]:
    return {
        "id": site_id,
        "name": f"Gateway {site_id}",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [
            {
                "id": "gw",
                "role": "router",
                "address": "127.0.0.1",
                "snmp_enabled": False,
                # no ping: a loopback address always answers it, and the TCP port is what is watched
                "icmp": {"enabled": False},
                "probes": {"tcp": {"port": port}},
            }
        ],
    }


async def _site(base: str, site_id: str) -> dict[str, Any]:
    status, body = await async_http("GET", f"{base}/api/v1/sites/{site_id}")
    assert status == 200, body
    site: dict[str, Any] = json.loads(body)
    return site


def _checks(site: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in site["devices"][0]["checks"]}


async def test_a_tcp_protocol_from_one_file_runs_end_to_end(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    closed_port = free_tcp_port()  # bound and released: nobody listens there
    listen = f"127.0.0.1:{free_tcp_port()}"
    data = province_config(
        [_gateway("gw-open", open_port), _gateway("gw-closed", closed_port)],
        listen=listen,
        defaults={
            "interval": "300ms",
            "timeout": "2s",
            "hard_after": 2,
            "probes": {"tcp": {"timeout": "1s"}},
        },
    )
    config = write_yaml(tmp_path / "config.yaml", data)
    try:
        async with run_daemon(config, protocols=_registry()) as daemon:
            base = daemon.url
            assert daemon.devices[0].targets == {
                "tcp": toy_tcp.TcpTarget("127.0.0.1", open_port, timeout=1.0, connect_seconds_warning=0.5)
            }

            async def judged() -> bool:
                states = [(await _site(base, s))["state"] for s in ("gw-open", "gw-closed")]
                return "unknown" not in states

            await wait_until(judged, timeout=30)
            opened, closed = await _site(base, "gw-open"), await _site(base, "gw-closed")
            assert opened["state"] == "up", opened
            assert _checks(opened)["tcp.reachable"]["state"] == CheckState.OK
            assert _checks(opened)["tcp.connect_time"]["state"] == CheckState.OK
            assert opened["devices"][0]["reachable"] is True
            assert "tcp" in opened["devices"][0]["probes"]
            assert closed["state"] == "down", closed
            assert _checks(closed)["tcp.reachable"]["state"] == CheckState.CRITICAL
            assert "refused" in _checks(closed)["tcp.reachable"]["reason"]

            # the status page's data for the site names the failing check in its words
            status, page = await async_http("GET", base + "/api/v1/status/sites/gw-closed")
            assert status == 200, page
            assert "refused the connection" in page

            status, metrics = await async_http("GET", base + "/metrics")
            assert status == 200
            labels = 'device="gw",role="router",site="gw-open"'
            assert f"uptimewatch_tcp_connect_seconds{{{labels}}} " in metrics
            assert "# HELP uptimewatch_tcp_connect_seconds Time the last TCP connect" in metrics
            assert 'site="gw-closed"' not in _lines(metrics, "uptimewatch_tcp_connect_seconds")
            assert f"uptimewatch_device_up{{{labels}}} 1.0" in metrics
            down = 'device="gw",role="router",site="gw-closed"'
            assert f'uptimewatch_device_check_state{{check="tcp.reachable",{down}}} 2.0' in metrics
            assert f"uptimewatch_device_up{{{down}}} 0.0" in metrics
            polls = _lines(metrics, "uptimewatch_scheduler_polls_total")
            assert 'probe="tcp"' in polls, polls

            # the port closes: the site goes down, its series goes away
            server.close()
            await server.wait_closed()

            async def gone_down() -> bool:
                return (await _site(base, "gw-open"))["state"] == "down"

            await wait_until(gone_down, timeout=30)
            opened = await _site(base, "gw-open")
            assert _checks(opened)["tcp.reachable"]["state"] == CheckState.CRITICAL
            assert opened["devices"][0]["reachable"] is False
            _status, metrics = await async_http("GET", base + "/metrics")
            assert f"uptimewatch_device_up{{{labels}}} 0.0" in metrics
            assert _lines(metrics, "uptimewatch_tcp_connect_seconds{") == ""
    finally:
        server.close()


def _lines(metrics: str, prefix: str) -> str:
    return "".join(line + "\n" for line in metrics.splitlines() if line.startswith(prefix))


def test_probes_blocks_are_checked_against_the_registry(tmp_path: Path) -> None:
    data = province_config([_gateway("gw", 70000)], listen="127.0.0.1:9")
    path = write_yaml(tmp_path / "config.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_config(path, probe_models=_registry().settings())
    text = "\n".join(str(i) for i in caught.value.issues)
    assert f"{path}:" in text
    assert "sites[0].devices[0].probes.tcp.port" in text or "probes.tcp.port" in text, text
    assert "less than or equal to 65535" in text

    # without the registry line, the kind is unknown: an error, not a silently ignored block
    data = province_config([_gateway("gw", 22)], listen="127.0.0.1:9")
    path = write_yaml(tmp_path / "config.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_config(path, probe_models=builtin().settings())
    assert "unknown protocol 'tcp'" in str(caught.value.issues[0]), caught.value.issues
    assert caught.value.issues[0].line is not None

    loaded = load_config(path, probe_models=_registry().settings())
    assert set(loaded.devices[0].targets) == {"tcp"}


def test_a_kind_is_registered_once() -> None:
    registry = _registry()
    with pytest.raises(ValueError, match="registered already"):
        registry.register(toy_tcp.PROTOCOL)
    assert registry.kinds() == ("icmp", "snmp", "telemetry", "tcp")
    assert set(registry.probes({})) == {"tcp"}  # the daemon provides SNMP's and ICMP's


def test_the_best_ranked_protocol_polling_a_device_says_whether_it_answers(tmp_path: Path) -> None:
    site = _gateway("gw", 22)
    site["devices"][0]["snmp_enabled"] = True  # SNMP (rank 50) and TCP (rank 10) poll it
    path = write_yaml(tmp_path / "config.yaml", province_config([site], listen="127.0.0.1:9"))
    registry = _registry()
    loaded = load_config(path, probe_models=registry.settings())
    health = HealthModel(loaded.config, loaded.devices, probe_checks=registry.checks(), clock=lambda: 100.0)
    assert set(loaded.devices[0].targets) == {"snmp", "tcp"}

    def observe(probe: str, at: float, error: ProbeError | None) -> None:
        fields = {} if error is not None else ({toy_tcp.CONNECT_SECONDS: 0.01} if probe == "tcp" else {})
        health.ingest(Observation("gw", "gw", probe, at, 0.01, fields, error))

    refused = ProbeError(ErrorKind.UNREACHABLE, "port 22 refused the connection")
    for at in (1.0, 2.0, 3.0):  # hard_after is 3 by default
        observe("snmp", at, None)
        observe("tcp", at, refused)
    device = health.snapshot().site("gw").devices[0]  # type: ignore[union-attr]
    assert device.reachable is False  # SNMP answers, but the TCP port, ranked first, does not
    assert device.reason == "port 22 refused the connection"

    timeout = ProbeError(ErrorKind.TIMEOUT, "no answer")
    for at in (4.0, 5.0, 6.0):
        observe("snmp", at, timeout)
        observe("tcp", at, None)
    device = health.snapshot().site("gw").devices[0]  # type: ignore[union-attr]
    assert device.reachable is True
    assert device.check("snmp.reachable").state is CheckState.CRITICAL  # type: ignore[union-attr]


class _TokenTcp(toy_tcp.TcpSettings):
    gateway_key: SecretStr | None = None


def test_a_protocols_secret_is_never_echoed_in_an_error(tmp_path: Path) -> None:
    site = _gateway("gw", 22)
    site["devices"][0]["probes"]["tcp"]["gateway_key"] = 31415926535
    path = write_yaml(tmp_path / "config.yaml", province_config([site], listen="127.0.0.1:9"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, probe_models={"tcp": _TokenTcp})
    text = "\n".join(str(i) for i in caught.value.issues)
    assert "probes.tcp.gateway_key" in text, text
    assert "31415926535" not in text


def _package(site: Path, name: str, entry_points: str) -> None:
    """An installed distribution, as pip leaves one: its metadata on sys.path."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[uptimewatch.protocols]\n{entry_points}\n", encoding="utf-8")


def test_an_installed_package_adds_a_protocol_by_one_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "tcp" not in installed()
    _package(tmp_path / "site", "gateway_checks", "tcp = tests.toy_tcp:PROTOCOL")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert installed().kinds() == ("icmp", "snmp", "telemetry", "tcp")

    # check-config speaks what the daemon speaks
    path = write_yaml(tmp_path / "config.yaml", province_config([_gateway("gw", 22)], listen="127.0.0.1:9"))
    assert cli_main(["check-config", str(path)]) == 0, capsys.readouterr().err

    # a broken entry point stops the start with its name, rather than a protocol going missing
    _package(tmp_path / "site", "broken_checks", "http = tests.no_such_module:PROTOCOL")
    with pytest.raises(
        RegistryError, match=re.escape("protocol entry point http = tests.no_such_module:PROTOCOL")
    ):
        installed()
    assert cli_main(["check-config", str(path)]) == 1
    assert "cannot load it: ModuleNotFoundError" in capsys.readouterr().err


async def test_a_reload_moves_a_protocols_targets(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    fast = {"interval": "300ms", "timeout": "2s", "hard_after": 1}
    listen = f"127.0.0.1:{free_tcp_port()}"
    path = tmp_path / "config.yaml"
    write_yaml(path, province_config([_gateway("gw", open_port)], listen=listen, defaults=fast))
    try:
        async with run_daemon(path, protocols=_registry()) as daemon:
            base = daemon.url

            async def state() -> str:
                return str((await _site(base, "gw"))["state"])

            await wait_until(_is(state, "up"), timeout=30)

            # the device's port moves to one nobody listens on: the next polls go there
            write_yaml(path, province_config([_gateway("gw", free_tcp_port())], listen=listen, defaults=fast))
            result = await daemon.reload()
            assert result.ok, result.message
            await wait_until(_is(state, "down"), timeout=30)

            # a bad block is refused with its file and line, and the running configuration stays
            write_yaml(path, province_config([_gateway("gw", 0)], listen=listen, defaults=fast))
            result = await daemon.reload()
            assert not result.ok
            assert f"{path}:" in result.message, result.message
            assert "probes.tcp.port" in result.message, result.message
            assert daemon.scheduler.stats().targets["tcp"] == 1

            # without its block, no protocol polls the device any more
            gateway = _gateway("gw", open_port)
            del gateway["devices"][0]["probes"]
            write_yaml(path, province_config([gateway], listen=listen, defaults=fast))
            result = await daemon.reload()
            assert result.ok, result.message
            assert daemon.scheduler.stats().targets["tcp"] == 0
            assert daemon.devices[0].targets == {}
    finally:
        server.close()


def _is(state: Any, want: str) -> Any:
    async def check() -> bool:
        return bool(await state() == want)

    return check


def test_the_exporter_renders_a_protocols_series_from_its_registry_entry_alone() -> None:
    """Nothing under src/ names the toy protocol or its series: the exporter renders what the
    registry's entries declare (the shipped ones' series come the same way, in registry order)."""
    src = Path(__file__).resolve().parents[1] / "src" / "uptimewatch"
    spelled = [
        str(path)
        for path in src.rglob("*.py")
        if any(
            word in path.read_text(encoding="utf-8") for word in ("uptimewatch_tcp_", toy_tcp.CONNECT_SECONDS)
        )
    ]
    assert spelled == []
    series = _registry().series()
    assert [s.kind for s in series][-1] == "tcp"
    assert {s.kind for s in series} == {"icmp", "snmp", "tcp"}
    cache = SiteSeriesCache(series)
    names = [name for name, _help in cache.families]
    # the protocols' families in registry order, before the field gauges
    assert names.index("uptimewatch_snmp_poll_duration_seconds") < names.index(
        "uptimewatch_tcp_connect_seconds"
    )
    assert names.index("uptimewatch_tcp_connect_seconds") < names.index("uptimewatch_power_on_battery")
    assert cache.full_only == {"uptimewatch_snmp_up"}


class _KeyedTcp(toy_tcp.TcpSettings):
    gateway_key: SecretStr | None = None
    gateway_key_file: str | None = None

    def target(self, address: str) -> object:
        plain = super().target(address)
        return None if plain is None else (plain, self.gateway_key)


def test_a_secret_file_in_a_probes_block_is_read_like_the_other_secret_files(tmp_path: Path) -> None:
    (tmp_path / "gateway.key").write_text("s3cr3t-gw\n", encoding="utf-8")
    site = _gateway("gw", 22)
    site["devices"][0]["probes"]["tcp"]["gateway_key_file"] = "gateway.key"  # beside the config
    path = write_yaml(tmp_path / "config.yaml", province_config([site], listen="127.0.0.1:9"))
    loaded = load_config(path, probe_models={"tcp": _KeyedTcp})
    target = loaded.devices[0].targets["tcp"]
    assert isinstance(target, tuple)
    assert target[1].get_secret_value() == "s3cr3t-gw"

    # a file that cannot be read is an error with the file and line, never its would-be content
    site["devices"][0]["probes"]["tcp"]["gateway_key_file"] = "missing.key"
    path = write_yaml(tmp_path / "config.yaml", province_config([site], listen="127.0.0.1:9"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, probe_models={"tcp": _KeyedTcp})
    issue = caught.value.issues[0]
    assert "cannot read gateway_key_file" in str(issue), caught.value.issues
    assert issue.line is not None
