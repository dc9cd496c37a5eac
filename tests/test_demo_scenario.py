"""The demo scenario: the shipped file loads, bad files are refused, and steps land on time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from uptimewatch.demo.device_models import load_models
from uptimewatch.demo.devices import ManualClock, Simulator
from uptimewatch.demo.province import DEFAULT_SITES, generate_province
from uptimewatch.demo.scenario import (
    PlannedStep,
    ScenarioError,
    apply,
    load_scenario,
    plan,
    run_scenario,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_scenario_resolves_against_the_default_province() -> None:
    scenario = load_scenario()
    province = generate_province(DEFAULT_SITES)
    steps = plan(scenario, province)  # strict: every target exists
    actions = {p.step.action for p in steps}
    assert actions == {"mains", "generator", "cut", "dead", "reboot", "rx_fade"}
    assert [p.real_at for p in steps] == sorted(p.real_at for p in steps)
    first = steps[0]
    assert first.real_at == pytest.approx(first.step.at / scenario.speed)
    assert "Mất điện lưới" in first.describe(province)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nsteps:\n  - {at: 5s, site: hub#0, mains: off, cut: on}\n", "exactly one action"),
        ("name: x\nsteps:\n  - {at: 5s, site: hub#0}\n", "exactly one action"),
        ("name: x\nsteps:\n  - {at: 5s, site: leaf#0, reboot: true}\n", "reboot needs a device"),
        ("name: x\nsteps:\n  - {at: soon, site: hub#0, mains: off}\n", "steps.0.at"),
        ("name: x\nspeed: 0\nsteps: []\n", "speed"),
        ("name: x\nsteps:\n  - {at: 5s, site: hub#0, mains: off, colour: red}\n", "colour"),
    ],
)
def test_invalid_scenarios_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(tmp_path, text))


def test_unknown_targets_fail_strictly_and_are_skipped_otherwise(tmp_path: Path) -> None:
    scenario = load_scenario(
        write(
            tmp_path,
            "name: x\nsteps:\n"
            "  - {at: 1s, site: leaf#999, device: bts, reboot: true}\n"
            "  - {at: 2s, site: hub#0, device: fridge, dead: true}\n"
            "  - {at: 3s, site: hub#0, mains: off}\n",
        )
    )
    province = generate_province(20)
    with pytest.raises(ScenarioError, match=r"steps\.0: .*leaf.*steps\.1: .*fridge"):
        plan(scenario, province)
    kept = plan(scenario, province, strict=False)
    assert [p.step.action for p in kept] == ["mains"]


async def test_steps_apply_at_accelerated_times(tmp_path: Path) -> None:
    scenario = load_scenario(
        write(
            tmp_path,
            "name: quick\nspeed: 100\nsteps:\n"
            "  - {at: 30s, site: hub#0, mains: off}\n"
            "  - {at: 10s, site: leaf#0, device: link, rx_fade: 12}\n"
            "  - {at: 20s, site: agg#0, cut: on}\n"
            "  - {at: 40s, site: leaf#1, device: bts, reboot: true}\n"
            "  - {at: 50s, site: leaf#2, device: power, dead: true}\n",
        )
    )
    province = generate_province(14, districts=1)
    clock = ManualClock()
    sim = Simulator(province.sites, province.devices, load_models(), clock)
    steps = plan(scenario, province)
    assert [p.real_at for p in steps] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])

    loop = asyncio.get_running_loop()
    start = loop.time()
    applied: list[tuple[float, PlannedStep]] = []
    boots_before = sim.device(f"{province.select('leaf#1')}/bts").boots
    await run_scenario(steps, sim, on_step=lambda p: applied.append((loop.time() - start, p)), start=start)

    assert [p.step.at for _, p in applied] == [10, 20, 30, 40, 50]
    for elapsed, p in applied:
        assert p.real_at <= elapsed < p.real_at + 0.25, (elapsed, p.step)
    assert sim.device(f"{province.select('leaf#0')}/link").fade_db == 12
    assert sim.site(province.select("agg#0")).cut
    assert not sim.site(province.select("hub#0")).mains
    assert sim.device(f"{province.select('leaf#1')}/bts").boots == boots_before + 1
    assert sim.device(f"{province.select('leaf#2')}/power").dead


def test_apply_generator_and_recovery() -> None:
    province = generate_province(14, districts=1)
    clock = ManualClock()
    sim = Simulator(province.sites, province.devices, load_models(), clock)
    hub = province.select("hub#0")

    def step(**kw: object) -> PlannedStep:
        from uptimewatch.demo.scenario import Step

        return PlannedStep(Step.model_validate({"at": 0, "site": hub, **kw}), hub, None, 0.0)

    apply(step(mains=False), sim)
    clock.advance(600)
    charge, on_battery = sim.battery(hub)
    assert on_battery
    assert charge == pytest.approx(1 - 600 / 3600)
    apply(step(generator=True), sim)
    clock.advance(600)
    charge2, on_battery2 = sim.battery(hub)
    assert not on_battery2
    assert charge2 > charge
