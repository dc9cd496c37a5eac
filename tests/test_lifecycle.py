"""A start that fails half-way stops what it started: no task, socket, file or thread stays.

The daemon runs with every part that holds something: the state store (a thread and a lock
file), the ledger and alert engine (tasks), the notifier (an MQTT connection, a webhook
session), the cluster (a NATS connection, tasks), the web server (a listening socket), the
scheduler (a dispatcher task), the trap receiver (a UDP socket) and telemetry (an MQTT
connection). Each case makes one stage fail, for real where the outside world can make it fail
(a port in use, a locked store, an unreadable CA file) and by a raising stand-in
for the stages the outside world cannot stop; the tasks of the loop, the process's open file
descriptors and its threads are then counted against what was there before.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import free_tcp_port, free_udp_port, province_config, wait_until, write_yaml
from tests.fixtures.mosquitto import Mosquitto
from uptimewatch import app as app_module
from uptimewatch.alerts.service import AlertService
from uptimewatch.app import Daemon, run_daemon
from uptimewatch.cluster.local_nats import LocalNatsCluster, NatsServerError
from uptimewatch.cluster.runtime import ClusterRuntime
from uptimewatch.ledger import Ledger
from uptimewatch.notify.service import NotifyService
from uptimewatch.reload import IntakePlan
from uptimewatch.scheduler import Scheduler
from uptimewatch.store import SqliteStore, StoreError

#: Threads of the process-wide pools (the executors' lanes, asyncio's default executor): they
#: start on first use and serve every daemon of the process, so they are not a daemon's to stop.
SHARED_POOLS = ("uptimewatch-auth", "uptimewatch-render", "uptimewatch-config", "uptimewatch-dns", "asyncio_")


@dataclass(frozen=True)
class Held:
    tasks: frozenset[str]
    fds: tuple[str, ...]
    threads: frozenset[str]

    @staticmethod
    def now() -> Held:
        current = asyncio.current_task()
        tasks = frozenset(
            f"{t.get_name()}: {t.get_coro()!r}" for t in asyncio.all_tasks() if t is not current
        )
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue  # the directory's own descriptor, closed by now
        threads = frozenset(
            f"{t.name}#{t.ident}" for t in threading.enumerate() if not t.name.startswith(SHARED_POOLS)
        )
        return Held(tasks, tuple(sorted(fds)), threads)


async def assert_nothing_left(before: Held) -> None:
    """What ``before`` held, and nothing more, once callbacks scheduled by the teardown have run."""

    async def back() -> bool:
        return Held.now() == before

    try:
        await wait_until(back, timeout=5.0, interval=0.05)
    except AssertionError:
        after = Held.now()
        left = {
            "tasks": sorted(after.tasks - before.tasks),
            "fds": sorted(set(after.fds) - set(before.fds)) or (len(after.fds), len(before.fds)),
            "threads": sorted(after.threads - before.threads),
        }
        raise AssertionError(f"left behind after a failed start: {left}") from None


@pytest.fixture(scope="module")
def nats() -> Iterator[LocalNatsCluster]:
    with tempfile.TemporaryDirectory(prefix="uptimewatch-nats-") as tmp:
        try:
            cluster = LocalNatsCluster(Path(tmp), size=1)
        except NatsServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        with cluster:
            yield cluster


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    found = Mosquitto()
    try:
        found.start()
        yield found
    finally:
        found.close()


@dataclass
class Setup:
    path: Path
    data: dict[str, Any]
    listen: str
    trap_port: int

    def write(self) -> Path:
        return write_yaml(self.path, self.data)


@pytest.fixture
def setup(tmp_path: Path, nats: LocalNatsCluster, broker: Mosquitto) -> Setup:
    listen = f"127.0.0.1:{free_tcp_port()}"
    trap_port = free_udp_port()
    sites = [
        {
            "id": "hb-001",
            "name": "Trạm Hòa Bình 001",
            "district": "d1",
            "carrier": "vnpt",
            "devices": [
                {
                    "id": "power",
                    "role": "power",
                    "address": "127.0.0.1",
                    # no agent there: polls time out, which is fine for counting what they hold
                    "snmp": {"port": free_tcp_port(), "timeout": "0.2s", "retries": 0},
                    "icmp": {"count": 1},
                    "telemetry": {"topic": "hb/hb-001/power", "profile": "site-gateway-json"},
                }
            ],
        }
    ]
    data = province_config(
        sites, listen=listen, defaults={"interval": "1s", "timeout": "2s", "hard_after": 1}
    )
    data["storage"] = {"path": str(tmp_path / "state.sqlite")}
    data["mqtt"] = {"host": broker.host, "port": broker.port, "client_id": f"lifecycle-{tmp_path.name}"}
    data["telemetry"] = {"enabled": True}
    data["traps"] = {"enabled": True, "listen": f"127.0.0.1:{trap_port}", "communities": ["public"]}
    data["notify"] = {
        "receivers": [
            {"name": "noc", "mqtt": {}, "webhook": {"url": f"http://127.0.0.1:{free_tcp_port()}/hook"}}
        ]
    }
    data["cluster"] = {"node_id": "n1", "nats": {"servers": nats.urls, "replicas": 1}, "join_grace": 0}
    return Setup(tmp_path / "config.yaml", data, listen, trap_port)


async def _warm_up(setup: Setup) -> Held:
    """One whole run first: what the process keeps for good (imports, pools) is in place after it."""
    async with run_daemon(setup.write()) as daemon:
        await wait_until(lambda: sum(daemon.scheduler.stats().polls.values()) > 0)
        assert daemon.telemetry_in is not None
        assert daemon.trap_receiver is not None
        assert daemon.cluster is not None
        await wait_until(lambda: daemon.cluster is not None and not daemon.cluster.node.degraded)
    return Held.now()


async def test_a_whole_run_leaves_nothing(setup: Setup) -> None:
    before = await _warm_up(setup)
    async with run_daemon(setup.write()) as daemon:
        await wait_until(lambda: sum(daemon.scheduler.stats().polls.values()) > 0)
        assert Held.now() != before  # it does hold things while it runs
    await assert_nothing_left(before)


async def _fails_to_start(
    setup: Setup, error: type[BaseException] | tuple[type[BaseException], ...]
) -> Daemon:
    daemon = Daemon(setup.write())
    with pytest.raises(error):
        await daemon.start()
    assert daemon.readiness() == (False, "starting")
    await daemon.stop()  # harmless after a failed start: there is nothing left to stop
    return daemon


# -- real failures ---------------------------------------------------------------------------------


async def test_web_port_in_use(setup: Setup) -> None:
    await _warm_up(setup)
    host, _, port = setup.listen.rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        before = Held.now()
        await _fails_to_start(setup, OSError)
        await assert_nothing_left(before)


async def test_trap_port_in_use(setup: Setup) -> None:
    await _warm_up(setup)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", setup.trap_port))
        before = Held.now()
        await _fails_to_start(setup, OSError)
        await assert_nothing_left(before)


async def test_state_store_locked(setup: Setup) -> None:
    await _warm_up(setup)
    other = SqliteStore(setup.data["storage"]["path"], exclusive=True)  # another daemon on the same file
    await other.open()
    try:
        before = Held.now()
        await _fails_to_start(setup, StoreError)
        await assert_nothing_left(before)
    finally:
        await other.close()


async def test_notify_channel_cannot_be_prepared(setup: Setup, tmp_path: Path) -> None:
    """The notifier's MQTT link is up when its webhook's CA file turns out to be garbage."""
    await _warm_up(setup)
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    setup.data["notify"]["receivers"][0]["webhook"]["ca_file"] = str(bad_ca)
    before = Held.now()
    await _fails_to_start(setup, ValueError)
    await assert_nothing_left(before)


# -- every other stage ---------------------------------------------------------------------------


class Injected(RuntimeError):
    pass


def _raise(*_args: Any, **_kwargs: Any) -> Any:
    raise Injected("injected start failure")


async def _araise(*_args: Any, **_kwargs: Any) -> Any:
    raise Injected("injected start failure")


STAGES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "ledger": lambda mp: mp.setattr(Ledger, "start", _araise),
    "notify": lambda mp: mp.setattr(NotifyService, "start", _araise),
    "alerts": lambda mp: mp.setattr(AlertService, "start", _araise),
    "cluster": lambda mp: mp.setattr(ClusterRuntime, "start", _araise),
    "web": lambda mp: mp.setattr(app_module, "build_app", _raise),
    "scheduler": lambda mp: mp.setattr(Scheduler, "start", _araise),
    "intake": lambda mp: mp.setattr(app_module, "prepare_intake", _araise),
    "intake-commit": lambda mp: mp.setattr(IntakePlan, "commit", _araise),
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_failure_at_each_stage(setup: Setup, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await _warm_up(setup)
    before = Held.now()
    STAGES[stage](monkeypatch)
    await _fails_to_start(setup, Injected)
    await assert_nothing_left(before)
