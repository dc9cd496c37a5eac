"""The daemon's event loop: uvloop where installed, asyncio's own on request, and the polling
parts that touch the loop directly (a raw ICMP socket's reader, the SNMP socket read past its
datagram transport, the scheduler's deadline sweep) working on uvloop as on asyncio's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.fixtures.snmpsim import SnmpsimEndpoint, snmp_target
from tests.test_icmp import assert_all_answered
from tests.test_icmp import device as icmp_device
from uptimewatch.event_loop import ENV, EventLoopError, loop_factory
from uptimewatch.model.observation import ErrorKind, Observation
from uptimewatch.probing import icmp
from uptimewatch.probing.snmp_transport import create_transport
from uptimewatch.scheduler import Scheduler

uvloop = pytest.importorskip("uvloop", reason="uvloop is the test extra's; without it only asyncio runs")

UPS_MINUTES_REMAINING = "1.3.6.1.2.1.33.1.2.3.0"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    "asyncio": None,
    "uvloop": uvloop.new_event_loop,
}


def test_choice_of_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert loop_factory()[0] == "uvloop"  # auto: installed, so taken
    assert loop_factory("asyncio") == ("asyncio", None)
    monkeypatch.setenv(ENV, "asyncio")
    assert loop_factory() == ("asyncio", None)
    monkeypatch.setenv(ENV, "UVLoop")
    name, factory = loop_factory()
    assert name == "uvloop"
    assert factory is uvloop.new_event_loop
    monkeypatch.setenv(ENV, "trio")
    with pytest.raises(EventLoopError, match="expected one of auto, asyncio, uvloop"):
        loop_factory()


async def _poll_everything(snmpsim: SnmpsimEndpoint) -> tuple[Observation, list[int | None], Observation]:
    prober = icmp.IcmpProber(icmp.detect_privilege())
    transport = create_transport()
    try:
        ping = await prober.probe(icmp_device("127.0.0.1"))
        got = await transport.get(snmp_target(snmpsim, "cetpower"), [UPS_MINUTES_REMAINING])
        assert got.error is None, got.error
        values = [vb.value if isinstance(vb.value, int) else None for vb in got.varbinds]

        # a probe that never answers: the scheduler's deadline sweep turns it into a timeout
        seen: list[Observation] = []
        arrived = asyncio.Event()

        def sink(obs: Observation) -> None:
            seen.append(obs)
            arrived.set()

        async def silent(_device: object) -> Observation:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        sched = Scheduler({"icmp": silent}, sink, max_concurrency=4)
        quiet = icmp_device("127.0.0.2")
        sched.reconcile([replace(quiet, interval=0.3, timeout=0.1)])
        await sched.start()
        try:
            async with asyncio.timeout(30):  # a guard against a hang, not a measure
                await arrived.wait()
        finally:
            await sched.stop(grace=1.0)
        return ping, values, seen[0]
    finally:
        prober.close()
        await transport.close()


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_polling_parts_run_on_each_loop(loop: str, snmpsim: SnmpsimEndpoint) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        if loop == "uvloop":
            assert isinstance(runner.get_loop(), uvloop.Loop)
        ping, values, late = runner.run(_poll_everything(snmpsim))
    assert_all_answered(ping, 3, 1.0)
    assert values == [6000]
    assert late.error is not None
    assert late.error.kind is ErrorKind.TIMEOUT
    assert late.error.message == "no result within 0.1 s (deadline)"
