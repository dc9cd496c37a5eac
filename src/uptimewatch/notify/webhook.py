"""Webhook: POST the notification as JSON, signed with HMAC-SHA256 over the exact body.

2xx is accepted. 4xx other than 408 and 429 means the peer will never take this body: a permanent
failure, recorded and not retried. 5xx, 408, 429 and network errors are retried by the outbox.
"""

from __future__ import annotations

import ssl
from typing import Annotated

import aiohttp
from pydantic import AfterValidator, Field, SecretStr, model_validator

from .. import executors
from ..primitives import Duration
from ..redact import redact, redact_url
from . import render
from .base import (
    ChannelContext,
    ChannelType,
    Delivery,
    DeliveryError,
    StrictSettings,
    check_http_url,
    one_source,
    secret_value,
)

SIGNATURE_HEADER = "X-Uptimewatch-Signature"
_RETRYABLE_4XX = frozenset({408, 425, 429})


class WebhookSettings(StrictSettings):
    """POST each notice as signed JSON to a URL."""

    url: Annotated[str, AfterValidator(check_http_url)] = Field(
        description="http:// or https:// URL to POST to."
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 signature sent in `X-Uptimewatch-Signature` (secret).",
    )
    secret_file: str | None = Field(default=None, description="File holding the secret, instead of `secret`.")
    ca_file: str | None = Field(
        default=None, description="PEM file of CAs to verify an https URL with, instead of the system's."
    )
    timeout: Duration = Field(default=10.0, description="Deadline for one POST, answer included.")

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookSettings:
        one_source(self, "secret")
        return self


class HttpChannel:
    """Shared by the webhook and Alertmanager channels: one session, created on first use."""

    def __init__(self, ca_file: str | None) -> None:
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None

        self._tls: ssl.SSLContext | None = None

    async def prepare(self) -> None:
        """Load the CA file now: a missing or broken one fails the start or reload."""
        if self._ca_file is not None and self._tls is None:
            try:
                self._tls = await executors.CONFIG.run(ssl.create_default_context, cafile=self._ca_file)
            except (OSError, ValueError) as exc:
                raise ValueError(f"ca_file {self._ca_file}: {exc}") from exc

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            await self.prepare()
            connector = aiohttp.TCPConnector(ssl=self._tls) if self._tls is not None else None
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        session = await self._client()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return
                detail = (await resp.text(errors="replace"))[:200].strip()
                permanent = 400 <= resp.status < 500 and resp.status not in _RETRYABLE_4XX
                raise DeliveryError(
                    redact(f"HTTP {resp.status} from {redact_url(url)}: {detail}"), permanent=permanent
                )
        except aiohttp.ClientError as exc:
            raise DeliveryError(redact(f"POST {redact_url(url)}: {type(exc).__name__}: {exc}")) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookChannel(HttpChannel):
    def __init__(self, settings: WebhookSettings, context: ChannelContext) -> None:
        super().__init__(settings.ca_file)
        self.settings = settings

    async def send(self, delivery: Delivery) -> None:
        body = render.notification_payload(delivery.notification)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Uptimewatch-Notification-Id": delivery.notification.id,
            "User-Agent": "uptimewatch",
        }
        if (secret := secret_value(self.settings.secret)) is not None:
            headers[SIGNATURE_HEADER] = render.signature(secret, body)
        await self.post(self.settings.url, body, headers)


def _create(settings: WebhookSettings, context: ChannelContext) -> WebhookChannel:
    return WebhookChannel(settings, context)


CHANNEL = ChannelType(
    name="webhook",
    settings=WebhookSettings,
    create=_create,
    description="JSON POST signed with HMAC-SHA256.",
)
