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
    run_rounds,
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
    assert "Mất điện lưới" in first.describe(province)  # the step's own words
    # the console line's own words are in the province's language too
    assert ": mất điện lưới — " in first.describe(province)
    fades = [p.describe(province) for p in steps if p.step.action == "rx_fade"]
    assert "mưa làm suy hao 14 dB trên tuyến viba" in fades[0]
    assert "hết suy hao do mưa" in fades[-1]
    province.config["province"]["language"] = "en"
    assert ": mains power fails — " in first.describe(province)


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


async def test_a_repeating_scenario_keeps_going_on_the_next_sites(tmp_path: Path) -> None:
    text = (
        "name: loop\nspeed: 100\npause: 10s\n{repeat}steps:\n"
        "  - {{at: 10s, site: leaf#0, cut: on}}\n"
        "  - {{at: 20s, site: leaf#0, cut: off}}\n"
    )
    province = generate_province(14, districts=1)
    sim = Simulator(province.sites, province.devices, load_models(), ManualClock())
    once = load_scenario(write(tmp_path, text.format(repeat="")))
    applied: list[PlannedStep] = []
    await asyncio.wait_for(run_rounds(once, province, sim, on_step=applied.append), timeout=30)
    assert [p.site_id for p in applied] == [province.select("leaf#0")] * 2  # one round, then done

    looping = load_scenario(write(tmp_path, text.format(repeat="repeat: true\n")))
    assert looping.round_length == 30
    applied.clear()
    rounds: list[int] = []
    done = asyncio.Event()

    def on_step(p: PlannedStep) -> None:
        applied.append(p)
        if len(applied) == 6:
            done.set()

    task = asyncio.create_task(
        run_rounds(looping, province, sim, on_step=on_step, on_round=lambda n, _steps: rounds.append(n))
    )
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    leaves = [province.select(f"leaf#{n}") for n in range(3)]
    assert [p.site_id for p in applied] == [leaves[0], leaves[0], leaves[1], leaves[1], leaves[2], leaves[2]]
    assert [p.real_at for p in applied] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.7, 0.8])
    assert [p.step.cut for p in applied] == [True, False] * 3
    assert rounds[:3] == [0, 1, 2]
    assert not any(sim.site(leaf).cut for leaf in leaves)  # each round repairs what it cut


def test_the_shipped_scenario_repeats_on_every_site_of_its_roles() -> None:
    scenario = load_scenario()
    assert scenario.repeat
    province = generate_province(DEFAULT_SITES)
    hubs = province.roles["hub"]
    first = {p.site_id for p in plan(scenario, province, round_no=0) if p.step.site.startswith("hub#")}
    later = {p.site_id for p in plan(scenario, province, round_no=1) if p.step.site.startswith("hub#")}
    assert first
    assert later
    assert first != later
    assert later <= set(hubs)


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
