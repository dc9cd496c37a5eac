"""A wall-clock step of an hour either way (NTP correcting a NOC box, an operator setting the
clock) changes nothing that is a duration: an alert's ``for`` and ``resolve_after``, and a ping's
round-trip time. Wall time stays where it is a timestamp. The clocks are injected: the wall clock
jumps, the monotonic clock does not."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import province_config, write_yaml
from tests.test_health import T0, ping
from uptimewatch.alerts.service import AlertService
from uptimewatch.clock import WallSteps
from uptimewatch.config.loader import load_config
from uptimewatch.model.health import HealthModel
from uptimewatch.notify.types import Notification
from uptimewatch.probing.icmp import Pinger, detect_privilege
from uptimewatch.store import SqliteStore

HOUR = 3600.0


class Clocks:
    """A wall clock that can be stepped and a monotonic clock that only ever runs."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall += seconds


class Sink:
    def __init__(self) -> None:
        self.notices: list[Notification] = []

    async def enqueue(self, notifications: Sequence[Notification]) -> None:
        self.notices.extend(notifications)


def test_wall_steps_tells_a_step_from_time_passing() -> None:
    clocks = Clocks()
    steps = WallSteps(lambda: clocks.wall, lambda: clocks.mono)
    assert steps.read() == (T0, 0.0)
    clocks.run(30)
    assert steps.read() == (T0 + 30, 0.0)
    clocks.step(-HOUR)
    assert steps.read() == (T0 + 30 - HOUR, -HOUR)
    clocks.run(1)
    clocks.step(0.001)  # NTP slewing: follows real time, not a step
    assert steps.read()[1] == 0.0
    # an injected wall clock alone is its own monotonic clock: jumping it means time passed
    alone = WallSteps(lambda: clocks.wall)
    alone.read()
    clocks.step(HOUR)
    assert alone.read()[1] == 0.0


@pytest.mark.parametrize("jump", [HOUR, -HOUR], ids=["ahead", "back"])
async def test_alert_for_and_resolve_after_ignore_a_clock_step(tmp_path: Path, jump: float) -> None:
    sites = [
        {
            "id": "s1",
            "name": "Trạm Pà Cò",
            "district": "d1",
            "commune": "c2",
            "carrier": "vnpt",
            "devices": [{"id": "bts", "role": "bts", "address": "127.0.0.1", "snmp_enabled": False}],
        }
    ]
    data: dict[str, Any] = province_config(sites, listen="127.0.0.1:9847")
    data["defaults"] = {"hard_after": 1}
    data["alerting"] = {
        "default_receiver": "noc",
        "group_wait": 0,
        "resolve_after": "5m",
        "builtins": {"SiteDown": {"for": "2m"}},
    }
    loaded = load_config(write_yaml(tmp_path / "config.yaml", data))
    clocks, sink = Clocks(), Sink()
    store = SqliteStore(tmp_path / "state.sqlite")
    model = HealthModel(loaded.config, loaded.devices, clock=lambda: clocks.wall)
    service = AlertService(
        store, loaded, model.snapshot, sink=sink, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono
    )
    await store.open()
    await service.start(background=False)
    try:

        async def poll(loss: float, seconds: float = 30.0) -> str | None:
            model.ingest(ping("s1", "bts", clocks.wall, loss=loss))
            await service.evaluate()
            found = [a for a in service.state.alerts.values() if a.name == "SiteDown"]
            clocks.run(seconds)
            return found[0].state if found else None

        assert await poll(0.0) is None
        assert await poll(1.0) == "pending"
        clocks.step(jump)
        assert await poll(1.0) == "pending"  # 30 s of the 2 min have passed, not an hour
        assert await poll(1.0) == "pending"
        assert await poll(1.0) == "pending"
        assert await poll(1.0) == "firing"  # 2 min after it began, whatever the wall clock did
        (alert,) = [a for a in service.state.alerts.values() if a.name == "SiteDown"]
        # the stamps are true in the new wall time: it began 2 minutes before it fired
        assert alert.fired_at == pytest.approx(clocks.wall - 30)
        assert alert.fired_at - alert.active_since == pytest.approx(120)
        assert [n.kind for n in sink.notices] == ["firing"]

        # back up: resolve_after (5 min) holds through another step the other way
        assert await poll(0.0, 60) == "firing"
        clocks.step(-jump)
        for _ in range(3):
            assert await poll(0.0, 60) == "firing"
        assert await poll(0.0, 60) == "firing"
        assert await poll(0.0, 60) == "resolved"
        assert [n.kind for n in sink.notices] == ["firing", "resolved"]
    finally:
        await service.stop()
        await store.close()


@pytest.mark.parametrize("jump", [HOUR, -HOUR], ids=["ahead", "back"])
async def test_ping_round_trip_ignores_a_wall_clock_off_by_an_hour(jump: float) -> None:
    """The kernel stamps replies on the real wall clock; the pinger's wall clock is an hour off,
    as for a reply stamped just before a step and read just after. Before, the round trip was the
    difference of the two: ~1 ns for one direction, every reply "late" (lost) for the other."""
    import time

    pinger = Pinger(detect_privilege().privileged, wall=lambda: time.time() + jump)
    result = await pinger.burst("127.0.0.1", 3, 0.01, 1.0)
    assert (result.sent, result.received) == (3, 3)
    for rtt in result.rtts:
        assert 1e-6 < rtt < 0.5, result.rtts
    # and with the clocks agreeing, the kernel's stamps still serve (a loopback round trip)
    plain = await Pinger(detect_privilege().privileged).burst("127.0.0.1", 3, 0.01, 1.0)
    assert plain.received == 3
    assert all(1e-6 < rtt < 0.5 for rtt in plain.rtts), plain.rtts
