"""Compiled profiles: what the poller runs for every device on every poll.

Everything that can be decided once is decided at load time: OID lists, value maps as dicts,
sentinels as sets, field-name templates split around ``{index}``, derived fields as closures in
dependency order. The decoder then does dict lookups and arithmetic only, no parsing and no regex.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config.models import Thresholds
from ..model.observation import FieldValue
from ..model.varbind import Varbind

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"

_MISSING: Any = object()
_INT_KINDS = frozenset({"int", "counter", "enum", "bool", "timeticks"})
_NUMERIC_KINDS = frozenset({"int", "counter", "timeticks", "float"})
#: SNMPv2-TC TruthValue, the usual encoding of a boolean
TRUTH_VALUE: dict[Any, FieldValue] = {1: True, 2: False}

RawValue = int | bytes | str | None
Getter = Callable[[str], FieldValue]


def fmt(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(text: bytes, want_int: bool) -> int | float | None:
    """Some agents send numbers as decimal text ("54.1"); read them as numbers."""
    try:
        s = text.decode("ascii").strip().strip("\x00")
        if want_int:
            try:
                return int(s)
            except ValueError:
                return float(s)
        return float(s)
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True, slots=True, eq=False)
class ValueDecoder:
    """Turns the raw value at one OID into one field value (a scalar, or a table column)."""

    name: str  # the field, or the column's template
    oid: str
    kind: str
    mul: float | int | None = None
    div: int | None = None  # a scale of 0.1 divides by 10, which keeps 513 * 0.1 == 51.3 exact
    signed: bool = False
    mask: int | None = None  # bits kept of a packed status word (bitfield)
    sentinels: frozenset[Any] = frozenset()
    mapping: Mapping[Any, FieldValue] | None = None
    keep_unmapped: bool = False
    pmin: float | None = None
    pmax: float | None = None
    hint: str | None = None
    unit: str | None = None
    before: str = ""  # template split around {index}, for columns
    after: str = ""

    def decode(self, name: str, value: RawValue, problems: list[str]) -> FieldValue:
        if value is None:
            return None
        kind = self.kind
        raw: int | float | str
        if kind in _INT_KINDS:
            if isinstance(value, int):
                raw = value
            elif isinstance(value, bytes):
                num = _number(value, True)
                if num is None:
                    problems.append(f"{name}: expected a number, got {value[:40]!r}")
                    return None
                raw = num
            else:
                problems.append(f"{name}: expected a number, got {value!r}")
                return None
        elif kind == "float":
            if isinstance(value, int):
                raw = value
            else:
                num = _number(value, False) if isinstance(value, bytes) else None
                if num is None:
                    problems.append(f"{name}: expected a number, got {value!r}")
                    return None
                raw = num
        elif kind == "string":
            raw = (
                value.decode("utf-8", "replace").strip("\x00 \t\r\n")
                if isinstance(value, bytes)
                else str(value)
            )
        else:  # oid
            raw = value if isinstance(value, str) else str(value)
            # zeroDotZero (any all-zero OID) is the SMI's way of saying "nothing here"
            if not raw.strip("0."):
                return None
        if raw in self.sentinels:
            return None
        if self.signed and isinstance(raw, int) and 0x80000000 <= raw <= 0xFFFFFFFF:
            raw -= 0x100000000
        if self.mask is not None and isinstance(raw, int):
            raw &= self.mask
        if self.mapping is not None:
            mapped = self.mapping.get(raw, _MISSING)
            if mapped is not _MISSING:
                return mapped  # type: ignore[no-any-return]
            if not self.keep_unmapped:
                problems.append(f"{name}: unexpected raw value {raw!r} (not in the profile's map)")
                return None
            return raw
        if kind not in _NUMERIC_KINDS or isinstance(raw, str):
            return raw
        num_value: int | float = raw / 100 if kind == "timeticks" else raw
        if self.div is not None:
            num_value = num_value / self.div
        elif self.mul is not None:
            num_value = num_value * self.mul
        if (self.pmin is not None and num_value < self.pmin) or (
            self.pmax is not None and num_value > self.pmax
        ):
            lo = "" if self.pmin is None else fmt(self.pmin)
            hi = "" if self.pmax is None else fmt(self.pmax)
            unit = f" {self.unit}" if self.unit else ""
            hint = f" ({self.hint})" if self.hint else ""
            problems.append(
                f"{name}: raw value {fmt(raw)} gives {fmt(num_value)}{unit}, outside the plausible "
                f"range {lo}..{hi}{unit}{hint}; value dropped"
            )
            return None
        return num_value


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTable:
    name: str
    root: str
    columns: tuple[ValueDecoder, ...]
    label: tuple[str, str] | None = None  # (before, after) of the label column's template
    require: tuple[str, str] | None = None
    max_rows: int | None = None

    def decode_into(
        self, rows: Mapping[str, list[tuple[str, Varbind]]], out: dict[str, FieldValue], problems: list[str]
    ) -> list[str]:
        """Decodes every row into ``out``; returns the row indexes kept, in walk order."""
        seen: dict[str, None] = {}
        for col in self.columns:
            before, after = col.before, col.after
            for index, vb in rows.get(col.oid, ()):
                name = before + index + after
                out[name] = col.decode(name, vb.value, problems)
                seen[index] = None
        if not seen:
            return []
        indexes = list(seen)
        if self.max_rows is not None and len(indexes) > self.max_rows:
            problems.append(f"table {self.name}: {len(indexes)} rows, kept the first {self.max_rows}")
            for index in indexes[self.max_rows :]:
                self._drop(index, out)
            indexes = indexes[: self.max_rows]
        if self.require is not None:
            before, after = self.require
            kept = []
            for index in indexes:
                if out.get(before + index + after) is None:
                    self._drop(index, out)
                else:
                    kept.append(index)
            indexes = kept
        for col in self.columns:
            before, after = col.before, col.after
            for index in indexes:
                out.setdefault(before + index + after, None)
        return indexes

    def _drop(self, index: str, out: dict[str, FieldValue]) -> None:
        for col in self.columns:
            out.pop(col.before + index + col.after, None)


DerivedFn = Callable[[Getter, str], FieldValue]
ConditionFn = Callable[[Getter, str], bool | None]
#: a value out of the rows of some tables: gets the row indexes of this poll
RowsFn = Callable[[Getter, Sequence[str]], FieldValue]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledDerived:
    name: str
    before: str  # for a template: the name around {index}; otherwise before == name, after == ""
    after: str
    templated: bool
    tables: frozenset[str]  # for a template or rows: the tables whose rows it is computed over
    fn: DerivedFn
    rows_fn: RowsFn | None = None  # set for `rows`: one value out of the rows (fn is then unused)


@dataclass(frozen=True, slots=True)
class Precedence:
    field: str
    over: tuple[str, ...]
    tolerance: float | None
    tolerance_percent: float | None


@dataclass(frozen=True, slots=True, eq=False)
class CompiledProfile:
    """One profile, ready to run. ``scalar_oids`` are fetched with GET, ``walk_roots`` walked."""

    name: str
    description: str
    source: str  # the file it came from
    priority: int
    generic: bool
    sys_object_ids: tuple[str, ...]
    oid_exists: tuple[str, ...]
    ancestors: frozenset[str]  # the profiles this one extends, directly or not
    scalar_oids: tuple[str, ...]
    walk_roots: tuple[str, ...]
    fields: frozenset[str]  # every field and template it declares, private ones included
    thresholds: Thresholds | None
    scalars: tuple[ValueDecoder, ...] = field(repr=False)
    tables: tuple[CompiledTable, ...] = field(repr=False)
    derived: tuple[CompiledDerived, ...] = field(repr=False)
    precedence: tuple[Precedence, ...] = field(repr=False)
    labels: Mapping[str, tuple[str, str]] = field(repr=False)  # column "before" -> label (before, after)

    @property
    def auto(self) -> bool:
        return self.generic or bool(self.sys_object_ids) or bool(self.oid_exists)

    def decode(self, varbinds: Iterable[Varbind]) -> tuple[dict[str, FieldValue], list[str]]:
        return decode((self,), varbinds)

    def label_field(self, field_name: str) -> str | None:
        """The field naming the row of a table field: ``if.oper_up[3]`` -> ``if.name[3]``."""
        cut = field_name.find("[")
        if cut < 0 or not field_name.endswith("]"):
            return None
        label = self.labels.get(field_name[: cut + 1])
        if label is None:
            return None
        return label[0] + field_name[cut + 1 : -1] + label[1]

    def decode_one(
        self,
        by_oid: Mapping[str, Varbind],
        rows: Mapping[str, list[tuple[str, Varbind]]],
        merged: Mapping[str, FieldValue],
        problems: list[str],
    ) -> dict[str, FieldValue]:
        out: dict[str, FieldValue] = {}
        for s in self.scalars:
            vb = by_oid.get(s.oid)
            out[s.name] = None if vb is None else s.decode(s.name, vb.value, problems)
        indexes: dict[str, list[str]] = {}
        for t in self.tables:
            indexes[t.name] = t.decode_into(rows, out, problems)
        if self.derived:

            def get(name: str) -> FieldValue:
                value = out.get(name, _MISSING)
                return merged.get(name) if value is _MISSING else value

            for d in self.derived:
                if d.rows_fn is not None:
                    seen_rows: dict[str, None] = {}
                    for table in d.tables:
                        seen_rows.update(dict.fromkeys(indexes.get(table, ())))
                    out[d.name] = d.rows_fn(get, list(seen_rows))
                    continue
                if not d.templated:
                    out[d.name] = d.fn(get, "")
                    continue
                seen: dict[str, None] = {}
                for table in d.tables:
                    seen.update(dict.fromkeys(indexes.get(table, ())))
                for index in seen:
                    out[d.before + index + d.after] = d.fn(get, index)
        return out


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """How to decode for one set of matched profiles; cached, since a device keeps its match."""

    order: tuple[CompiledProfile, ...]
    column_oids: frozenset[str]
    scalar_oids: frozenset[str]
    prefixes: tuple[str, ...]  # column OID + "." for indexes of more than one arc


@functools.lru_cache(maxsize=1024)
def _plan(profiles: tuple[CompiledProfile, ...]) -> _Plan:
    order = tuple(sorted(profiles, key=lambda p: (p.priority, p.name)))
    columns = {c.oid for p in order for t in p.tables for c in t.columns}
    return _Plan(
        order=order,
        column_oids=frozenset(columns),
        scalar_oids=frozenset(o for p in order for o in p.scalar_oids),
        prefixes=tuple(sorted((c + "." for c in columns), key=len, reverse=True)),
    )


def decode(
    profiles: Sequence[CompiledProfile], varbinds: Iterable[Varbind]
) -> tuple[dict[str, FieldValue], list[str]]:
    """Normalized fields and problems from what the agent answered.

    Profiles run from lowest to highest priority; a higher one's known value replaces a lower one's,
    an unknown (``None``) never replaces a known one, and ``precedence`` rules decide explicitly and
    cross-check. Fields whose name starts with ``_`` are intermediate and not returned.
    """
    plan = _plan(tuple(profiles))
    by_oid: dict[str, Varbind] = {}
    rows: dict[str, list[tuple[str, Varbind]]] = {}
    column_oids, scalar_oids, prefixes = plan.column_oids, plan.scalar_oids, plan.prefixes
    for vb in varbinds:
        oid = vb.oid
        by_oid[oid] = vb
        head, _, index = oid.rpartition(".")
        if head in column_oids:
            rows.setdefault(head, []).append((index, vb))
        elif prefixes and oid not in scalar_oids:
            for prefix in prefixes:
                if oid.startswith(prefix):
                    rows.setdefault(prefix[:-1], []).append((oid[len(prefix) :], vb))
                    break

    problems: list[str] = []
    merged: dict[str, FieldValue] = {}
    outputs: dict[str, dict[str, FieldValue]] = {}
    for p in plan.order:
        out = p.decode_one(by_oid, rows, merged, problems)
        outputs[p.name] = out
        for key, value in out.items():
            if value is not None or key not in merged:
                merged[key] = value
    for p in plan.order:
        for rule in p.precedence:
            _apply_precedence(p.name, rule, outputs, merged, problems)
    fields = {k: v for k, v in merged.items() if k[0] != "_"}
    if len(problems) > 1:
        problems = list(dict.fromkeys(problems))
    return fields, problems


def _apply_precedence(
    winner: str,
    rule: Precedence,
    outputs: Mapping[str, Mapping[str, FieldValue]],
    merged: dict[str, FieldValue],
    problems: list[str],
) -> None:
    mine = outputs[winner].get(rule.field)
    if mine is None:
        return  # the preferred source cannot tell: whatever the others said stands
    merged[rule.field] = mine
    if rule.tolerance is None and rule.tolerance_percent is None:
        return
    if not _is_number(mine):
        return
    assert isinstance(mine, int | float)
    limit = max(rule.tolerance or 0.0, abs(mine) * (rule.tolerance_percent or 0.0) / 100)
    for other in rule.over:
        theirs = outputs.get(other, {}).get(rule.field)
        if _is_number(theirs):
            assert isinstance(theirs, int | float)
            if abs(mine - theirs) > limit:
                problems.append(
                    f"{rule.field}: {winner} says {fmt(mine)}, {other} says {fmt(theirs)}, "
                    f"more than {fmt(limit)} apart; using {winner}"
                )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
