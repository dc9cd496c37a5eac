"""What every channel shares: the small interface the dispatcher drives, the error it understands,
and the building blocks of channel settings.

A channel module defines a pydantic settings model and a class with ``async send(delivery)``, and
exposes both as one :class:`ChannelType`; ``registry.py`` lists the types. The dispatcher owns the
timeout of every send (``asyncio.timeout``), never the channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr

from ..redact import redact_url
from .types import Notification

#: Payload format of webhook and MQTT messages; bumped on an incompatible change.
PAYLOAD_VERSION = 1

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?$")


class StrictSettings(BaseModel):
    """Base of every notify settings model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def one_source(model: BaseModel, *names: str) -> None:
    """A secret comes inline or from its ``*_file`` (the loader inlines the file), never both."""
    for name in names:
        if getattr(model, name) is not None and getattr(model, f"{name}_file") is not None:
            raise ValueError(f"give either {name} or {name}_file, not both")


def check_address(value: str) -> str:
    """``noc@example.vn`` or ``Trực ca NOC <noc@example.vn>``; returns the value unchanged."""
    from email.utils import parseaddr

    _name, addr = parseaddr(value)
    if not addr or not _ADDRESS.match(addr) or ("<" in value and not value.rstrip().endswith(">")):
        raise ValueError(f"invalid email address {value!r}: write user@domain or 'Name <user@domain>'")
    return value


def check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"invalid URL {redact_url(value)!r}: must start with http:// or https://")
    return value.rstrip("/")


def secret_value(secret: SecretStr | None) -> str | None:
    """The clear text, at the last moment before it goes on the wire."""
    return None if secret is None else secret.get_secret_value()


class DeliveryError(Exception):
    """A channel could not hand a notification over. ``permanent``: retrying cannot help (the peer
    refused this very message), so the outbox records a failure instead of retrying."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification on its way through one channel."""

    id: int  # row id in the outbox
    channel: str  # "<receiver>/<type>"
    notification: Notification
    attempt: int  # 1 on the first try
    thread_root: str | None = None  # id of the first firing notice of the group, when this is not it


@dataclass(frozen=True, slots=True)
class Names:
    """Display names for the ids that alerts carry as labels."""

    province_id: str = ""
    province_name: str = ""
    timezone: str = "UTC"  # IANA zone in which messages show times
    language: str = "en"  # province.language: the language of messages unless a receiver says
    districts: Mapping[str, str] = field(default_factory=dict)
    communes: Mapping[str, str] = field(default_factory=dict)  # "district/commune" -> name
    carriers: Mapping[str, str] = field(default_factory=dict)
    sites: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What a channel may need besides its own settings; built by the app from the configuration."""

    names: Names = field(default_factory=Names)
    external_url: str | None = None  # where people reach this daemon's API, for links
    mqtt: Any = None  # the shared MQTT link (notify.mqtt.MqttLink), when a broker is configured


class Channel(Protocol):
    """One configured channel of one receiver."""

    async def send(self, delivery: Delivery) -> None:
        """Return once the peer accepted the notification; raise :class:`DeliveryError` otherwise."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelType:
    """A notifier kind: its config key, settings model and constructor."""

    name: str  # the key under a receiver: email, mqtt, webhook, alertmanager
    settings: type[StrictSettings]
    create: Callable[[Any, ChannelContext], Channel]
    description: str


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Counters and queue of one channel, for the metrics (counters since the process started)."""

    receiver: str
    channel: str  # the kind: email, mqtt, webhook, alertmanager
    sent: int
    failed: int  # refused for good by the peer; not retried
    retried: int  # attempts that failed and were scheduled again
    expired: int  # given up after expire_after
    depth: int  # rows pending
    oldest_pending_age: float | None  # seconds; None when nothing is pending
    failing_since: float | None
