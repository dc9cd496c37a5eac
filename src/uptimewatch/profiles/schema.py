"""The probe profile file format (``probes/*.yaml``), as pydantic models.

This is what a person writes; :mod:`.compiled` turns it into what the poller runs. The rules that
need more than one field (types versus options, references between fields) live in the compiler,
which reports them with the same file:line precision.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..config.models import Thresholds
from ..primitives import shown

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
#: SMIv2 (RFC 2578, 3.5): an OID has at most 128 sub-identifiers, each 0 to 2^32-1
MAX_OID_ARCS: Final = 128
MAX_OID_ARC: Final = 2**32 - 1
#: ``device.uptime_seconds``, ``power.input_voltage_volts[{index}]``, ``_ups.output_source``
FIELD_NAME = re.compile(r"^_?[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+(\[[^\[\]\s]+\])?$")
INDEX = "{index}"

ValueType = Literal["int", "float", "string", "bool", "oid", "enum", "timeticks", "counter"]
#: what a map turns a raw value into; YAML gives these types
Scalar = bool | int | float | str | None


def normalize_oid(value: Any) -> str:
    if isinstance(value, float):
        raise ValueError(f"OID {value!r} was read as a number: quote it")
    if not isinstance(value, str):
        raise ValueError(f"an OID must be a dotted numeric string, not {type(value).__name__}")
    oid = value.strip()
    # `snmpwalk -On` prints a leading dot; accepting it lets people paste its output
    oid = oid.removeprefix(".")
    if not _OID.match(oid):
        if any(c.isalpha() for c in oid):
            raise ValueError(
                f"{shown(value)} is not a numeric OID: profiles use numeric OIDs only (snmptranslate -On)"
            )
        raise ValueError(f"{shown(value)} is not a valid numeric OID")
    arcs = oid.split(".")
    if len(arcs) > MAX_OID_ARCS:
        raise ValueError(
            f"{shown(value)} has {len(arcs)} sub-identifiers; SNMP allows at most {MAX_OID_ARCS}"
        )
    for arc in arcs:
        # the length test first: int() refuses more than 4,300 digits
        if len(arc) > 10 or int(arc) > MAX_OID_ARC:
            raise ValueError(
                f"{shown(value)}: sub-identifier {arc if len(arc) <= 24 else f'{arc[:20]}...'} "
                f"is above {MAX_OID_ARC} (2^32-1), the largest SNMP can carry"
            )
    if arcs[0] in ("0", "1") and int(arcs[1]) >= 40:
        raise ValueError(
            f"{shown(value)}: under {arcs[0]} the second sub-identifier is 0 to 39 (X.690 encodes "
            f"the first two in one number)"
        )
    return oid


Oid = Annotated[str, BeforeValidator(normalize_oid)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Plausible(Strict):
    """Bounds of a believable value, after scaling. A value outside becomes null plus a problem."""

    min: float | None = None
    max: float | None = None
    hint: str | None = None  # added to the problem, e.g. "some cards send 0.1 V"

    @model_validator(mode="after")
    def _order(self) -> Plausible:
        if self.min is None and self.max is None:
            raise ValueError("plausible needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"plausible min {self.min} is above max {self.max}")
        return self


class ValueSpec(Strict):
    """How one OID's raw value becomes one normalized field value."""

    oid: Oid
    type: ValueType
    scale: float | None = None  # multiply (after sentinels, before plausible)
    unit: str | None = None
    signed: bool = False  # a Gauge32 that carries a two's complement negative number
    mask: int | None = Field(default=None, ge=1)  # keep only these bits of a packed status word
    sentinels: list[int | float | str] = Field(default_factory=list)  # raw values meaning "unknown"
    map: dict[Any, Scalar] | None = None  # raw -> normalized value
    unmapped: Literal["null", "keep"] = "null"  # a raw value the map lacks: null plus a problem, or kept
    plausible: Plausible | None = None
    description: str | None = None


class TableSpec(Strict):
    """A conceptual SNMP table. Each column is walked; its fields are named by template with {index}."""

    root: Oid  # the table's Entry OID: every column OID is root.N
    columns: dict[str, ValueSpec]
    label: str | None = None  # the column template that names a row (e.g. ifName) in reasons
    require: str | None = None  # a column template: rows where it decodes to null are dropped
    max_rows: int | None = Field(default=None, ge=1)
    description: str | None = None


class Condition(Strict):
    """A three-valued test: true, false, or null when the field it reads is unknown.

    Either one field with one comparison, or ``all`` / ``any`` of nested conditions.
    """

    field: str | None = None
    eq: Scalar = None
    ne: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        ops = [n for n in ("eq", "ne", "in_", "gt", "ge", "lt", "le") if n in self.model_fields_set]
        groups = [n for n in ("all", "any") if getattr(self, n) is not None]
        if self.field is not None:
            if groups:
                raise ValueError("a condition has either field with one comparison, or all/any, not both")
            if len(ops) != 1:
                raise ValueError("a field condition needs exactly one of eq, ne, in, gt, ge, lt, le")
        elif len(groups) != 1 or ops:
            raise ValueError("a condition needs field with one comparison, or exactly one of all/any")
        return self


class Case(Strict):
    when: Condition
    value: Scalar


RowPick = Literal["first", "min", "max", "count", "any", "all"]


class RowsSpec(Strict):
    """One value from the rows of a table: a PtP radio's only peer, the weakest carrier, a count.

    ``of`` is a per-row field template of the same profile; ``where`` (a condition that may read
    other per-row fields of the same index) keeps only some rows, e.g. the radio interfaces.
    """

    of: str
    pick: RowPick = "first"
    where: Condition | None = None


DERIVED_KINDS = ("when", "cases", "first_of", "difference", "product", "quotient", "rows")


class DerivedSpec(Strict):
    """A field computed from others. Exactly one of the kinds in DERIVED_KINDS."""

    when: Condition | None = None  # the condition's truth value (true/false/null)
    cases: list[Case] | None = None  # the value of the first case whose condition is true...
    default: Scalar = None  # ...or this
    first_of: list[str] | None = None  # the first of these fields that is known
    difference: tuple[str, str] | None = None  # a - b
    product: tuple[str, str] | None = None  # a * b
    quotient: tuple[str, str] | None = None  # a / b (null when b is 0)
    rows: RowsSpec | None = None  # one value out of a table's rows
    unit: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DerivedSpec:
        kinds = [n for n in DERIVED_KINDS if getattr(self, n) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a derived field needs exactly one of {', '.join(DERIVED_KINDS)}")
        if "default" in self.model_fields_set and self.cases is None:
            raise ValueError("default only goes with cases")
        return self


class PrecedenceRule(Strict):
    """This profile's value of a field wins over the named profiles' values for it.

    With a tolerance, the losing values are cross-checked: a larger disagreement adds a problem.
    """

    over: list[str] = Field(min_length=1)
    tolerance: float | None = Field(default=None, ge=0)  # absolute, in the field's unit
    tolerance_percent: float | None = Field(default=None, ge=0)  # of the winning value


class MatchSpec(Strict):
    """When auto-detection selects the profile: any one criterion is enough."""

    sys_object_id: list[Oid] = Field(default_factory=list)  # prefixes, on arc boundaries
    oid_exists: list[Oid] = Field(default_factory=list)  # instance OIDs: present means selected
    generic: bool = False  # applies to every device

    @model_validator(mode="after")
    def _something(self) -> MatchSpec:
        if not (self.sys_object_id or self.oid_exists or self.generic):
            raise ValueError("match needs sys_object_id, oid_exists or generic: true")
        return self


class TrapSpec(Strict):
    """A notification the device sends: receiving it from the device re-polls the device at once."""

    oid: Oid  # the snmpTrapOID value (v2c/v3), or enterprise.0.specific for a v1 trap
    name: str  # e.g. upsTrapOnBattery; shown in logs
    severity: Literal["info", "warning", "critical"] | None = None


class ProfileSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")]
    description: str
    match: MatchSpec | None = None  # none: only selected by name (or as a base to extend)
    extends: str | None = None
    priority: int = 100  # among matched profiles the higher one's values win
    scalars: dict[str, ValueSpec] = Field(default_factory=dict)
    tables: dict[str, TableSpec] = Field(default_factory=dict)
    derived: dict[str, DerivedSpec] = Field(default_factory=dict)
    precedence: dict[str, PrecedenceRule] = Field(default_factory=dict)
    thresholds: Thresholds | None = None
    traps: list[TrapSpec] = Field(default_factory=list)  # vendor notifications that warrant a re-poll
