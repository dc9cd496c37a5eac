"""Device models of the simulator: YAML files in ``demo/data`` compiled into sorted OID tables.

A model lists what a kind of device serves (OID, SNMP type, where the value comes from); the
values themselves come from :mod:`.devices` at request time. Everything that can be decided when
the model loads (constants, scaling, the sort order that GETNEXT walks) is decided here.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ..probing import ber

TYPES: dict[str, int] = {
    "integer": ber.INTEGER,
    "string": ber.OCTET_STRING,
    "oid": ber.OBJECT_IDENTIFIER,
    "ipaddress": ber.IPADDRESS,
    "counter32": ber.COUNTER32,
    "gauge32": ber.GAUGE32,
    "timeticks": ber.TIMETICKS,
    "counter64": ber.COUNTER64,
}
KINDS = frozenset({"router", "power", "radio"})
_INT32 = (-(2**31), 2**31 - 1)
_U32 = 2**32
_U64 = 2**64

RawValue = int | bytes | ber.OidTuple


class ModelError(ValueError):
    """A device model file is wrong; the message names the file and the object."""


def convert(tag: int, value: object, scale: float = 1.0) -> RawValue:
    """A computed quantity in the form the SNMP type carries it (wrapping counters, clamping gauges)."""
    if tag == ber.OCTET_STRING:
        return value if isinstance(value, bytes) else str(value).encode()
    if tag == ber.OBJECT_IDENTIFIER:
        return value if isinstance(value, tuple) else ber.parse_oid(str(value))
    if tag == ber.IPADDRESS:
        return value if isinstance(value, bytes) else socket.inet_aton(str(value))
    if not isinstance(value, int | float):
        raise TypeError(f"a number is needed for tag 0x{tag:02x}, got {value!r}")
    number = value * scale if scale != 1.0 else value
    if tag == ber.INTEGER:
        return max(_INT32[0], min(_INT32[1], round(number)))
    if tag == ber.GAUGE32:
        return max(0, min(_U32 - 1, round(number)))
    if tag == ber.COUNTER64:
        return int(number) % _U64
    return int(number) % _U32  # Counter32 and TimeTicks wrap


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One OID a model serves. Exactly one of ``const`` and ``var`` is set."""

    oid: ber.OidTuple
    tag: int
    name: str
    const: RawValue | None = None
    var: str | None = None
    scale: float = 1.0
    index: int = 0  # the ifIndex for per-interface objects
    present: str | None = None  # a boolean quantity: the object exists only while it is true
    #: the whole encoded varbind, for a constant that is always present
    encoded: bytes | None = None


@dataclass(frozen=True, slots=True)
class InterfaceSpec:
    index: int
    mbps: float  # average traffic in each direction, for the counters
    admin_down: bool = False
    radio: bool = False  # follows the radio link state


@dataclass(frozen=True, slots=True)
class DeviceModel:
    name: str
    kind: str
    object_id: str
    objects: tuple[ObjectSpec, ...]  # sorted by OID
    oids: tuple[ber.OidTuple, ...]  # the same order, for bisect
    by_oid: Mapping[ber.OidTuple, ObjectSpec]
    interfaces: tuple[InterfaceSpec, ...]

    def variables(self) -> set[str]:
        return {o.var for o in self.objects if o.var} | {o.present for o in self.objects if o.present}


def data_dir() -> Traversable:
    return resources.files("uptimewatch.demo") / "data"


def _read_yaml(source: Traversable | Path) -> Any:
    with source.open("r", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _compile_object(
    where: str, raw: Mapping[str, Any], attrs: Mapping[str, Any], index: int = 0, suffix: str = ""
) -> ObjectSpec:
    known = {"name", "oid", "type", "value", "attr", "var", "scale", "present"}
    if unknown := set(raw) - known:
        raise ModelError(f"{where}: unknown keys {sorted(unknown)}")
    name = str(raw.get("name", raw.get("oid")))
    try:
        oid = ber.parse_oid(str(raw["oid"]) + suffix)
        tag = TYPES[raw["type"]]
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{where}: {name}: needs a numeric oid and a type in {sorted(TYPES)}") from exc
    sources = [k for k in ("value", "attr", "var") if k in raw]
    if len(sources) != 1:
        raise ModelError(f"{where}: {name}: give exactly one of value, attr, var")
    scale = float(raw.get("scale", 1.0))
    present = raw.get("present")
    if "var" in raw:
        return ObjectSpec(oid, tag, name, var=str(raw["var"]), scale=scale, index=index, present=present)
    if "attr" in raw:
        if raw["attr"] not in attrs:
            raise ModelError(f"{where}: {name}: the model has no attribute {raw['attr']!r}")
        value = attrs[raw["attr"]]
    else:
        value = raw["value"]
    try:
        const = convert(tag, value, scale)
    except (TypeError, ValueError, OSError) as exc:
        raise ModelError(f"{where}: {name}: value {value!r} does not fit type {raw['type']}") from exc
    encoded = None if present else ber.encode_varbind((oid, tag, const))
    return ObjectSpec(oid, tag, name, const=const, index=index, present=present, encoded=encoded)


def compile_model(where: str, common: Mapping[str, Any], spec: Mapping[str, Any]) -> DeviceModel:
    for key in ("model", "kind", "descr", "object_id", "interfaces"):
        if key not in spec:
            raise ModelError(f"{where}: missing {key!r}")
    if spec["kind"] not in KINDS:
        raise ModelError(f"{where}: kind must be one of {sorted(KINDS)}")
    system = {"descr": spec["descr"], "object_id": spec["object_id"]}
    objects = [_compile_object(where, o, system) for o in [*common["objects"], *(spec.get("objects") or [])]]
    interfaces: list[InterfaceSpec] = []
    for iface in spec["interfaces"]:
        attrs = {"alias": "", "mtu": 1500, **iface}
        index = int(iface["index"])
        objects.extend(
            _compile_object(where, col, attrs, index=index, suffix=f".{index}")
            for col in common["per_interface"]
        )
        interfaces.append(
            InterfaceSpec(
                index=index,
                mbps=float(iface.get("mbps", 0.0)),
                admin_down=bool(iface.get("admin_down", False)),
                radio=bool(iface.get("radio", False)),
            )
        )
    objects.sort(key=lambda o: o.oid)
    by_oid = {o.oid: o for o in objects}
    if len(by_oid) != len(objects):
        dupes = sorted({ber.format_oid(o.oid) for o in objects if sum(p.oid == o.oid for p in objects) > 1})
        raise ModelError(f"{where}: OIDs served twice: {dupes}")
    return DeviceModel(
        name=str(spec["model"]),
        kind=str(spec["kind"]),
        object_id=str(spec["object_id"]),
        objects=tuple(objects),
        oids=tuple(o.oid for o in objects),
        by_oid=by_oid,
        interfaces=tuple(interfaces),
    )


def load_models(directory: Traversable | Path | None = None) -> dict[str, DeviceModel]:
    """Every model in ``directory`` (default: the shipped ``demo/data``), by model name. Blocking."""
    base = directory if directory is not None else data_dir()
    common = _read_yaml(base / "common.yaml")
    models: dict[str, DeviceModel] = {}
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml") or entry.name in ("common.yaml", "scenario.yaml"):
            continue
        spec = _read_yaml(entry)
        if not isinstance(spec, dict) or "model" not in spec:
            continue
        model = compile_model(entry.name, common, spec)
        models[model.name] = model
    return models
