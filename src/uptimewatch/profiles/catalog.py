"""Loading profile files into a :class:`ProfileCatalog`, and matching devices to profiles."""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..config.models import Thresholds
from ..yaml_limits import YamlLimitError
from ._yaml import line_of, load_yaml
from .compiled import SYS_OBJECT_ID, CompiledProfile
from .compiler import Issue, compile_profile, valid_field
from .schema import ProfileSpec


class ProfileError(Exception):
    """Profiles that cannot be used; ``issues`` name file, line and field of each problem."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ProfileCatalog:
    """All loaded profiles. Immutable once built; a reload builds a new catalog."""

    def __init__(self, profiles: Iterable[CompiledProfile]) -> None:
        self._by_name = {p.name: p for p in profiles}
        ordered = sorted(self._by_name.values(), key=lambda p: (p.priority, p.name))
        self.profiles: tuple[CompiledProfile, ...] = tuple(ordered)
        self._generic = tuple(p for p in ordered if p.generic)
        self._by_prefix = tuple(
            (p, tuple((oid, oid + ".") for oid in p.sys_object_ids)) for p in ordered if p.sys_object_ids
        )
        self._by_oid = tuple((p, p.oid_exists) for p in ordered if p.oid_exists)
        oids = dict.fromkeys(o for p in ordered for o in p.oid_exists)
        oids.pop(SYS_OBJECT_ID, None)
        #: what auto-detection GETs, in one request: sysObjectID, then every profile's oid_exists
        self.probe_oids: tuple[str, ...] = (SYS_OBJECT_ID, *sorted(oids))

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> CompiledProfile:
        """The profile called ``name``; ``KeyError`` if there is none."""
        return self._by_name[name]

    def thresholds_for(self, name: str | None) -> Thresholds | None:
        """The threshold overrides a profile ships, or None (no such profile, or it sets none)."""
        profile = self._by_name.get(name) if name else None
        return profile.thresholds if profile is not None else None

    def match(self, sys_object_id: str | None, present_oids: Collection[str]) -> list[CompiledProfile]:
        """Every profile that applies, lowest priority first (so later ones win when decoding).

        A profile applies when it is generic, when ``sys_object_id`` starts with one of its prefixes
        (on an arc boundary), or when one of its ``oid_exists`` OIDs is in ``present_oids``. A profile
        that another matched profile extends is left out: the extension already carries it.
        """
        present = present_oids if isinstance(present_oids, set | frozenset | dict) else set(present_oids)
        sys_oid = sys_object_id.removeprefix(".") if sys_object_id else ""
        hits: dict[str, CompiledProfile] = {p.name: p for p in self._generic}
        if sys_oid:
            for p, prefixes in self._by_prefix:
                if any(sys_oid == oid or sys_oid.startswith(dotted) for oid, dotted in prefixes):
                    hits[p.name] = p
        for p, oids in self._by_oid:
            if p.name not in hits and any(o in present for o in oids):
                hits[p.name] = p
        return self._finish(hits.values())

    def explicit(self, name: str) -> list[CompiledProfile]:
        """The generic profiles plus ``name``: a device configured with a profile still gets its
        identity and uptime. ``KeyError`` if there is no such profile."""
        chosen = self._by_name[name]
        return self._finish([*self._generic, chosen])

    def _finish(self, profiles: Iterable[CompiledProfile]) -> list[CompiledProfile]:
        chosen = list(dict.fromkeys(profiles))
        extended = {a for p in chosen for a in p.ancestors}
        return sorted((p for p in chosen if p.name not in extended), key=lambda p: (p.priority, p.name))


def default_profiles_dir() -> Path:
    """The shipped ``probes/`` directory.

    From a source checkout (and ``pip install -e``) that is ``<repo>/probes``, so edits apply
    without reinstalling; a wheel installs the same files as data under ``<prefix>/share``.
    """
    repo = Path(__file__).resolve().parents[3]
    candidates = [repo / "probes"]
    for prefix in dict.fromkeys([sysconfig.get_path("data"), sys.prefix]):
        candidates.append(Path(prefix) / "share" / "uptimewatch" / "probes")
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return candidates[0]


def profile_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def load_profiles(directory: str | Path | None = None) -> ProfileCatalog:
    """Loads and compiles every ``*.yaml`` in ``directory`` (default: the shipped profiles).

    Blocking (file reads): call it at startup or in a thread. Raises :class:`ProfileError`.
    """
    catalog, issues = load_files(profile_files([directory or default_profiles_dir()]))
    if issues or catalog is None:
        raise ProfileError(issues)
    return catalog


def load_files(files: Sequence[Path]) -> tuple[ProfileCatalog | None, list[Issue]]:
    issues: list[Issue] = []
    parsed: dict[str, tuple[ProfileSpec, Any, str]] = {}
    for file in files:
        one = _parse_file(file, issues)
        if one is None:
            continue
        spec, raw = one
        if spec.name in parsed:
            first = parsed[spec.name][2]
            issues.append(
                Issue(
                    str(file),
                    line_of(raw, ("name",)),
                    "name",
                    f"profile {spec.name!r} is also defined in {first}",
                )
            )
            continue
        parsed[spec.name] = (spec, raw, str(file))
    if issues:
        return None, issues

    merged: dict[str, tuple[ProfileSpec, frozenset[str]]] = {}
    for name, (_spec, raw, source) in parsed.items():
        result = _resolve_extends(name, parsed)
        if isinstance(result, str):
            issues.append(Issue(source, line_of(raw, ("extends",)), "extends", result))
        else:
            merged[name] = result

    declared: set[str] = set()
    for spec, _ in merged.values():
        declared.update(spec.scalars)
        declared.update(spec.derived)
        for table in spec.tables.values():
            declared.update(table.columns)

    compiled = []
    for name, (spec, ancestors) in merged.items():
        _, raw, source = parsed[name]
        chain = [parsed[a][1] for a in _chain(name, parsed)]

        def report(
            loc: Sequence[int | str], message: str, raw: Any = raw, source: str = source, chain: Any = chain
        ) -> None:
            line = None
            for data in chain:  # the key may come from a profile this one extends
                if _has(data, loc):
                    line = line_of(data, loc)
                    break
            if line is None:
                line = line_of(raw, loc)
            issues.append(Issue(source, line, _where(loc), message))

        compiled.append(
            compile_profile(
                spec,
                source=source,
                ancestors=ancestors,
                known_fields=lambda f: f in declared and valid_field(f, template=False),
                profile_names=merged,
                report=report,
            )
        )
    if issues:
        return None, issues
    return ProfileCatalog(compiled), []


def _parse_file(path: Path, issues: list[Issue]) -> tuple[ProfileSpec, Any] | None:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        issues.append(Issue(where, None, "", f"cannot read: {exc.strerror or exc}"))
        return None
    except UnicodeDecodeError as exc:
        issues.append(Issue(where, None, "", f"not UTF-8 text: {exc.reason}"))
        return None
    try:
        raw, yaml_issues = load_yaml(text)
    except YamlLimitError as exc:
        mark = exc.problem_mark
        issues.append(Issue(where, mark.line + 1 if mark else None, "", str(exc.problem)))
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(Issue(where, mark.line + 1 if mark else None, "", f"YAML syntax: {problem}"))
        return None
    if yaml_issues:
        issues.extend(Issue(where, line, "", message) for line, message in yaml_issues)
        return None
    if not isinstance(raw, dict):
        issues.append(Issue(where, 1, "", "a profile file holds one mapping (name, description, match, ...)"))
        return None
    try:
        spec = ProfileSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key (check the spelling; see probes/README.md)"
            issues.append(Issue(where, line_of(raw, loc), _where(loc), message))
        return None
    return spec, raw


def _chain(name: str, parsed: dict[str, tuple[ProfileSpec, Any, str]]) -> list[str]:
    chain = [name]
    while (base := parsed[chain[-1]][0].extends) is not None and base in parsed and base not in chain:
        chain.append(base)
    return chain


def _resolve_extends(
    name: str, parsed: dict[str, tuple[ProfileSpec, Any, str]]
) -> tuple[ProfileSpec, frozenset[str]] | str:
    """The profile with everything it extends merged in (its own entries win), and its ancestors."""
    chain = [name]
    while (base := parsed[chain[-1]][0].extends) is not None:
        if base not in parsed:
            return f"extends unknown profile {base!r}"
        if base in chain:
            return f"extends forms a cycle: {' -> '.join([*chain, base])}"
        chain.append(base)
    spec = parsed[name][0]
    for base in chain[1:]:
        parent = parsed[base][0]
        spec = spec.model_copy(
            update={
                "scalars": parent.scalars | spec.scalars,
                "tables": parent.tables | spec.tables,
                "derived": parent.derived | spec.derived,
                "precedence": parent.precedence | spec.precedence,
                "thresholds": spec.thresholds or parent.thresholds,
                "priority": spec.priority if "priority" in spec.model_fields_set else parent.priority,
            }
        )
    return spec, frozenset(chain[1:])


def _has(data: Any, loc: Sequence[int | str]) -> bool:
    node = data
    for step in loc[:2]:  # section and key are enough to tell which file declared it
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _where(loc: Sequence[int | str]) -> str:
    return ".".join(str(x) for x in loc)


def cli_profiles_check(args: Any) -> int:
    """``uptimewatch profiles check [PATH...]``: exit 0 when every profile is valid, 1 otherwise."""
    paths = list(getattr(args, "paths", None) or []) or [default_profiles_dir()]
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        for path in missing:
            print(f"{path}: no such file or directory", file=sys.stderr)
        return 1
    files = profile_files(paths)
    if not files:
        print(f"no profile files (*.yaml) in {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    catalog, issues = load_files(files)
    if issues or catalog is None:
        for issue in issues:
            print(issue, file=sys.stderr)
        print(f"{len(issues)} error(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"{len(catalog)} profile(s) OK: {', '.join(catalog.names())}")
    return 0
