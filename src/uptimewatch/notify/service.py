"""Notifications as one component for the app: the outbox, its dispatcher, the MQTT link and the
retained site-state topics, built from the configuration and reloaded with it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..supervisor import Supervisor
from .base import ChannelContext, ChannelStats, Names
from .dispatcher import ConfiguredChannel, Dispatcher, build_channels, close_channels, prepare_channels
from .mqtt import DEFAULT_PREFIX, MqttLink, SiteStatePublisher
from .outbox import Outbox, Store

log = logging.getLogger(__name__)


def names_of(config: Any) -> Names:
    """Display names from a :class:`uptimewatch.config.models.Config`."""
    return Names(
        province_id=config.province.id,
        province_name=config.province.name,
        timezone=config.province.timezone,
        language=config.province.language,
        districts={d.id: d.name for d in config.districts},
        communes={f"{d.id}/{c.id}": c.name for d in config.districts for c in d.communes},
        carriers={c.id: c.name for c in config.carriers},
        sites={s.id: s.name for s in config.sites},
    )


def _mqtt_prefix(config: Any) -> str:
    for receiver in config.notify.receivers:
        settings = getattr(receiver, "mqtt", None)
        if settings is not None:
            return str(settings.topic_prefix)
    return DEFAULT_PREFIX


class NotifyService:
    """``outbox.enqueue`` for the alert engine, ``site_changed`` for the health model's changes."""

    def __init__(
        self,
        store: Store,
        config: Any,
        *,
        get_site: Callable[[str], Any],
        clock: Callable[[], float] = time.time,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._config = config
        self._get_site = get_site
        self.outbox = Outbox(store, clock=clock)
        self.dispatcher = Dispatcher(self.outbox, config.notify.outbox, supervisor=self._supervisor)
        self.link: MqttLink | None = None
        self.site_states: SiteStatePublisher | None = None

    def _context(self, config: Any) -> ChannelContext:
        return ChannelContext(names=names_of(config), external_url=config.web.external_url, mqtt=self.link)

    async def start(self) -> None:
        """All or nothing: a channel that cannot be prepared stops the MQTT link again."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self._config
        await self.outbox.open()
        if config.mqtt is not None:
            self.link = MqttLink(config.mqtt, supervisor=self._supervisor)
            self.link.start()
            self.site_states = SiteStatePublisher(
                self.link,
                self._get_site,
                province=config.province.id,
                prefix=_mqtt_prefix(config),
                supervisor=self._supervisor,
            )
            self.site_states.start()
        await self.dispatcher.start(await self._channels(config))

    async def prepare_reload(self, config: Any) -> dict[str, ConfiguredChannel] | None:
        """The channels a reload will use, built and with their TLS contexts and key files
        loaded (raises when one cannot be); None when the channels do not change."""
        old = self._config
        if config.notify == old.notify and config.province == old.province and config.sites == old.sites:
            return None
        return await self._channels(config)

    async def _channels(self, config: Any) -> dict[str, ConfiguredChannel]:
        channels = build_channels(config.notify, self._context(config))
        try:
            await prepare_channels(channels)
        except BaseException:
            await close_channels(channels)  # the ones already prepared hold TLS contexts, sessions
            raise
        return channels

    async def commit_reload(self, config: Any, channels: dict[str, ConfiguredChannel] | None) -> None:
        old = self._config
        self._config = config
        if config.mqtt != old.mqtt:
            log.warning("mqtt: broker settings changed: the notifier keeps its connection until a restart")
        if channels is not None:
            await self.dispatcher.reconfigure(config.notify.outbox, channels)

    async def reload(self, config: Any) -> None:
        await self.commit_reload(config, await self.prepare_reload(config))

    async def stop(self) -> None:
        await self.dispatcher.stop()
        if self.site_states is not None:
            await self.site_states.stop()
        if self.link is not None:
            await self.link.stop()

    def site_changed(self, site_id: str) -> None:
        if self.site_states is not None:
            self.site_states.site_changed(site_id)

    def stats(self) -> list[ChannelStats]:
        return self.dispatcher.stats()
