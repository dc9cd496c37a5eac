"""Alertmanager v2: ``POST {url}/api/v2/alerts``, for sites that already route with Alertmanager.

Each alert of a notice becomes one Alertmanager alert with its labels (alertname, severity, site,
district, carrier...), summary and description; a resolved alert carries ``endsAt``. Alertmanager
resolves an alert on its own after ``resolve_timeout`` without news, so reminders (the alert
engine's repeat interval) should come more often than that.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AfterValidator, Field

from ..primitives import Duration
from . import render
from .base import ChannelContext, ChannelType, Delivery, StrictSettings, check_http_url
from .webhook import HttpChannel


class AlertmanagerSettings(StrictSettings):
    """Hand alerts to a Prometheus Alertmanager through its v2 API."""

    url: Annotated[str, AfterValidator(check_http_url)] = Field(
        description="Base URL of the Alertmanager, e.g. `http://127.0.0.1:9093`."
    )
    ca_file: str | None = Field(
        default=None, description="PEM file of CAs to verify an https URL with, instead of the system's."
    )
    timeout: Duration = Field(default=10.0, description="Deadline for one POST, answer included.")


class AlertmanagerChannel(HttpChannel):
    def __init__(self, settings: AlertmanagerSettings, context: ChannelContext) -> None:
        super().__init__(settings.ca_file)
        self.settings = settings
        self._external_url = context.external_url

    async def send(self, delivery: Delivery) -> None:
        alerts = render.alertmanager_alerts(delivery.notification, external_url=self._external_url)
        if not alerts:
            return
        body = json.dumps(alerts, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "uptimewatch"}
        await self.post(f"{self.settings.url}/api/v2/alerts", body, headers)


def _create(settings: AlertmanagerSettings, context: ChannelContext) -> AlertmanagerChannel:
    return AlertmanagerChannel(settings, context)


CHANNEL = ChannelType(
    name="alertmanager",
    settings=AlertmanagerSettings,
    create=_create,
    description="Prometheus Alertmanager v2 API.",
)
