"""Load a configuration file: YAML with line numbers, ``${ENV}`` expansion, ``*_file`` secrets,
schema validation and cross-reference checks, every problem reported as ``FILE:LINE: FIELD: MESSAGE``.

Loading is blocking (file reads); the daemon calls :func:`load_config` in a thread. It reports every
problem it can find in one pass, so an operator fixes a file in one round rather than one error at a
time.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import ipaddress
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from ..gcpause import no_cycle_collection
from ..i18n import translator
from ..primitives import ID_PATTERN, shown, valid_port
from ..progress import Progress
from ..redact import remember_secrets
from ..yaml_limits import YamlLimitError, load_checked, number_problem
from . import capabilities
from .alerting import check_references as check_alerting
from .models import Config, Device, Settings, Site, SnmpVersion
from .resolve import ProbeModels, ResolvedDevice, SiteCascade, resolve_device
from .secrets import own_secret_files, secret_file_keys, secret_keys, secret_values

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "LoadedConfig",
    "SiteCache",
    "cli_check_config",
    "load_config",
]

Loc = tuple[str | int, ...]
#: keys whose values are never echoed in an error (lists of secrets too: tokens, trap communities),
#: and the mappings whose secrets may be given as ``*_file``; both read from the models' SecretStr fields
_SECRETS = secret_keys()
_SECRET_FILES = secret_file_keys()
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID = re.compile(ID_PATTERN)
#: fibre plus microwave; a third path is a ring, which needs more than an upstream list to describe
MAX_UPSTREAMS = 2
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})(?:\.[A-Za-z0-9\-]{1,63})*$")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file. ``line`` and ``column`` are 1-based."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    devices: tuple[ResolvedDevice, ...]
    source: Path
    digest: str  # sha256 of the file's bytes: tells a reload that changed nothing from one that did

    def store_path(self) -> Path:
        """``storage.path`` (relative to the config file), else systemd's StateDirectory, else var/."""
        configured = self.config.storage.path
        if configured:
            path = Path(configured)
            return path if path.is_absolute() else self.source.parent / path
        state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        base = Path(state_dir) if state_dir else self.source.parent / "var"
        return base / "uptimewatch.sqlite"


# --- YAML with positions ---------------------------------------------------------------------


class _Map(dict[Any, Any]):
    """A mapping that remembers where each key and value started, and keys given twice."""

    def __init__(self) -> None:
        super().__init__()
        self.key_marks: dict[Any, yaml.Mark] = {}
        self.value_marks: dict[Any, yaml.Mark] = {}
        self.duplicates: list[tuple[Any, yaml.Mark, yaml.Mark]] = []


class _Seq(list[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.marks: list[yaml.Mark] = []


try:
    # libyaml's parser keeps marks too and parses a province-sized file several times faster
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class _Unreadable:
    """A scalar that cannot be taken as what it looks like (a 5,000-digit number); reported, with
    its field, when the tree is prepared."""

    problem: str
    mark: yaml.Mark
    text: str

    def __str__(self) -> str:
        return self.text if len(self.text) <= 24 else f"{self.text[:20]}..."


class _PositionLoader(_SafeLoader):
    """SafeLoader that builds :class:`_Map` / :class:`_Seq` so values can be traced to lines."""

    def construct_checked_number(self, node: yaml.ScalarNode) -> Any:
        problem = number_problem(node)
        if problem is not None:
            return _Unreadable(problem, node.start_mark, node.value)
        if node.tag == "tag:yaml.org,2002:int":
            return self.construct_yaml_int(node)
        return self.construct_yaml_float(node)

    def construct_positioned_map(self, node: yaml.MappingNode) -> Iterator[_Map]:
        data = _Map()
        yield data  # yield first, as SafeLoader does, so anchors and recursion resolve
        first_seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_seen:
                    data.duplicates.append((key, first_seen[key], key_node.start_mark))
                else:
                    first_seen[key] = key_node.start_mark
            except TypeError:  # unhashable key: the schema rejects it later
                continue
        # merge keys (<<) come first so the mapping's own keys override them, as YAML says
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                ) from None
            data[key] = self.construct_object(value_node, deep=True)
            data.key_marks[key] = key_node.start_mark
            data.value_marks[key] = value_node.start_mark

    def construct_positioned_seq(self, node: yaml.SequenceNode) -> Iterator[_Seq]:
        data = _Seq()
        yield data
        for item in node.value:
            data.append(self.construct_object(item, deep=True))
            data.marks.append(item.start_mark)


_PositionLoader.add_constructor("tag:yaml.org,2002:map", _PositionLoader.construct_positioned_map)
_PositionLoader.add_constructor("tag:yaml.org,2002:seq", _PositionLoader.construct_positioned_seq)
_PositionLoader.add_constructor("tag:yaml.org,2002:int", _PositionLoader.construct_checked_number)
_PositionLoader.add_constructor("tag:yaml.org,2002:float", _PositionLoader.construct_checked_number)


@dataclass
class _Context:
    """State of one load: the file, where each path starts, and the problems found so far."""

    file: str
    base_dir: Path
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    raw: Any = None
    issues: list[ConfigIssue] = field(default_factory=list)
    failed: list[Loc] = field(default_factory=list)  # values that could not be loaded
    #: per ``probes:`` kind, the secrets its config model lets come from a ``*_file``
    probe_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def position(self, loc: Loc) -> tuple[int | None, int | None]:
        # an error about a missing key points at the mapping that should hold it
        for end in range(len(loc), -1, -1):
            if (pos := self.positions.get(loc[:end])) is not None:
                return pos
        return None, None

    def add(self, loc: Loc, message: str, *, at: tuple[int, int] | None = None) -> None:
        line, column = at if at is not None else self.position(loc)
        self.issues.append(ConfigIssue(self.file, line, column, render_loc(loc, self.raw), message))


def _mark(m: yaml.Mark) -> tuple[int, int]:
    return (m.line + 1, m.column + 1)


def render_loc(loc: Loc, raw: Any) -> str:
    """``('sites', 3, 'devices', 0, 'snmp')`` -> ``sites[bts-001].devices[router].snmp``.

    A list item is named by its ``id`` when that id is unique in its list, by its index otherwise.
    """
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and 0 <= part < len(node):
                item = node[part]
                ident = item.get("id") if isinstance(item, dict) else None
                if isinstance(ident, str) and _ID.match(ident):
                    same = sum(1 for other in node if isinstance(other, dict) and other.get("id") == ident)
                    if same == 1:
                        label = ident
                node = item
            else:
                node = None
            out += f"[{label}]"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _expand_env(value: str, loc: Loc, ctx: _Context) -> str:
    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        ctx.failed.append(loc)
        ctx.add(loc, f"environment variable '{name}' is not set (write ${{{name}:-default}} for a fallback)")
        return ""

    return _ENV.sub(substitute, value) if "$" in value else value


def _read_secret(path_text: str, secret: str, loc: Loc, ctx: _Context) -> str | None:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    try:
        content = path.read_text(encoding="utf-8").rstrip()
    except OSError as exc:
        ctx.add(loc, f"cannot read {secret}_file '{path}': {exc.strerror or type(exc).__name__}")
        return None
    except UnicodeDecodeError:
        ctx.add(loc, f"{secret}_file '{path}' is not UTF-8 text")
        return None
    if not content:
        ctx.add(loc, f"{secret}_file '{path}' is empty")
        return None
    return content


def _probe_files(models: ProbeModels) -> dict[str, tuple[str, ...]]:
    return {kind: files for kind, model in models.items() if (files := own_secret_files(model))}


def _prepare(node: Any, loc: Loc, ctx: _Context) -> Any:
    """Plain data from the positioned tree: positions recorded, ``${ENV}`` expanded, secret files read."""
    if isinstance(node, _Map):
        out: dict[Any, Any] = {}
        for key, first, again in node.duplicates:
            ctx.add(
                (*loc, str(key)),
                f"key '{key}' is given twice in one mapping (first at line {first.line + 1})",
                at=_mark(again),
            )
        for key, value in node.items():
            name = key if isinstance(key, str) else str(key)
            child = (*loc, name)
            # containers are reported at their key's line, scalars where the value is
            start = node.key_marks[key] if isinstance(value, dict | list) else node.value_marks[key]
            ctx.positions[child] = _mark(start)
            out[name] = _prepare(value, child, ctx)
        if len(loc) >= 2 and loc[-2] == "probes":
            if secrets := ctx.probe_files.get(str(loc[-1])):
                _inline_secret_files(out, loc, ctx, secrets)
        elif loc and (secrets := _SECRET_FILES.get(str(loc[-1]))):
            _inline_secret_files(out, loc, ctx, secrets)
        return out
    if isinstance(node, _Seq):
        items = []
        for index, (item, mark) in enumerate(zip(node, node.marks, strict=True)):
            ctx.positions[(*loc, index)] = _mark(mark)
            items.append(_prepare(item, (*loc, index), ctx))
        return items
    if isinstance(node, str):
        return _expand_env(node, loc, ctx)
    if isinstance(node, _Unreadable):
        ctx.failed.append(loc)
        ctx.add(loc, node.problem, at=_mark(node.mark))
        return None
    return node


def _inline_secret_files(snmp: dict[str, Any], loc: Loc, ctx: _Context, secrets: tuple[str, ...]) -> None:
    # The secret replaces its *_file key, so the defaults cascade treats a file-given secret like an
    # inline one. With both given, both stay for the schema's "either ... or" error.
    for secret in secrets:
        file_key = f"{secret}_file"
        path_text = snmp.get(file_key)
        if not isinstance(path_text, str) or secret in snmp:
            continue
        if (*loc, file_key) in ctx.failed:  # its ${VAR} was unset: the path is not worth trying
            del snmp[file_key]
            continue
        content = _read_secret(path_text, secret, (*loc, file_key), ctx)
        del snmp[file_key]
        if content is None:
            ctx.failed.append((*loc, file_key))
        else:
            snmp[secret] = content
            ctx.positions[(*loc, secret)] = ctx.positions[(*loc, file_key)]


# --- schema errors -------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, Annotated)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        found = _models_in(model.model_fields[part].annotation)
        model = found[0] if found else None
    return model


def _unknown_key_message(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key '{key}'"
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (allowed: {', '.join(allowed)})"


def _schema_message(error: Any, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc)
    if kind == "missing":
        return f"required key '{loc[-1]}' is missing" if loc else "required key is missing"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "id":
        return (
            f"invalid id {shown(error['input'])}: use letters, digits, '_', '.' and '-', "
            "start with a letter or digit, at most 64 characters"
        )
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = error.get("input")
    # never echo what was given for a secret, even when it has the wrong type
    secret = any(isinstance(p, str) and p in _SECRETS for p in loc)
    if not secret and isinstance(value, str | int | float | bool) and kind not in ("value_error",):
        message += f" (got {shown(value)})"
    return message


# --- cross-reference checks on the raw data ------------------------------------------------


def _dicts(node: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    items = node.get(key) if isinstance(node, dict) else None
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _ident(item: dict[str, Any]) -> str | None:
    value = item.get("id")
    return value if isinstance(value, str) else None


def _check_unique(items: list[tuple[int, dict[str, Any]]], prefix: Loc, what: str, ctx: _Context) -> None:
    first: dict[str, int] = {}
    for index, item in items:
        ident = _ident(item)
        if ident is None:
            continue
        if ident in first:
            line, _ = ctx.position((*prefix, first[ident], "id"))
            ctx.add((*prefix, index, "id"), f"duplicate {what} id '{ident}' (first defined at line {line})")
        else:
            first[ident] = index


def _defined(ids: Collection[str]) -> str:
    return ", ".join(sorted(ids)) if ids else "none"


def _check_references(raw: dict[str, Any], ctx: _Context) -> None:
    carriers = _dicts(raw, "carriers")
    districts = _dicts(raw, "districts")
    sites = _dicts(raw, "sites")
    _check_unique(carriers, ("carriers",), "carrier", ctx)
    _check_unique(districts, ("districts",), "district", ctx)
    _check_unique(sites, ("sites",), "site", ctx)

    carrier_ids = {i for _, c in carriers if (i := _ident(c))}
    communes_of: dict[str, set[str]] = {}
    for index, district in districts:
        communes = _dicts(district, "communes")
        _check_unique(communes, ("districts", index, "communes"), "commune", ctx)
        # a duplicate district is reported above; sites resolve against the first one
        if (ident := _ident(district)) is not None and ident not in communes_of:
            communes_of[ident] = {c for _, commune in communes if (c := _ident(commune))}
    site_ids = {i for _, s in sites if (i := _ident(s))}
    devices_of: dict[str, set[str]] = {}
    for _, s in sites:
        if (i := _ident(s)) is not None:
            devices_of.setdefault(i, {d for _, dev in _dicts(s, "devices") if (d := _ident(dev))})

    for index, site in sites:
        name = _ident(site) or f"#{index}"
        here: Loc = ("sites", index)
        _check_unique(_dicts(site, "devices"), (*here, "devices"), "device", ctx)
        district_id = site.get("district")
        if isinstance(district_id, str) and district_id not in communes_of:
            ctx.add(
                (*here, "district"),
                f"site '{name}': district '{district_id}' is not defined (defined: {_defined(communes_of)})",
            )
        commune = site.get("commune")
        if isinstance(commune, str) and isinstance(district_id, str) and district_id in communes_of:
            known = communes_of[district_id]
            if commune not in known:
                ctx.add(
                    (*here, "commune"),
                    f"site '{name}': commune '{commune}' is not defined in district '{district_id}' "
                    f"(defined: {_defined(known)})",
                )
        carrier = site.get("carrier")
        if isinstance(carrier, str) and carrier not in carrier_ids:
            ctx.add(
                (*here, "carrier"),
                f"site '{name}': carrier '{carrier}' is not defined (defined: {_defined(carrier_ids)})",
            )
        upstream = site.get("upstream")
        ups = [upstream] if isinstance(upstream, str) else upstream if isinstance(upstream, list) else []
        if len(ups) > MAX_UPSTREAMS:
            ctx.add(
                (*here, "upstream"),
                f"site '{name}': at most {MAX_UPSTREAMS} upstreams (e.g. fibre plus microwave), "
                f"got {len(ups)}",
            )
        for k, up in enumerate(ups):
            loc = (*here, "upstream", k) if isinstance(upstream, list) else (*here, "upstream")
            if not isinstance(up, str):
                continue
            # "hub-x" names a hub site, "hub-x:mw1" one link device there (a site:device pair)
            up_site, link, up_device = up.partition(":")
            if up_site == _ident(site):
                ctx.add(loc, f"site '{name}' cannot be its own upstream")
            elif up_site not in site_ids:
                if link:
                    ctx.add(loc, f"site '{name}': upstream '{up}': site '{up_site}' is not a defined site")
                else:
                    ctx.add(loc, f"site '{name}': upstream '{up}' is not a defined site")
            elif link and up_device not in devices_of.get(up_site, set()):
                ctx.add(
                    loc,
                    f"site '{name}': upstream '{up}': site '{up_site}' has no device '{up_device}' "
                    f"(devices: {_defined(devices_of.get(up_site, set()))})",
                )
    _check_cycles(sites, ctx)
    _check_listen(raw, ctx)
    for loc, message in check_alerting(raw, ctx.base_dir):
        ctx.add(loc, message)


def _check_cycles(sites: list[tuple[int, dict[str, Any]]], ctx: _Context) -> None:
    graph: dict[str, list[str]] = {}
    index_of: dict[str, int] = {}
    for index, site in sites:
        ident = _ident(site)
        if ident is None or ident in graph:
            continue
        upstream = site.get("upstream")
        ups = [upstream] if isinstance(upstream, str) else upstream if isinstance(upstream, list) else []
        # a link device upstream depends on the site that holds it
        graph[ident] = [u for up in ups if isinstance(up, str) and (u := up.partition(":")[0]) != ident]
        index_of[ident] = index
    done: set[str] = set()
    reported: set[frozenset[str]] = set()
    for start, first_ups in graph.items():
        if start in done:
            continue
        # iterative DFS: a province has thousands of sites, deeper than Python's recursion limit
        path: list[str] = [start]
        on_path: dict[str, int] = {start: 0}
        stack: list[Iterator[str]] = [iter(first_ups)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                node = path.pop()
                del on_path[node]
                done.add(node)
            elif child in on_path:
                cycle = path[on_path[child] :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    first = min(cycle, key=lambda s: index_of[s])
                    turn = cycle.index(first)
                    ordered = [*cycle[turn:], *cycle[:turn], first]
                    ctx.add(("sites", index_of[first], "upstream"), f"upstream cycle: {' -> '.join(ordered)}")
            elif child not in done and child in graph:
                on_path[child] = len(path)
                path.append(child)
                stack.append(iter(graph[child]))


def _check_listen(raw: dict[str, Any], ctx: _Context) -> None:
    server = raw.get("server")
    listen = server.get("listen") if isinstance(server, dict) else None
    if not isinstance(listen, str):
        return
    host, sep, port = listen.rpartition(":")
    if not sep or not valid_port(port):
        return  # the schema reports a malformed HOST:PORT
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            ctx.add(("server", "listen"), f"'{host}' is not an IPv6 address")
        return
    if not host:
        ctx.add(("server", "listen"), "listen needs a host, e.g. 127.0.0.1:9847 or 0.0.0.0:9847")
        return
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    if ":" in host:
        ctx.add(("server", "listen"), "write an IPv6 listen address in brackets, e.g. [::1]:9847")
    elif host.replace(".", "").isdigit() or not _HOSTNAME.match(host):
        ctx.add(("server", "listen"), f"'{host}' is not an IP address or a host name")


# --- checks on the resolved devices --------------------------------------------------------


def _device_loc(site_index: int, device_index: int, device: Device, key: str) -> Loc:
    base: Loc = ("sites", site_index, "devices", device_index)
    return (*base, "snmp", key) if device.snmp is not None else base


#: Told (config, devices resolved so far, devices in all) while a large inventory is resolved.
OnResolve = Callable[[Config, int, int], None]


def _check_probe_blocks(config: Config, models: ProbeModels, ctx: _Context) -> None:
    """Every ``probes:`` block names a registered protocol and validates against its model."""
    places: list[tuple[Loc, Settings | Device | None]] = [(("defaults",), config.defaults)]
    places += [(("districts", i, "defaults"), d.defaults) for i, d in enumerate(config.districts)]
    for si, site in enumerate(config.sites):
        places.append((("sites", si, "defaults"), site.defaults))
        places += [(("sites", si, "devices", di), dev) for di, dev in enumerate(site.devices)]
    for loc, holder in places:
        blocks = holder.probes if holder is not None else None
        for kind, block in (blocks or {}).items():
            where: Loc = (*loc, "probes", kind)
            model = models.get(kind)
            if model is None:
                known = ", ".join(sorted(models)) or "none"
                ctx.add(where, f"unknown protocol '{kind}' (registered besides snmp and icmp: {known})")
                continue
            try:
                model.model_validate({**block, "kind": kind})
            except ValidationError as exc:
                secrets = secret_keys(model)  # the protocol's own SecretStr fields: never echoed
                for error in exc.errors(include_url=False):
                    at = (*where, *error["loc"])
                    secret = any(isinstance(p, str) and p in secrets for p in error["loc"])
                    ctx.add(at, _schema_message({**error, "input": None} if secret else error, at))


def _check_devices(
    config: Config,
    known_profiles: Collection[str] | None,
    ctx: _Context,
    on_resolve: OnResolve | None = None,
    probe_models: ProbeModels | None = None,
    *,
    known: dict[int, tuple[ResolvedDevice, ...]] | None = None,
) -> list[ResolvedDevice]:
    """Resolve and check every device; ``known`` holds the devices already resolved of sites
    (by the id of their object) whose cascade did not change."""
    resolved: list[ResolvedDevice] = []
    total = sum(len(site.devices) for site in config.sites)
    cache: SiteCascade = {}
    for si, site in enumerate(config.sites):
        prior = known.get(id(site)) if known is not None else None
        for di, device in enumerate(site.devices):
            target = (
                prior[di] if prior is not None else resolve_device(config, site, device, cache, probe_models)
            )
            resolved.append(target)
            _check_device(
                si=si, site=site, di=di, device=device, target=target, known_profiles=known_profiles, ctx=ctx
            )
        if on_resolve is not None:
            on_resolve(config, len(resolved), total)
    _check_capabilities(config, resolved, ctx)
    return resolved


#: devices named one by one for each capability this installation lacks; the rest are counted
CAPABILITY_EXAMPLES = 10


def _check_capabilities(config: Config, devices: list[ResolvedDevice], ctx: _Context) -> None:
    """A device asking for what this installation cannot serve (SNMPv3 privacy without a cipher
    backend) is refused here, once, with the command that fixes it, rather than failing every poll."""
    unmet = list(capabilities.unmet(config, devices))
    if not unmet:
        return
    places = [(si, di, d) for si, site in enumerate(config.sites) for di, d in enumerate(site.devices)]

    def where(need: capabilities.Need) -> tuple[Loc, str]:
        if need.device is None:
            return need.loc, need.what
        si, di, device = places[need.device]
        return _device_loc(si, di, device, need.key), f"device '{config.sites[si].id}/{device.id}'"

    counts: dict[str, int] = {}
    first_unlisted: dict[str, capabilities.Need] = {}
    for need, lack in unmet:
        name = need.capability.name
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > CAPABILITY_EXAMPLES:
            first_unlisted.setdefault(name, need)
            continue
        loc, who = where(need)
        feature = f"{need.capability.feature} ({need.key}, {need.detail})"
        ctx.add(loc, f"{who}: " + capabilities.explain(need.capability, lack, feature=feature))
    for name, need in first_unlisted.items():
        loc, _ = where(need)  # the count sorts after the ones listed before it
        ctx.add(
            loc,
            f"and {counts[name] - CAPABILITY_EXAMPLES} more from here on ask for "
            f"{need.capability.feature}, which this installation cannot serve (see above)",
        )


def _check_device(
    *,
    si: int,
    site: Site,
    di: int,
    device: Device,
    target: ResolvedDevice,
    known_profiles: Collection[str] | None,
    ctx: _Context,
) -> None:
    who = f"device '{site.id}/{device.id}'"
    snmp = target.snmp
    if snmp is not None:
        if snmp.version is SnmpVersion.V3:
            if not snmp.user:
                ctx.add(
                    _device_loc(si, di, device, "user"),
                    f"{who}: SNMPv3 needs a user (set snmp.user on the device or in its defaults)",
                )
            if snmp.priv_key is not None and snmp.auth_key is None:
                ctx.add(
                    _device_loc(si, di, device, "auth_key"),
                    f"{who}: SNMPv3 privacy (priv_key) needs an auth_key too",
                )
        elif snmp.community is None or not snmp.community.get_secret_value():
            ctx.add(
                _device_loc(si, di, device, "community"),
                f"{who}: SNMP v{snmp.version.value} needs a community",
            )
    if known_profiles is not None and device.profile != "auto" and device.profile not in known_profiles:
        close = difflib.get_close_matches(device.profile, list(known_profiles), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: auto, {_defined(known_profiles)}"
        ctx.add(
            ("sites", si, "devices", di, "profile"),
            f"{who}: unknown profile '{device.profile}' ({hint})",
        )


# --- reload: sites whose text did not change are not parsed again ------------------------------

#: ``sites:`` alone on a line at the top level, in block style
_SITES_KEY = re.compile(r"^sites:[ \t]*(?:#[^\n]*)?$", re.M)
#: the next top-level key (or a document marker) after the sites list; the patterns here begin
#: with a newline, which the regex engine finds fast, rather than with ``^`` tried everywhere
_TOP_LEVEL = re.compile(r"\n(?=[^\s#-]|---|\.\.\.)")
#: the first line of the list's first item gives the list's indentation
_FIRST_ITEM = re.compile(r"^( *)-(?: |$)", re.M)


@dataclass(frozen=True, slots=True)
class _Split:
    rest: str  # the file with ``sites: []`` and blank lines where the sites were
    blocks: list[str]  # each site's text
    around: str  # the file around the sites, whatever lines they take: the cascade's source


def _site_blocks(text: str) -> _Split | None:
    """The file without its sites (``sites: []`` in their place, every line where it was) and the
    text of each site, one block-style list item each; None when the file is not laid out so
    simply (flow style, anchors in the list, tabs, lines that are not clearly inside an item):
    then only the full parse is right."""
    keys = list(_SITES_KEY.finditer(text))
    if len(keys) != 1:
        return None
    key = keys[0]
    start = key.end() + 1
    end_m = _TOP_LEVEL.search(text, key.end())
    end = end_m.start() + 1 if end_m is not None else len(text)
    if end_m is not None and text.startswith(("---", "..."), end):
        return None
    region = text[start:end]
    if "&" in region or "\t" in region or "\r" in region:
        return None
    first = _FIRST_ITEM.search(region)
    if first is None:
        return None
    indent = first.group(1)
    lines = "\n" + region  # every line, the first too, starts after a newline
    # every line is blank, a comment, an item's first line or indented deeper than the items
    k = len(indent)
    if re.search(rf"\n {{{k}}}(?:[^ \n#-]|-[^ \n])", lines) is not None:
        return None
    if k and re.search(rf"\n {{0,{k - 1}}}[^ \n#]", lines) is not None:
        return None
    # the newline before an item's first line is at the item's own offset in ``region``
    starts = [m.start() for m in re.finditer(rf"\n{indent}-(?= |\n|$)", lines)]
    if any(line.strip() and not line.lstrip().startswith("#") for line in region[: starts[0]].splitlines()):
        return None
    blocks = [region[a:b] for a, b in zip(starts, [*starts[1:], len(region)], strict=True)]
    # the lines before the first item (comments, blanks) stay, so the rest keeps its line numbers
    head = f"{text[: key.start()]}sites: []\n{region[: starts[0]]}"
    return _Split(head + "\n" * region.count("\n", starts[0]) + text[end:], blocks, f"{head}\0{text[end:]}")


def _cacheable(block: str) -> bool:
    # ${ENV} and *_file secrets read the environment and the disk, not only the text
    return "$" not in block and "_file" not in block


class SiteCache:
    """The validated :class:`Site` of each site's text in the last good load of one file.

    A reload looks every site's text up here and parses, prepares and validates only the sites
    whose text changed; an unchanged site keeps its very object, which tells the parts that
    reconfigure on the loop what they may skip. Any problem found on that path makes the load run
    again the whole way, so the messages name file, line and field exactly as a first load does.
    Reloads of one file run one at a time (the daemon's reload lock); it holds the current sites'
    text only.
    """

    def __init__(self) -> None:
        self._sites: dict[str, Site] = {}
        # the file around its sites, and each cached site's devices resolved under it
        self._around = ""
        self._resolved: dict[int, tuple[ResolvedDevice, ...]] = {}

    def __len__(self) -> int:
        return len(self._sites)

    def _fill(self, around: str, blocks: list[str], sites: list[Site], devices: list[ResolvedDevice]) -> None:
        self._sites = {b: s for b, s in zip(blocks, sites, strict=True) if _cacheable(b)}
        self._around = around if _cacheable(around) else ""
        self._resolved = {}
        at = 0
        for block, site in zip(blocks, sites, strict=True):
            n = len(site.devices)
            if self._sites.get(block) is site:  # kept alive here, so its id() stays its own
                self._resolved[id(site)] = tuple(devices[at : at + n])
            at += n

    def _known(self, around: str) -> dict[int, tuple[ResolvedDevice, ...]] | None:
        """The resolved devices still right when the file around the sites (the defaults, the
        districts ...) reads ``around``."""
        return self._resolved if around and around == self._around else None


class _NotSimple(Exception):
    """The quick path cannot decide this file: load it the whole way."""


def _parse_site_block(
    block: str, base_dir: Path, file: str, probe_files: Mapping[str, tuple[str, ...]]
) -> Site:
    """One site's list item alone: parsed, prepared and validated, or :class:`_NotSimple`."""
    try:
        document = load_checked(_PositionLoader(block), anchors=False)
    except yaml.YAMLError:
        raise _NotSimple from None
    if not isinstance(document, _Seq) or len(document) != 1:
        raise _NotSimple
    ctx = _Context(file=file, base_dir=base_dir, probe_files=probe_files)
    plain = _prepare(document[0], ("sites", 0), ctx)
    if ctx.issues or not isinstance(plain, dict):
        raise _NotSimple
    try:
        return Site.model_validate(plain)
    except ValidationError:
        raise _NotSimple from None


def _reference_view(site: Site) -> dict[str, Any]:
    """What the cross-reference checks read of a site, as they read it from the file."""
    return {
        "id": site.id,
        "district": site.district,
        "commune": site.commune,
        "carrier": site.carrier,
        "upstream": site.upstream,
        "devices": [{"id": d.id} for d in site.devices],
    }


def _load_quick(
    source: Path,
    content: bytes,
    text: str,
    *,
    cache: SiteCache,
    known_profiles: KnownProfiles,
    on_resolve: OnResolve | None,
    probe_models: ProbeModels,
) -> LoadedConfig | None:
    """The load of a file most of whose sites the cache knows; None when it cannot tell (then the
    whole load runs and reports). Only a load that finds no problem at all returns here."""
    split = _site_blocks(text)
    if split is None or not cache:
        return None
    rest, blocks = split.rest, split.blocks
    ctx = _Context(file=str(source), base_dir=source.resolve().parent, probe_files=_probe_files(probe_models))
    known = cache._sites
    sites: list[Site] = []
    try:
        for block in blocks:
            site = known.get(block) if _cacheable(block) else None
            sites.append(
                site
                if site is not None
                else _parse_site_block(block, ctx.base_dir, ctx.file, ctx.probe_files)
            )
        document = load_checked(_PositionLoader(rest), anchors="&" in rest)
    except (_NotSimple, yaml.YAMLError):
        return None
    if not isinstance(document, _Map):
        return None
    ctx.raw = document
    raw = _prepare(document, (), ctx)
    if ctx.issues or raw.get("sites") != []:
        return None
    ctx.raw = raw
    try:
        config = Config.model_validate({**raw, "sites": sites})
    except ValidationError:
        return None
    _check_references({**raw, "sites": [_reference_view(s) for s in sites]}, ctx)
    _check_probe_blocks(config, probe_models, ctx)
    if ctx.issues:
        return None
    names = known_profiles(config) if callable(known_profiles) else known_profiles
    around = f"{split.around}\0{sorted((k, id(m)) for k, m in probe_models.items())}"
    devices = _check_devices(config, names, ctx, on_resolve, probe_models, known=cache._known(around))
    if ctx.issues:
        return None
    cache._fill(around, blocks, sites, devices)
    return LoadedConfig(
        config=config, devices=tuple(devices), source=source, digest=hashlib.sha256(content).hexdigest()
    )


# --- entry points --------------------------------------------------------------------------


def _fail(ctx: _Context) -> ConfigError:
    ordered = sorted(ctx.issues, key=lambda i: (i.line if i.line is not None else 0, i.column or 0))
    return ConfigError(ordered)


KnownProfiles = Collection[str] | Callable[[Config], Collection[str]] | None


def load_config(
    path: str | Path,
    *,
    known_profiles: KnownProfiles = None,
    on_resolve: OnResolve | None = None,
    probe_models: ProbeModels | None = None,
    cache: SiteCache | None = None,
) -> LoadedConfig:
    """Read, expand, validate and resolve a configuration file, or raise :class:`ConfigError`.

    ``known_profiles``: profile names a device may name besides ``auto``; ``None`` skips that check.
    A callable gets the validated configuration (whose ``profiles_dir`` says where to look) and
    returns the names, so the file is parsed once even when the profiles depend on it.
    ``on_resolve`` hears how far the devices' resolution got, site by site (a progress line).
    ``probe_models``: the config models of the protocols registered besides SNMP and ICMP, by kind
    (``probing.registry.Registry.settings()``); a ``probes:`` block of any other kind is an error.
    ``cache``: what the last good load of this file learnt (:class:`SiteCache`); a reload then
    parses only the sites whose text changed, and unchanged sites keep their objects.
    """
    with no_cycle_collection():
        loaded = _load(Path(path), known_profiles, on_resolve, probe_models or {}, cache)
        _share_fields_sets(loaded.config.sites)
    # from now on no log line, error or notice shows these, whatever library echoes them
    remember_secrets(secret_values(loaded.config, loaded.devices))
    return loaded


#: one set object per distinct set of names given explicitly (``model_fields_set``): a site and
#: each of its devices otherwise keep a set of their own, 200 to 700 bytes apiece
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


def _share_fields_sets(models: Iterable[BaseModel]) -> None:
    """Give every frozen model under ``models`` the shared set equal to its own fields set.

    Frozen models never change theirs (pydantic copies it before ``model_copy(update=...)`` adds
    to it), so sharing loses nothing; a model that already holds a shared set was done with its
    nested ones (a site the reload cache kept) and is skipped whole."""
    shared = _FIELDS_SETS
    stack: list[Any] = list(models)
    while stack:
        item = stack.pop()
        if isinstance(item, BaseModel):
            own = item.__pydantic_fields_set__
            key = frozenset(own)
            common = shared.get(key)
            if common is None:
                common = shared[key] = set(key)
            elif own is common:
                continue
            if item.model_config.get("frozen"):
                object.__setattr__(item, "__pydantic_fields_set__", common)
            stack.extend(item.__dict__.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _load(
    source: Path,
    known_profiles: KnownProfiles,
    on_resolve: OnResolve | None = None,
    probe_models: ProbeModels | None = None,
    cache: SiteCache | None = None,
) -> LoadedConfig:
    ctx = _Context(
        file=str(source), base_dir=source.resolve().parent, probe_files=_probe_files(probe_models or {})
    )
    try:
        content = source.read_bytes()
    except OSError as exc:
        ctx.add((), f"cannot read the configuration: {exc.strerror or type(exc).__name__}")
        raise _fail(ctx) from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        ctx.add((), f"not UTF-8 text (byte {exc.start})")
        raise _fail(ctx) from None
    if cache is not None and (
        quick := _load_quick(
            source,
            content,
            text,
            cache=cache,
            known_profiles=known_profiles,
            on_resolve=on_resolve,
            probe_models=probe_models or {},
        )
    ):
        return quick
    try:
        document = load_checked(_PositionLoader(text), anchors="&" in text)
    except YamlLimitError as exc:
        ctx.add((), str(exc.problem), at=_mark(exc.problem_mark) if exc.problem_mark else None)
        raise _fail(ctx) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or 'invalid YAML'}"
        if exc.context:
            where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context}{where})"
        ctx.add((), message, at=_mark(mark) if mark else None)
        raise _fail(ctx) from None
    except yaml.YAMLError as exc:
        ctx.add((), f"YAML error: {exc}")
        raise _fail(ctx) from None
    if document is None:
        ctx.add((), "the file is empty")
        raise _fail(ctx)
    if not isinstance(document, _Map):
        ctx.add((), "the configuration must be a mapping (province:, carriers:, districts:, sites: ...)")
        raise _fail(ctx)

    ctx.raw = document
    raw = _prepare(document, (), ctx)
    ctx.raw = raw
    # a value already reported as unloadable (unset variable, unreadable file) would only echo
    # that problem as a schema error on it or on the mapping holding it
    failed = list(ctx.failed)
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            if not any(bad[: len(loc)] == loc for bad in failed):
                ctx.add(loc, _schema_message(error, loc))
    _check_references(raw, ctx)
    if config is not None:
        _check_probe_blocks(config, probe_models or {}, ctx)
    devices: list[ResolvedDevice] = []
    if config is not None and not ctx.issues:
        # resolving needs a consistent file: districts must exist for their defaults to apply
        names = known_profiles(config) if callable(known_profiles) else known_profiles
        devices = _check_devices(config, names, ctx, on_resolve, probe_models)
    if ctx.issues or config is None:
        raise _fail(ctx)
    if cache is not None:
        split = _site_blocks(text)
        if split is not None and len(split.blocks) == len(config.sites):
            around = f"{split.around}\0{sorted((k, id(m)) for k, m in (probe_models or {}).items())}"
            cache._fill(around, split.blocks, config.sites, devices)
    return LoadedConfig(
        config=config,
        devices=tuple(devices),
        source=source,
        digest=hashlib.sha256(content).hexdigest(),
    )


def _known_profiles(loaded: LoadedConfig) -> tuple[Collection[str] | None, str | None]:
    """Profile names for the check, from the profiles the daemon would load; skipped without them."""
    try:
        # looked up by name: profiles are a separate part, and a missing one must not break this check
        profiles = importlib.import_module("uptimewatch.profiles")
    except ImportError:
        return None, None
    default_dir = getattr(profiles, "default_profiles_dir", None)
    load = getattr(profiles, "load_profiles", None)
    if default_dir is None or load is None:
        return None, None
    try:
        configured = loaded.config.profiles_dir
        if configured is None:
            directory = Path(default_dir())
        else:
            directory = Path(configured)
            if not directory.is_absolute():
                directory = loaded.source.parent / directory
        names: Collection[str] = load(directory).names()
    except Exception as exc:  # whatever the profile loader raises, the operator must see it
        return None, f"profiles: {exc}"
    return names, None


def cli_check_config(args: argparse.Namespace, probe_models: ProbeModels | None = None) -> int:
    """``uptimewatch check-config FILE``: exit 0 when the daemon would accept the file, 1 otherwise.
    ``probe_models``: the daemon's protocols (``uptimewatch.cli`` passes the shipped registry's)."""
    progress = InventoryProgress()
    try:
        loaded = load_config(args.config, on_resolve=progress, probe_models=probe_models)
        names, problem = _known_profiles(loaded)
        if problem is not None:
            progress.close()
            print(f"{args.config}: {problem}", file=sys.stderr)
            return 1
        if names is not None:
            loaded = load_config(
                args.config, known_profiles=names, on_resolve=progress, probe_models=probe_models
            )
    except ConfigError as exc:
        progress.close()
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    progress.close()
    config = loaded.config
    t = translator(config.province.language)
    print(
        t.gettext(
            "OK: {sites:num0} sites, {devices:num0} devices, {districts:num0} districts, "
            "{carriers:num0} carriers",
            sites=len(config.sites),
            devices=len(loaded.devices),
            districts=len(config.districts),
            carriers=len(config.carriers),
        )
    )
    return 0


class InventoryProgress:
    """A progress line on stderr while a large inventory's devices are resolved, in the province's
    language (known by then: the file is validated before its devices are resolved). Nothing on a
    pipe; nothing for an inventory that resolves in a blink."""

    def __init__(self, *, stream: typing.TextIO | None = None, least: int = 1000) -> None:
        self._stream = stream
        self._least = least
        self._line: Progress | None = None

    def __call__(self, config: Config, done: int, total: int) -> None:
        if total < self._least:
            return
        if self._line is None:
            t = translator(config.province.language)

            def describe(resolved: int, of: int | None) -> str:
                return t.gettext(
                    "Checking the inventory: {done:num0} of {total:num0} devices ({share})",
                    done=resolved,
                    total=of or 0,
                    share=t.percent(resolved / of) if of else "",
                )

            self._line = Progress(describe, total, stream=self._stream)
            self._line.__enter__()
        elif done < self._line.done:  # a second pass over the file (with the profiles' names)
            self._line.start(total)
        self._line.advance(done - self._line.done)

    def close(self) -> None:
        if self._line is not None:
            self._line.close()
            self._line = None
