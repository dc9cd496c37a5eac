"""The ``notify:`` section: receivers (each with one or more channels) and the outbox's timing.

A receiver's keys besides ``name`` are the channel kinds of :mod:`uptimewatch.notify.registry`;
the model is built from that registry, so an unknown kind is an unknown key with the allowed
ones listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model, field_validator, model_validator

from ..primitives import ID_PATTERN, Duration
from .base import StrictSettings
from .registry import CHANNEL_TYPES


class ReceiverBase(StrictSettings):
    """Who gets notices, and through which channels (one or several of the keys below)."""

    name: str = Field(pattern=ID_PATTERN, description="Receiver name; alert routes refer to it.")

    def channels(self) -> list[tuple[str, StrictSettings]]:
        """``(kind, settings)`` of every channel the receiver has, in registry order."""
        return [(kind, s) for kind in CHANNEL_TYPES if (s := getattr(self, kind, None)) is not None]

    @model_validator(mode="after")
    def _has_a_channel(self) -> ReceiverBase:
        if not self.channels():
            raise ValueError(
                f"receiver '{self.name}' has no channel (give one of: {', '.join(CHANNEL_TYPES)})"
            )
        return self


_channel_fields: dict[str, Any] = {
    kind: (t.settings | None, Field(default=None, description=f"{t.description} See {t.settings.__name__}."))
    for kind, t in CHANNEL_TYPES.items()
}

if TYPE_CHECKING:
    Receiver = ReceiverBase
else:
    Receiver = create_model(
        "Receiver",
        __base__=ReceiverBase,
        __doc__=ReceiverBase.__doc__,
        **_channel_fields,
    )


class OutboxSettings(StrictSettings):
    """How the durable outbox retries, and when it gives up."""

    retry_initial: Duration = Field(default=10.0, description="Wait before the first retry of a failed send.")
    retry_max: Duration = Field(
        default=600.0, description="Longest wait between retries; the wait doubles up to this, with jitter."
    )
    expire_after: Duration = Field(
        default=86400.0,
        description=(
            "Give up on a notice this long after it was queued: it is marked expired, counted and logged."
        ),
    )
    channel_failure_alert_after: Duration = Field(
        default=600.0,
        description="A channel failing this long raises a ChannelFailing notice through the other channels.",
    )
    keep_history: Duration = Field(
        default=7 * 86400.0,
        description="Keep delivered, failed and expired rows this long, then delete them.",
    )

    @model_validator(mode="after")
    def _order(self) -> OutboxSettings:
        if self.retry_initial <= 0:
            raise ValueError("retry_initial must be more than 0")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must not be less than retry_initial")
        return self


class NotifyConfig(StrictSettings):
    """Where notices go and how their delivery is retried."""

    receivers: list[Receiver] = Field(
        default_factory=list, description="The receivers alert routes can name."
    )
    outbox: OutboxSettings = Field(default=OutboxSettings(), description="Retry and expiry of deliveries.")

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "external_url" in data:
            raise ValueError("notify.external_url has moved: set web.external_url instead")
        return data

    @field_validator("receivers")
    @classmethod
    def _unique(cls, value: list[ReceiverBase]) -> list[ReceiverBase]:
        seen: set[str] = set()
        for receiver in value:
            if receiver.name in seen:
                raise ValueError(f"duplicate receiver name '{receiver.name}'")
            seen.add(receiver.name)
        return value

    def receiver(self, name: str) -> ReceiverBase | None:
        return next((r for r in self.receivers if r.name == name), None)
