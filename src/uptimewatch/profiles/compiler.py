"""From validated :class:`~.schema.ProfileSpec` to :class:`~.compiled.CompiledProfile`.

Checks that need the whole profile (or the whole catalog) happen here and are reported as
:class:`Issue` with file and line, like schema errors.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import fields as field_registry
from ..model.observation import FieldValue
from ..primitives import shown
from .compiled import (
    TRUTH_VALUE,
    CompiledDerived,
    CompiledProfile,
    CompiledTable,
    ConditionFn,
    DerivedFn,
    Getter,
    Precedence,
    RowsFn,
    ValueDecoder,
)
from .schema import (
    FIELD_NAME,
    INDEX,
    Condition,
    DerivedSpec,
    ProfileSpec,
    RowsSpec,
    TableSpec,
    ValueSpec,
    normalize_oid,
)

_INT_KEYS = frozenset({"int", "counter", "enum", "bool", "timeticks"})
_SCALABLE = frozenset({"int", "float", "counter", "timeticks"})


@dataclass(frozen=True, slots=True)
class Issue:
    path: str
    line: int | None
    where: str  # dotted location of the offending key, e.g. "scalars.power.x.type"
    message: str

    def __str__(self) -> str:
        pos = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{pos}: {self.where}: {self.message}" if self.where else f"{pos}: {self.message}"


#: reports a problem at a location inside the profile (a tuple of keys, as in pydantic errors)
Report = Callable[[Sequence[int | str], str], None]


def is_template(name: str) -> bool:
    return name.endswith("[" + INDEX + "]") and name.count(INDEX) == 1


def split_template(name: str) -> tuple[str, str]:
    before, _, after = name.partition(INDEX)
    return before, after


def registered(name: str) -> bool:
    """A profile's own private value (``_...``), or a field of :mod:`uptimewatch.model.fields`."""
    return field_registry.is_private(name) or field_registry.lookup(name) is not None


def valid_field(name: str, template: bool) -> bool:
    if template:
        return is_template(name) and bool(FIELD_NAME.match(name.replace(INDEX, "0")))
    return INDEX not in name and bool(FIELD_NAME.match(name))


def check_value_spec(spec: ValueSpec, loc: tuple[int | str, ...], report: Report) -> None:
    kind = spec.type
    if kind == "enum" and spec.map is None:
        report((*loc, "type"), "type enum needs a map from raw values to words")
    if spec.scale is not None and kind not in _SCALABLE:
        report((*loc, "scale"), f"scale does not apply to type {kind}")
    if spec.scale is not None and (spec.scale == 0 or not math.isfinite(spec.scale)):
        report((*loc, "scale"), "scale must be a finite number other than 0")
    if spec.plausible is not None and (kind not in _SCALABLE or spec.map is not None):
        report((*loc, "plausible"), f"plausible applies to unmapped numbers, not to type {kind}")
    if spec.signed and kind not in _INT_KEYS - {"bool", "enum"}:
        report((*loc, "signed"), f"signed does not apply to type {kind}")
    if spec.mask is not None and kind not in _INT_KEYS:
        report((*loc, "mask"), f"mask does not apply to type {kind}")
    if spec.map is not None:
        for key in spec.map:
            if not _key_fits(kind, key):
                report(
                    (*loc, "map", key),
                    f"map key {shown(key)} cannot be a raw value of type {kind}{_why(kind, key)}",
                )
    for i, sentinel in enumerate(spec.sentinels):
        if not _key_fits(kind, sentinel):
            report(
                (*loc, "sentinels", i),
                f"sentinel {shown(sentinel)} cannot be a raw value of type {kind}{_why(kind, sentinel)}",
            )


_BAD_KEY: Any = object()


def _raw_key(kind: str, key: Any) -> Any:
    """A map key or sentinel as the decoder compares it; ``_BAD_KEY`` for an OID that
    :func:`check_value_spec` has already reported."""
    if kind != "oid":
        return key
    try:
        return normalize_oid(key)
    except ValueError:
        return _BAD_KEY


def _why(kind: str, key: Any) -> str:
    """What is wrong with an OID-typed key, after a colon; nothing for other types."""
    if kind != "oid":
        return ""
    try:
        normalize_oid(key)
    except ValueError as exc:
        return f": {exc}"
    return ""


def _key_fits(kind: str, key: Any) -> bool:
    if isinstance(key, bool):
        return False
    if kind in _INT_KEYS:
        return isinstance(key, int)
    if kind == "float":
        return isinstance(key, int | float)
    if kind == "oid":
        try:
            normalize_oid(key)
        except ValueError:
            return False
        return True
    return isinstance(key, str)


def value_decoder(name: str, spec: ValueSpec) -> ValueDecoder:
    mul: float | int | None = None
    div: int | None = None
    if spec.scale is not None:
        inverse = 1 / spec.scale
        # a scale written as 0.1 or 0.0166666667 means "divide by 10 / by 60": dividing keeps it exact
        if abs(spec.scale) < 1 and abs(inverse - round(inverse)) < 1e-6 * abs(inverse):
            div = round(inverse)
        else:
            mul = int(spec.scale) if float(spec.scale).is_integer() else spec.scale
    mapping: dict[Any, FieldValue] | None = None
    if spec.map is not None:
        mapping = {key: v for k, v in spec.map.items() if (key := _raw_key(spec.type, k)) is not _BAD_KEY}
    elif spec.type == "bool":
        mapping = dict(TRUTH_VALUE)
    before, after = split_template(name) if INDEX in name else (name, "")
    return ValueDecoder(
        name=name,
        oid=spec.oid,
        kind=spec.type,
        mul=mul,
        div=div,
        signed=spec.signed,
        mask=spec.mask,
        sentinels=frozenset(key for s in spec.sentinels if (key := _raw_key(spec.type, s)) is not _BAD_KEY),
        mapping=mapping,
        keep_unmapped=spec.unmapped == "keep",
        pmin=spec.plausible.min if spec.plausible else None,
        pmax=spec.plausible.max if spec.plausible else None,
        hint=spec.plausible.hint if spec.plausible else None,
        unit=spec.unit,
        before=before,
        after=after,
    )


def _compile_table(name: str, spec: TableSpec, report: Report) -> CompiledTable:
    loc: tuple[int | str, ...] = ("tables", name)
    columns = []
    prefix = spec.root + "."
    for template, col in spec.columns.items():
        cloc = (*loc, "columns", template)
        if not valid_field(template, template=True):
            report(cloc, f"column field {template!r} must be a field name ending in [{INDEX}]")
            continue
        if not registered(template):
            report(cloc, field_registry.unknown_message(template))
            continue
        if not col.oid.startswith(prefix) or "." in col.oid[len(prefix) :]:
            report((*cloc, "oid"), f"column OID {col.oid} is not a column of the table root {spec.root}")
        check_value_spec(col, cloc, report)
        columns.append(value_decoder(template, col))
    require = None
    if spec.require is not None:
        if spec.require in spec.columns:
            require = split_template(spec.require)
        else:
            report((*loc, "require"), f"require {spec.require!r} is not one of this table's columns")
    # the label may come from another table with the same index (ifName in ifXTable labels ifTable)
    label = split_template(spec.label) if spec.label is not None else None
    if not spec.columns:
        report((*loc, "columns"), "a table needs at least one column")
    return CompiledTable(
        name=name,
        root=spec.root,
        columns=tuple(columns),
        label=label,
        require=require,
        max_rows=spec.max_rows,
    )


class _Ref:
    """A field a derived field reads; a template is resolved per row index."""

    __slots__ = ("after", "before", "templated")

    def __init__(self, name: str) -> None:
        self.templated = INDEX in name
        self.before, self.after = split_template(name) if self.templated else (name, "")

    def name(self, index: str) -> str:
        return self.before + index + self.after if self.templated else self.before


def _condition(cond: Condition) -> ConditionFn:
    if cond.all is not None:
        parts = [_condition(c) for c in cond.all]

        def all_of(get: Getter, index: str) -> bool | None:
            unknown = False
            for part in parts:
                result = part(get, index)
                if result is False:
                    return False
                if result is None:
                    unknown = True
            return None if unknown else True

        return all_of
    if cond.any is not None:
        parts = [_condition(c) for c in cond.any]

        def any_of(get: Getter, index: str) -> bool | None:
            unknown = False
            for part in parts:
                result = part(get, index)
                if result is True:
                    return True
                if result is None:
                    unknown = True
            return None if unknown else False

        return any_of
    assert cond.field is not None
    ref = _Ref(cond.field)
    op = next(n for n in ("eq", "ne", "in_", "gt", "ge", "lt", "le") if n in cond.model_fields_set)
    operand: Any = getattr(cond, op)
    if op in ("eq", "ne", "in_"):
        options = list(operand) if op == "in_" else [operand]
        negate = op == "ne"

        def equality(get: Getter, index: str) -> bool | None:
            value = get(ref.name(index))
            if value is None:
                return None
            return any(_same(value, o) for o in options) != negate

        return equality
    compare: Callable[[float, float], bool] = {
        "gt": float.__gt__,
        "ge": float.__ge__,
        "lt": float.__lt__,
        "le": float.__le__,
    }[op]
    bound = float(operand)

    def ordering(get: Getter, index: str) -> bool | None:
        value = get(ref.name(index))
        if value is None or isinstance(value, bool | str):
            return None
        return compare(float(value), bound)

    return ordering


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 is the same number, but True == 1 is not the same thing to a profile writer
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _derived_fn(spec: DerivedSpec) -> DerivedFn:
    if spec.when is not None:
        return _condition(spec.when)
    if spec.cases is not None:
        cases = [(_condition(c.when), c.value) for c in spec.cases]
        default = spec.default

        def by_cases(get: Getter, index: str) -> FieldValue:
            for cond, value in cases:
                if cond(get, index) is True:
                    return value
            return default

        return by_cases
    if spec.first_of is not None:
        refs = [_Ref(n) for n in spec.first_of]

        def first_of(get: Getter, index: str) -> FieldValue:
            for ref in refs:
                value = get(ref.name(index))
                if value is not None:
                    return value
            return None

        return first_of
    pair = spec.difference or spec.product or spec.quotient
    assert pair is not None
    a, b = _Ref(pair[0]), _Ref(pair[1])
    op: Callable[[float, float], float | None]
    if spec.difference is not None:
        op = operator.sub
    elif spec.product is not None:
        op = operator.mul
    else:
        op = _divide

    def arithmetic(get: Getter, index: str) -> FieldValue:
        x, y = get(a.name(index)), get(b.name(index))
        if x is None or y is None or isinstance(x, bool | str) or isinstance(y, bool | str):
            return None
        return op(x, y)

    return arithmetic


def _no_fn(get: Getter, index: str) -> FieldValue:
    raise AssertionError("a rows field is computed by its rows_fn")


def _divide(x: float, y: float) -> float | None:
    return None if y == 0 else x / y


def _rows_fn(spec: RowsSpec) -> RowsFn:
    ref = _Ref(spec.of)
    where = _condition(spec.where) if spec.where is not None else None
    pick = spec.pick

    def rows(get: Getter, indexes: Sequence[str]) -> FieldValue:
        values: list[FieldValue] = []
        for index in indexes:
            if where is not None and where(get, index) is not True:
                continue
            value = get(ref.name(index))
            if value is not None:
                if pick == "first":
                    return value
                values.append(value)
        if pick == "count":
            return len(values)
        if pick in ("any", "all"):
            flags = [v for v in values if isinstance(v, bool)]
            if not flags:
                return None
            return any(flags) if pick == "any" else all(flags)
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if pick == "first" or not numbers:
            return None
        return min(numbers) if pick == "min" else max(numbers)

    return rows


def derived_refs(spec: DerivedSpec) -> list[str]:
    refs: list[str] = []

    def walk(cond: Condition) -> None:
        if cond.field is not None:
            refs.append(cond.field)
        for sub in (cond.all or []) + (cond.any or []):
            walk(sub)

    if spec.when is not None:
        walk(spec.when)
    for case in spec.cases or []:
        walk(case.when)
    refs.extend(spec.first_of or [])
    for pair in (spec.difference, spec.product, spec.quotient):
        refs.extend(pair or [])
    if spec.rows is not None:
        refs.append(spec.rows.of)
        if spec.rows.where is not None:
            walk(spec.rows.where)
    return refs


def compile_profile(
    spec: ProfileSpec,
    *,
    source: str,
    ancestors: frozenset[str],
    known_fields: Callable[[str], bool],
    profile_names: Mapping[str, object],
    report: Report,
) -> CompiledProfile:
    """``known_fields`` says whether any profile of the catalog declares a (non-template) field."""
    declared: dict[str, tuple[int | str, ...]] = {}

    def declare(name: str, loc: tuple[int | str, ...]) -> None:
        if name in declared:
            first = ".".join(str(x) for x in declared[name])
            report(loc, f"field {name!r} is declared twice (also at {first})")
        else:
            declared[name] = loc

    scalars = []
    for name, sspec in spec.scalars.items():
        loc: tuple[int | str, ...] = ("scalars", name)
        if not valid_field(name, template=False):
            report(loc, f"{name!r} is not a field name (like power.battery_minutes_remaining or if.x[1])")
            continue
        if not registered(name):
            report(loc, field_registry.unknown_message(name))
            continue
        declare(name, loc)
        check_value_spec(sspec, loc, report)
        scalars.append(value_decoder(name, sspec))

    tables = []
    template_tables: dict[str, frozenset[str]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for tname, tspec in spec.tables.items():
        table = _compile_table(tname, tspec, report)
        tables.append(table)
        for col in table.columns:
            declare(col.name, ("tables", tname, "columns", col.name))
            template_tables[col.name] = frozenset({tname})
    for table in tables:
        label = spec.tables[table.name].label
        if label is None:
            continue
        if label not in template_tables:
            report(("tables", table.name, "label"), f"label {label!r} is not a column of this profile")
            continue
        for col in table.columns:
            labels[col.before] = split_template(label)

    # derived fields: validate names and references, then order them so each reads computed inputs
    pending: dict[str, list[str]] = {}
    for name, dspec in spec.derived.items():
        loc = ("derived", name)
        templated = INDEX in name
        if not valid_field(name, template=templated):
            report(loc, f"{name!r} is not a field name (a template must end in [{INDEX}])")
            continue
        if not registered(name):
            report(loc, field_registry.unknown_message(name))
            continue
        declare(name, loc)
        refs = derived_refs(dspec)
        if dspec.rows is not None:
            if templated:
                report(loc, f"{name!r}: rows gives one value, so its name cannot have [{INDEX}]")
            if not is_template(dspec.rows.of):
                report(
                    (*loc, "rows", "of"), f"rows of {dspec.rows.of!r}: name a per-row field with [{INDEX}]"
                )
        for ref in refs:
            if INDEX in ref:
                if dspec.rows is not None:
                    if ref not in template_tables and ref not in spec.derived:
                        report(loc, f"{ref!r} is not a column or per-row derived field of this profile")
                elif not templated:
                    report(loc, f"{ref!r} has {INDEX} but {name!r} is not a per-row field")
                elif ref not in template_tables and ref not in spec.derived:
                    report(loc, f"{ref!r} is not a column or per-row derived field of this profile")
            elif not valid_field(ref, template=False):
                report(loc, f"{ref!r} is not a field name")
            elif ref not in declared and ref not in spec.derived and not known_fields(ref):
                report(loc, f"{ref!r} is not declared by any profile")
        pending[name] = [r for r in refs if r in spec.derived]
    order: list[str] = []
    done: set[str] = set()
    while pending:
        ready = [n for n, deps in pending.items() if all(d in done or d not in pending for d in deps)]
        if not ready:
            report(
                ("derived", next(iter(pending))),
                f"derived fields refer to each other in a cycle: {sorted(pending)}",
            )
            break
        for n in ready:
            order.append(n)
            done.add(n)
            del pending[n]
    derived = []
    for name in order:
        dspec = spec.derived[name]
        templated = INDEX in name
        tabs: frozenset[str] = frozenset()
        if templated:
            for ref in derived_refs(dspec):
                tabs |= template_tables.get(ref, frozenset())
            template_tables[name] = tabs
        before, after = split_template(name) if templated else (name, "")
        if dspec.rows is not None:
            tabs = template_tables.get(dspec.rows.of, frozenset())
            derived.append(CompiledDerived(name, name, "", False, tabs, _no_fn, rows_fn=_rows_fn(dspec.rows)))
            continue
        derived.append(CompiledDerived(name, before, after, templated, tabs, _derived_fn(dspec)))

    precedence = []
    for fname, rule in spec.precedence.items():
        loc = ("precedence", fname)
        if fname not in declared:
            report(loc, f"precedence for {fname!r}, which this profile does not declare")
        for other in rule.over:
            if other not in profile_names:
                report((*loc, "over"), f"unknown profile {other!r}")
            elif other == spec.name:
                report((*loc, "over"), "a profile cannot take precedence over itself")
        precedence.append(Precedence(fname, tuple(rule.over), rule.tolerance, rule.tolerance_percent))

    match = spec.match
    return CompiledProfile(
        name=spec.name,
        description=spec.description,
        source=source,
        priority=spec.priority,
        generic=bool(match and match.generic),
        sys_object_ids=tuple(match.sys_object_id) if match else (),
        oid_exists=tuple(match.oid_exists) if match else (),
        ancestors=ancestors,
        scalar_oids=tuple(dict.fromkeys(s.oid for s in scalars)),
        walk_roots=tuple(dict.fromkeys(c.oid for t in tables for c in t.columns)),
        fields=frozenset(declared),
        thresholds=spec.thresholds,
        scalars=tuple(scalars),
        tables=tuple(tables),
        derived=tuple(derived),
        precedence=tuple(precedence),
        labels=labels,
    )
