"""The demo's simulated world, built the same way in every process that needs it.

The province, the scenario's planned steps and the simulator follow from the demo's options
alone (the province generator and the simulator are seeded), so the demo process and its agent
processes (:mod:`.agent_process`) each build the whole world, run the same scenario on the same
clock, and agree on every device's state. Only the sockets are split between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .device_models import load_models
from .devices import SimClock, Simulator
from .province import DemoProvince, generate_province
from .scenario import PlannedStep, Scenario, load_scenario, plan


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """What the world follows from: passed to agent processes on their command line."""

    sites: int
    districts: int | None
    interval: str | None
    first_net: int
    snmp_port: int
    listen: str
    scenario: Path


@dataclass(frozen=True, slots=True)
class World:
    province: DemoProvince
    scenario: Scenario
    steps: list[PlannedStep]
    sim: Simulator


def build_world(spec: WorldSpec, *, origin: float | None = None) -> World:
    """Blocking (it generates the province): run it in a thread. ``origin``: the monotonic time of
    simulation second 0 (default: now)."""
    province = generate_province(
        spec.sites,
        snmp_port=spec.snmp_port,
        listen=spec.listen,
        districts=spec.districts,
        interval=spec.interval,
        first_net=spec.first_net,
    )
    scenario = load_scenario(spec.scenario)
    steps = plan(scenario, province, strict=False)
    province.accelerate(scenario.speed)
    sim = Simulator(province.sites, province.devices, load_models(), SimClock(scenario.speed, origin=origin))
    return World(province, scenario, steps, sim)


def shard(keys: list[str], index: int, count: int) -> list[str]:
    """The ``index``-th of ``count`` contiguous slices of ``keys`` (a province's device order)."""
    size = -(-len(keys) // count)
    return keys[index * size : (index + 1) * size]
