"""Which configuration keys hold secrets, read from the models themselves.

A field typed ``SecretStr`` (or a list of them) is a secret; its key is never echoed in an error,
a log line or an API answer. A model with a secret ``x`` beside a ``x_file: str`` field lets the
secret come from a file; the loader inlines such files. Both sets are derived here, so a new
secret field needs no second list to be kept by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import msgspec
from pydantic import BaseModel, SecretStr

from ..redact import url_secrets
from .models import Config

__all__ = ["own_secret_files", "secret_file_keys", "secret_keys", "secret_values"]


def _flatten(annotation: Any) -> Iterator[Any]:
    """Every type inside an annotation: ``list[SecretStr] | None`` -> list, SecretStr, NoneType."""
    yield annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _flatten(typing.get_args(annotation)[0])
        return
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _flatten(arg)


def _is_secret(annotation: Any) -> bool:
    return any(isinstance(t, type) and issubclass(t, SecretStr) for t in _flatten(annotation))


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    for t in _flatten(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            yield t


def _key(name: str, alias: str | None) -> str:
    return alias or name


def _walk(root: type[BaseModel]) -> Iterator[tuple[str | None, type[BaseModel]]]:
    """Every model reachable from ``root``, with the key it hangs under (``None`` for the root)."""
    seen: set[tuple[str | None, type[BaseModel]]] = set()
    todo: list[tuple[str | None, type[BaseModel]]] = [(None, root)]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        yield item
        for name, info in item[1].model_fields.items():
            todo.extend((_key(name, info.alias), m) for m in _models(info.annotation))


@functools.cache
def secret_keys(root: type[BaseModel] = Config) -> frozenset[str]:
    """Keys typed ``SecretStr`` anywhere under ``root``: ``community``, ``bearer_tokens``, ..."""
    return frozenset(
        _key(name, info.alias)
        for _, model in _walk(root)
        for name, info in model.model_fields.items()
        if _is_secret(info.annotation)
    )


@functools.cache
def secret_file_keys(root: type[BaseModel] = Config) -> Mapping[str, tuple[str, ...]]:
    """``{mapping key: secrets it may give as *_file}``, e.g. ``{"snmp": ("community", ...)}``."""
    out: dict[str, tuple[str, ...]] = {}
    for key, model in _walk(root):
        fields = model.model_fields
        names = [n for n, info in fields.items() if _is_secret(info.annotation) and f"{n}_file" in fields]
        if key is not None and names:
            out[key] = tuple(dict.fromkeys([*out.get(key, ()), *names]))  # declaration order, once each
    return MappingProxyType(out)


@functools.cache
def own_secret_files(model: type[BaseModel]) -> tuple[str, ...]:
    """The secrets of ``model`` itself that may be given as ``*_file`` (a protocol's ``probes:``
    block, whose key is the protocol's kind rather than a key of the configuration's models)."""
    fields = model.model_fields
    return tuple(n for n, info in fields.items() if _is_secret(info.annotation) and f"{n}_file" in fields)


def _secrets_in(value: Any) -> Iterator[str]:
    """The clear text of every ``SecretStr`` inside ``value`` (models, dataclasses, containers)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, SecretStr):
            yield item.get_secret_value()
        elif isinstance(item, BaseModel):
            for name in type(item).model_fields:
                value = getattr(item, name)
                if name.endswith("url") and isinstance(value, str):
                    # a webhook's ?token= or an Alertmanager's user:password@ is a secret too
                    yield from url_secrets(value)
                else:
                    todo.append(value)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            todo.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, msgspec.Struct):
            todo.extend(getattr(item, name) for name in item.__struct_fields__)
        elif isinstance(item, Mapping):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)


def secret_values(config: Config, devices: Iterable[Any] = ()) -> set[str]:
    """Every secret a loaded configuration holds, in clear: what logs and errors must never show.

    The sites are read through their resolved ``devices`` (what the probes really use, defaults
    applied), so a province of 300,000 devices costs one pass over their targets."""
    found = set(_secrets_in([getattr(config, name) for name in type(config).model_fields if name != "sites"]))
    for device in devices:
        snmp = getattr(device, "snmp", None)
        if snmp is not None:
            for key in (snmp.community, snmp.auth_key, snmp.priv_key):
                if key is not None:
                    found.add(key.get_secret_value())
        extra = getattr(device, "extra_targets", None)
        if extra:
            found.update(_secrets_in(extra))
    return found
