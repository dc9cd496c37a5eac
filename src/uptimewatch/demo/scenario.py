"""The demo's timeline: what happens to which site when, read from an editable YAML file.

Times (``at``) are scenario time. ``speed`` accelerates scenario time and the simulator's clock
alike: with ``speed: 10`` a step at ``5m`` happens 30 real seconds after the start, and a battery
that lasts an hour drains in six real minutes.

Each step names a site (``hub#0``, ``agg#1``, ``leaf#3``: the n-th site of that role in the
generated province, or a site id), optionally a device of it (``bts``, ``power``, ``link``), and
exactly one action: ``mains``, ``generator``, ``cut`` (on/off), ``dead`` (true/false),
``reboot: true`` or ``rx_fade`` (dB).

With ``repeat``, the steps play again and again, ``pause`` after the last one, each round on the
next sites of each role (``hub#0`` becomes ``hub#1``, then ``hub#2``...), so a demo left running
keeps a living province instead of turning green for good after the first act.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..i18n import N_, translator
from ..primitives import Duration
from .device_models import data_dir
from .devices import Simulator
from .province import DemoProvince

log = logging.getLogger(__name__)

ACTIONS = ("mains", "generator", "cut", "dead", "reboot", "rx_fade")
_DEVICE_ACTIONS = frozenset({"dead", "reboot", "rx_fade"})


class ScenarioError(ValueError):
    """The scenario file is invalid or names sites the province does not have."""


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Duration = Field(description="Scenario time of the step: seconds or '30s', '5m', '1h'.")
    site: str = Field(description="hub#N, agg#N, leaf#N or a site id.")
    device: str | None = Field(default=None, description="bts, power or link: for dead, reboot, rx_fade.")
    mains: bool | None = None
    generator: bool | None = None
    cut: bool | None = None
    dead: bool | None = None
    reboot: bool | None = None
    rx_fade: float | None = Field(default=None, ge=0, le=100, description="Extra path loss in dB.")
    say: str | None = Field(default=None, description="Printed when the step runs; {site} is its name.")

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step needs exactly one action of {', '.join(ACTIONS)} (got {given or 'none'})"
            )
        if given[0] in _DEVICE_ACTIONS and self.device is None:
            raise ValueError(f"{given[0]} needs a device (bts, power or link)")
        if self.reboot is False:
            raise ValueError("reboot: true is the only value")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    speed: float = Field(default=10.0, gt=0, le=10_000, description="Scenario seconds per real second.")
    steps: list[Step] = Field(default_factory=list)
    repeat: bool = Field(
        default=False,
        description="Play the steps again after the last one, each round on the next sites of each role.",
    )
    pause: Duration = Field(
        default=300.0, gt=0, description="Scenario time between a round's last step and the next round."
    )

    @property
    def round_length(self) -> float:
        """Scenario seconds from one round's start to the next's."""
        return max((s.at for s in self.steps), default=0.0) + self.pause


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """A step resolved against one province: concrete site and device, real delay from start."""

    step: Step
    site_id: str
    device_ref: str | None  # "site/device"
    real_at: float  # seconds after the scenario starts

    def describe(self, province: DemoProvince) -> str:
        """One console line, in the province's language (the ``say`` text is the author's own)."""
        s = self.step
        t = translator(str(province.config.get("province", {}).get("language", "en")))
        where = f"{province.site_name(self.site_id)} ({self.device_ref or self.site_id})"
        what = t.gettext(_WORDS[s.action][0 if getattr(s, s.action) else 1])
        if s.action == "rx_fade":
            what = (
                t.gettext("rain fade of {db} dB on the radio hop", db=f"{s.rx_fade:g}")
                if s.rx_fade
                else t.gettext("rain fade over")
            )
        text = f"{where}: {what}"
        if s.say:
            text += f" — {s.say.replace('{site}', province.site_name(self.site_id))}"
        return text


#: how each action reads when it is set (true / a number) and when it is cleared
_WORDS: dict[str, tuple[str, str]] = {
    "mains": (N_("mains power restored"), N_("mains power fails")),
    "generator": (N_("generator starts"), N_("generator stops")),
    "cut": (
        N_("transmission cut: the site and all sites behind it go silent"),
        N_("transmission repaired"),
    ),
    "dead": (N_("SNMP agent stops answering"), N_("SNMP agent answers again")),
    "reboot": (N_("reboots (sysUpTime back to 0)"), N_("reboots")),
    "rx_fade": ("", ""),
}


def default_scenario_path() -> Path:
    return Path(str(data_dir() / "scenario.yaml"))


def load_scenario(path: Path | None = None) -> Scenario:
    """Reads and validates a scenario file (default: the shipped one). Blocking."""
    source = path or default_scenario_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{source}: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        issues = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ScenarioError(f"{source}: {issues}") from exc


def _shifted(target: str, province: DemoProvince, by: int) -> str:
    """``hub#0`` moved ``by`` sites along its role (wrapping round); a site id stays as it is."""
    role, sep, nth = target.partition("#")
    count = len(province.roles.get(role, ()))
    if not sep or not by or not nth.isdigit() or count == 0 or int(nth) >= count:
        return target  # unchanged: select() explains what is wrong with it
    return f"{role}#{(int(nth) + by) % count}"


def plan(
    scenario: Scenario, province: DemoProvince, *, strict: bool = True, round_no: int = 0
) -> list[PlannedStep]:
    """Resolves every step's targets. A step naming a site or device the province lacks raises
    :class:`ScenarioError`, or with ``strict=False`` is left out with a warning (a tiny province
    may not have ``leaf#6``). ``round_no`` (of a repeating scenario) moves role targets that many
    sites along and its times that many rounds later."""
    planned: list[PlannedStep] = []
    problems: list[str] = []
    device_ids = {(d.site_id, d.device_id) for d in province.devices}
    offset = round_no * scenario.round_length
    for n, step in enumerate(scenario.steps):
        try:
            site_id = province.select(_shifted(step.site, province, round_no))
        except KeyError as exc:
            problems.append(f"steps.{n}: {exc.args[0]}")
            continue
        ref = None
        if step.device is not None:
            if (site_id, step.device) not in device_ids:
                problems.append(f"steps.{n}: site {site_id} has no device {step.device!r}")
                continue
            ref = f"{site_id}/{step.device}"
        planned.append(PlannedStep(step, site_id, ref, (offset + step.at) / scenario.speed))
    if problems and strict:
        raise ScenarioError("; ".join(problems))
    for problem in problems:
        log.warning("scenario step left out: %s", problem)
    planned.sort(key=lambda p: p.real_at)
    return planned


def apply(planned: PlannedStep, sim: Simulator) -> None:
    s = planned.step
    ref = planned.device_ref or ""
    match s.action:
        case "mains":
            sim.set_mains(planned.site_id, bool(s.mains))
        case "generator":
            sim.set_generator(planned.site_id, bool(s.generator))
        case "cut":
            sim.set_cut(planned.site_id, bool(s.cut))
        case "dead":
            sim.set_dead(ref, bool(s.dead))
        case "reboot":
            sim.reboot(ref)
        case "rx_fade":
            sim.set_rx_fade(ref, float(s.rx_fade or 0.0))


async def run_rounds(
    scenario: Scenario,
    province: DemoProvince,
    sim: Simulator,
    *,
    on_step: Callable[[PlannedStep], Any] | None = None,
    on_round: Callable[[int, list[PlannedStep]], Any] | None = None,
    start: float | None = None,
) -> None:
    """The scenario's first round, then, with ``repeat``, the next ones until cancelled."""
    origin = asyncio.get_running_loop().time() if start is None else start
    round_no = 0
    while True:
        steps = plan(scenario, province, strict=False, round_no=round_no)
        if on_round is not None:
            on_round(round_no, steps)
        await run_scenario(steps, sim, on_step=on_step, start=origin)
        if not scenario.repeat or not steps:
            return
        round_no += 1


async def run_scenario(
    steps: list[PlannedStep],
    sim: Simulator,
    *,
    on_step: Callable[[PlannedStep], Any] | None = None,
    start: float | None = None,
) -> None:
    """Applies each step at ``start + real_at`` (event-loop time; default now). Cancel to stop."""
    loop = asyncio.get_running_loop()
    origin = loop.time() if start is None else start
    for planned in steps:
        delay = origin + planned.real_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            apply(planned, sim)
        except (KeyError, ValueError) as exc:  # a step the simulator refuses should not end the demo
            log.error("scenario step at %.0f s failed: %s", planned.step.at, exc)
            continue
        if on_step is not None:
            on_step(planned)
