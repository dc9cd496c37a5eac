"""Two daemons on one state database: the second refuses to start and names the first's pid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import free_tcp_port, province_config, write_yaml


def _config(tmp_path: Path, name: str, state: Path) -> tuple[Path, str]:
    listen = f"127.0.0.1:{free_tcp_port()}"
    site = {
        "id": "s1",
        "name": "Trạm 1",
        "district": "d1",
        "carrier": "vnpt",
        "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
    }
    data = province_config([site], listen=listen, defaults={"interval": "30s"})
    data["storage"] = {"path": str(state)}
    directory = tmp_path / name
    directory.mkdir()
    return write_yaml(directory / "config.yaml", data), listen


def test_second_daemon_on_the_same_state_refuses_and_names_the_first(
    tmp_path: Path, daemon_process: Any
) -> None:
    state = tmp_path / "state" / "uptimewatch.sqlite"
    first_config, first_listen = _config(tmp_path, "first", state)
    second_config, second_listen = _config(tmp_path, "second", state)
    first = daemon_process(first_config, first_listen)
    first.wait_ready()

    second = subprocess.run(
        [sys.executable, "-m", "uptimewatch.cli", "run", "-c", str(second_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1, second.stderr
    assert f"pid {first.proc.pid}" in second.stderr, second.stderr
    assert str(state) in second.stderr
    assert "Traceback" not in second.stderr
    assert first.proc.poll() is None  # the first one runs on, untouched

    # once the first has stopped, the lock is free: no stale lock to remove by hand
    assert first.stop() == 0
    again = daemon_process(second_config, second_listen)
    again.wait_ready()
    assert again.stop() == 0


def test_lock_is_released_by_a_kill(tmp_path: Path, daemon_process: Any) -> None:
    state = tmp_path / "state" / "uptimewatch.sqlite"
    first_config, first_listen = _config(tmp_path, "first", state)
    second_config, second_listen = _config(tmp_path, "second", state)
    first = daemon_process(first_config, first_listen)
    first.wait_ready()
    first.proc.kill()  # kill -9: the kernel drops the flock with the process
    first.proc.wait()
    second = daemon_process(second_config, second_listen)
    second.wait_ready()
    assert second.stop() == 0
