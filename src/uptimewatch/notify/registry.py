"""Every notifier kind, by the key a receiver uses for it. A new notifier is one module exposing a
:class:`~uptimewatch.notify.base.ChannelType` and one line here; the configuration schema reads
the allowed keys from this mapping, so there is no second list."""

from __future__ import annotations

from . import alertmanager, email, mqtt, webhook
from .base import ChannelType

CHANNEL_TYPES: dict[str, ChannelType] = {
    t.name: t
    for t in (
        email.CHANNEL,
        mqtt.CHANNEL,
        webhook.CHANNEL,
        alertmanager.CHANNEL,
    )
}
