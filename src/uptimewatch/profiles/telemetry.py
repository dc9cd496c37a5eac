"""Telemetry profiles (``probes/telemetry/*.yaml``): JSON payload paths -> normalized fields.

A device that pushes (site gateway, generator controller, fuel sensor, power meter) publishes a
JSON object; its profile names, for each normalized field, the dotted path of the value in the
payload and how to read it. The value semantics are the SNMP profiles' (``probes/README.md``):
``sentinels`` (raw values meaning "unknown"), ``scale``, ``map`` with ``unmapped``, and
``plausible`` bounds. A value that is absent is null; a value of the wrong type is null plus a
problem, so one bad reading never hides the others.

The profiles live in their own directory with their own small schema: the SNMP catalog never
reads them, and they never name an OID.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..model import fields as field_registry
from ..model.observation import FieldValue
from ._yaml import load_yaml
from .compiled import fmt
from .schema import FIELD_NAME, Plausible, Scalar

TelemetryType = Literal["int", "float", "string", "bool", "enum"]
_PATH_PART = r"[A-Za-z0-9_\-]+"
_TRUE: Final = frozenset({"true", "on", "yes", "1"})
_FALSE: Final = frozenset({"false", "off", "no", "0"})
MISSING: Any = object()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelemetryValue(_Strict):
    """How one payload value becomes one normalized field value."""

    path: Annotated[str, Field(pattern=rf"^{_PATH_PART}(\.{_PATH_PART})*$")]
    type: TelemetryType
    scale: float | None = None
    unit: str | None = None
    sentinels: list[int | float | str | bool] = Field(default_factory=list)
    map: dict[Any, Scalar] | None = None
    unmapped: Literal["null", "keep"] = "null"
    plausible: Plausible | None = None
    description: str | None = None


class TelemetryProfileSpec(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")]
    description: str
    fields: dict[str, TelemetryValue] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _names(cls, value: dict[str, TelemetryValue]) -> dict[str, TelemetryValue]:
        for name, spec in value.items():
            if not FIELD_NAME.match(name) or "[" in name:
                raise ValueError(f"{name!r} is not a normalized field name like power.battery_voltage_volts")
            if (
                field_registry.lookup(name) is None
                and field_registry.base_name(name) not in field_registry.FIELDS
            ):
                raise ValueError(field_registry.unknown_message(name))
            if spec.type == "enum" and spec.map is None:
                raise ValueError(f"{name}: type enum needs a map")
        return value


class TelemetryProfileError(Exception):
    """Telemetry profiles that cannot be used; each line names the file and the problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _lookup_key(value: Any) -> Any:
    # JSON and YAML disagree on little: 1 and 1.0 and "1" stay apart, true is not 1
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    return ("str", str(value))


@dataclass(frozen=True, slots=True, eq=False)
class CompiledValue:
    name: str
    path: tuple[str, ...]
    kind: TelemetryType
    scale: float | None
    unit: str | None
    sentinels: frozenset[Any]
    mapping: Mapping[Any, FieldValue] | None
    keep_unmapped: bool
    pmin: float | None
    pmax: float | None
    hint: str | None

    def read(self, payload: Any) -> Any:
        node = payload
        for part in self.path:
            if isinstance(node, dict):
                node = node.get(part, MISSING)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return MISSING
            if node is MISSING:
                return MISSING
        return node

    def decode(self, raw: Any, problems: list[str]) -> FieldValue:
        """Returns the field value; a wrong type adds a problem starting with the field name."""
        if raw is None or raw is MISSING:
            return None
        if isinstance(raw, dict | list):
            problems.append(f"{self.name}: expected a {self.kind}, got a JSON {type(raw).__name__}")
            return None
        if _lookup_key(raw) in self.sentinels:
            return None
        if self.mapping is not None:
            mapped = self.mapping.get(_lookup_key(raw), MISSING)
            if mapped is not MISSING:
                return mapped  # type: ignore[no-any-return]
            if not self.keep_unmapped:
                problems.append(f"{self.name}: unexpected value {raw!r} (not in the profile's map)")
                return None
            return raw  # type: ignore[no-any-return]
        kind = self.kind
        if kind in {"string", "enum"}:
            return raw if isinstance(raw, str) else json.dumps(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int | float) and raw in (0, 1):
                return bool(raw)
            if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
                return raw.strip().lower() in _TRUE
            problems.append(f"{self.name}: expected a boolean, got {raw!r}")
            return None
        number = _number(raw)
        if number is None:
            problems.append(f"{self.name}: expected a number, got {raw!r}")
            return None
        value: int | float = float(number) if kind == "float" else number
        if self.scale is not None:
            value = value * self.scale
        if kind == "int" and isinstance(value, float) and value.is_integer() and self.scale is None:
            value = int(value)
        if (self.pmin is not None and value < self.pmin) or (self.pmax is not None and value > self.pmax):
            lo = "" if self.pmin is None else fmt(self.pmin)
            hi = "" if self.pmax is None else fmt(self.pmax)
            unit = f" {self.unit}" if self.unit else ""
            hint = f" ({self.hint})" if self.hint else ""
            problems.append(
                f"{self.name}: {fmt(value)}{unit} is outside the plausible range {lo}..{hi}{unit}{hint}; "
                "value dropped"
            )
            return None
        return value


def _number(raw: Any) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return raw if not isinstance(raw, float) or math.isfinite(raw) else None
    if isinstance(raw, str):
        try:
            text = raw.strip()
            return int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True, eq=False)
class TelemetryProfile:
    name: str
    values: tuple[CompiledValue, ...]

    def decode(self, payload: Mapping[str, Any]) -> tuple[dict[str, FieldValue], list[str]]:
        """Every field of the profile (null when absent) and the problems found."""
        fields: dict[str, FieldValue] = {}
        problems: list[str] = []
        for value in self.values:
            fields[value.name] = value.decode(value.read(payload), problems)
        return fields, problems


def compile_profile(spec: TelemetryProfileSpec) -> TelemetryProfile:
    values = []
    for name, v in spec.fields.items():
        mapping = None if v.map is None else {_lookup_key(k): out for k, out in v.map.items()}
        values.append(
            CompiledValue(
                name=name,
                path=tuple(v.path.split(".")),
                kind=v.type,
                scale=v.scale,
                unit=v.unit,
                sentinels=frozenset(_lookup_key(s) for s in v.sentinels),
                mapping=mapping,
                keep_unmapped=v.unmapped == "keep",
                pmin=v.plausible.min if v.plausible else None,
                pmax=v.plausible.max if v.plausible else None,
                hint=v.plausible.hint if v.plausible else None,
            )
        )
    return TelemetryProfile(spec.name, tuple(values))


def default_telemetry_dir(profiles_dir: Path) -> Path:
    return profiles_dir / "telemetry"


def load_telemetry_profiles(directory: str | Path) -> dict[str, TelemetryProfile]:
    """Every ``*.yaml`` in ``directory`` by name; a missing directory holds none. Blocking (file
    reads). Raises :class:`TelemetryProfileError` listing every problem."""
    root = Path(directory)
    if not root.is_dir():
        return {}
    problems: list[str] = []
    out: dict[str, TelemetryProfile] = {}
    for path in sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml")):
        try:
            raw, yaml_problems = load_yaml(path.read_text(encoding="utf-8"))
            if yaml_problems:
                problems.extend(f"{path}:{line}: {message}" for line, message in yaml_problems)
                continue
            spec = TelemetryProfileSpec.model_validate(raw)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"{path}: {where}: {str(err['msg']).removeprefix('Value error, ')}")
            continue
        if spec.name in out:
            problems.append(f"{path}: telemetry profile {spec.name!r} is defined twice")
            continue
        out[spec.name] = compile_profile(spec)
    if problems:
        raise TelemetryProfileError(problems)
    return out
