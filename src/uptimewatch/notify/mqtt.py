"""MQTT (aiomqtt): notices on an events topic and each site's state on a retained topic.

One connection to the top-level ``mqtt:`` broker serves both, as client ``<client_id>-notify`` with a
persistent session (clean_session false), kept up by an explicit reconnect loop with backoff.
Everything is published with QoS 1; a notice counts as sent only once the broker's PUBACK came
back on the same connection, so a broker restart between PUBLISH and PUBACK means a resend.

Topics (``<prefix>`` is ``uptimewatch`` unless configured):

- ``<prefix>/<province>/events``: every notice, the same JSON as the webhook body;
- ``<prefix>/<province>/<district>/<site>/state``: retained, the site's state, reason and since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
from pydantic import Field

from .. import executors, mqtt_session
from ..primitives import Duration
from ..supervisor import Supervisor
from . import render
from .base import ChannelContext, ChannelType, Delivery, DeliveryError, StrictSettings

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "uptimewatch"


class MqttSettings(StrictSettings):
    """Publish notices to the events topic of the top-level `mqtt:` broker."""

    topic_prefix: str = Field(
        default=DEFAULT_PREFIX,
        pattern=r"^[^#+\s]+$",
        description="First level of the topics: `<prefix>/<province>/events`.",
    )
    timeout: Duration = Field(default=10.0, description="Deadline for the broker's PUBACK of one notice.")


class MqttLink:
    """One MQTT connection, reconnected with backoff, shared by the events channel and site states.

    ``broker`` is the configuration's :class:`~uptimewatch.config.models.MqttBroker`.
    """

    def __init__(
        self,
        broker: Any,
        *,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        on_connect: Callable[[], None] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self.broker = broker
        self.client_id = f"{broker.client_id}-notify"
        self._reconnect = (reconnect_initial, reconnect_max)
        self._on_connect = on_connect
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = self._supervisor.spawn(
                "mqtt-link", self._run, vital=True, context=f"broker {self.broker.host}:{self.broker.port}"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        b = self.broker
        tls: ssl.SSLContext | None = await executors.CONFIG.run(ssl.create_default_context) if b.tls else None
        password = b.password.get_secret_value() if b.password is not None else None
        delay = self._reconnect[0]
        while True:
            client = aiomqtt.Client(
                b.host,
                b.port,
                identifier=self.client_id,
                clean_session=False,
                username=b.username,
                password=password,
                keepalive=max(1, int(b.keepalive)),
                tls_context=tls,
                timeout=10.0,
            )
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                await mqtt_session.enter(client)
                try:
                    self._client, self._lost = client, lost
                    self._connected.set()
                    self.connects += 1
                    delay = self._reconnect[0]
                    log.info("MQTT connected to %s:%d as %s", b.host, b.port, self.client_id)
                    if self._on_connect is not None:
                        self._on_connect()
                    # nothing is subscribed: the iterator only ends when the connection does
                    async for _ in client.messages:
                        pass
                finally:
                    await client.__aexit__(None, None, None)
            except (aiomqtt.MqttError, OSError) as exc:
                level = logging.WARNING if self._client is not None else logging.INFO
                log.log(level, "MQTT %s:%d: %s; reconnecting in %.1f s", b.host, b.port, exc, delay)
            finally:
                self._connected.clear()
                self._client = self._lost = None
                if not lost.done():
                    lost.set_result(None)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._reconnect[1])

    async def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """QoS 1; returns after PUBACK. Waits for a connection; the caller bounds the wait."""
        await self._connected.wait()
        client, lost = self._client, self._lost
        if client is None or lost is None:
            raise DeliveryError("MQTT connection lost")
        pub = asyncio.ensure_future(client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf))
        try:
            done, _ = await asyncio.wait({pub, lost}, return_when=asyncio.FIRST_COMPLETED)
            if pub not in done:
                raise DeliveryError("MQTT connection lost before the broker acknowledged")
            pub.result()
        except aiomqtt.MqttError as exc:
            raise DeliveryError(f"MQTT publish: {exc}") from exc
        finally:
            if not pub.done():
                pub.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await pub


class MqttChannel:
    def __init__(self, settings: MqttSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._link: MqttLink | None = context.mqtt
        self._topic = render.events_topic(settings.topic_prefix, context.names.province_id or "province")

    async def send(self, delivery: Delivery) -> None:
        if self._link is None:
            raise DeliveryError("no MQTT broker configured (top-level mqtt: section)", permanent=True)
        await self._link.publish(
            self._topic, render.notification_payload(delivery.notification), retain=False
        )

    async def close(self) -> None:
        return None  # the link belongs to the app, shared with site states


def _create(settings: MqttSettings, context: ChannelContext) -> MqttChannel:
    return MqttChannel(settings, context)


CHANNEL = ChannelType(
    name="mqtt",
    settings=MqttSettings,
    create=_create,
    description="Events topic on the top-level MQTT broker.",
)


class SiteStatePublisher:
    """Retained ``.../<site>/state`` topics, published when a site changes state.

    :meth:`site_changed` is cheap and synchronous (it only notes the id), so the health model's hot
    path never waits on the broker; a background task publishes the latest state of each noted
    site, so a site that flaps while the broker is away is published once, in its final state.
    """

    def __init__(
        self,
        link: MqttLink,
        get_site: Callable[[str], Any],
        *,
        province: str,
        prefix: str = DEFAULT_PREFIX,
        publish_timeout: float = 10.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._link = link
        self._get_site = get_site  # site id -> model.health.SiteStatus or None
        self._province = province
        self._prefix = prefix
        self._timeout = publish_timeout
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def site_changed(self, site_id: str) -> None:
        self._dirty[site_id] = None
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = self._supervisor.spawn("mqtt-site-states", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                # taken off before reading the state: a change while publishing notes it again
                site_id = next(iter(self._dirty))
                del self._dirty[site_id]
                site = self._get_site(site_id)
                if site is None:  # removed by a reload
                    continue
                topic = render.site_state_topic(self._prefix, self._province, site.district, site.site_id)
                payload = render.site_state_payload(
                    site=site.site_id,
                    name=site.name,
                    district=site.district,
                    carrier=site.carrier,
                    state=str(site.state.value),
                    reason=str(site.reason),
                    since=site.since,
                )
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._link.publish(topic, payload, retain=True)
                except (DeliveryError, TimeoutError) as exc:
                    log.debug("site %s state not published yet: %s", site_id, exc)
                    self._dirty.setdefault(site_id, None)
                    await asyncio.sleep(0.5)
                    continue
                self.published += 1
