"""Email through an SMTP relay (aiosmtplib): multipart text and HTML, threaded by group.

A notice counts as sent when the relay answered 250 to DATA. The Message-ID derives from the
notification id, so a notice resent after a crash is the same message to the mail system, and
``In-Reply-To``/``References`` name the group's first firing notice so a resolved one threads
under it.
"""

from __future__ import annotations

import logging
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
from pydantic import AfterValidator, Field, SecretStr, model_validator

from .. import executors
from ..i18n import Language
from ..primitives import Duration
from . import render
from .base import (
    ChannelContext,
    ChannelType,
    Delivery,
    DeliveryError,
    Names,
    StrictSettings,
    check_address,
    one_source,
    secret_value,
)

log = logging.getLogger(__name__)

Address = Annotated[str, AfterValidator(check_address)]


class EmailSettings(StrictSettings):
    """Send notices by email through an SMTP relay."""

    host: str = Field(description="SMTP relay host name or address.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="SMTP port; default 465 with `tls: true`, else 587."
    )
    starttls: Literal["required", "opportunistic", "off"] = Field(
        default="required",
        description=(
            "Upgrade the connection with STARTTLS: `required` (refuse to send without it), "
            "`opportunistic` (when the relay offers it) or `off`. Ignored with `tls: true`."
        ),
    )
    tls: bool = Field(
        default=False, description="Implicit TLS from the first byte (SMTPS, usually port 465)."
    )
    username: str | None = Field(default=None, description="User for SMTP AUTH (PLAIN or LOGIN).")
    password: SecretStr | None = Field(default=None, description="Password for SMTP AUTH (secret).")
    password_file: str | None = Field(
        default=None, description="File holding the password, instead of `password`."
    )
    sender: Address = Field(
        description="The From address, e.g. `uptimewatch Hòa Bình <noc@example.vn>` (envelope and header)."
    )
    to: list[Address] = Field(min_length=1, description="Recipient addresses.")
    ca_file: str | None = Field(
        default=None, description="PEM file of CAs to verify the relay with, instead of the system's."
    )
    timeout: Duration = Field(default=30.0, description="Deadline for handing over one message.")
    language: Language | None = Field(
        default=None,
        description="Language of this receiver's emails (`vi` | `en`); default `province.language`.",
    )

    @model_validator(mode="after")
    def _safe(self) -> EmailSettings:
        one_source(self, "password")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.password is not None and self.starttls == "off" and not self.tls:
            raise ValueError(
                "starttls: off with a password would send the credentials in clear; "
                "use starttls: required or tls: true"
            )
        return self


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def build_message(
    delivery: Delivery, settings: EmailSettings, names: Names, external_url: str | None
) -> EmailMessage:
    """The whole email for one delivery; a pure function of its arguments."""
    n = delivery.notification
    domain = parseaddr(settings.sender)[1].rpartition("@")[2] or "uptimewatch.invalid"
    # a long line limit: folding inside an encoded word garbles UTF-8 subjects on CPython 3.11
    msg = EmailMessage(policy=SMTP.clone(max_line_length=998))
    t = render.language_of(names, settings.language)  # the language is chosen here, per email
    msg["Subject"] = render.subject(n, names, t)
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(n.created_at, _zone(names.timezone)))
    msg["Message-ID"] = render.message_id(n.id, domain)
    if delivery.thread_root is not None and delivery.thread_root != n.id:
        root = render.message_id(delivery.thread_root, domain)
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Uptimewatch-Notification-Id"] = n.id
    msg["X-Uptimewatch-Kind"] = n.kind
    text = render.email_text(n, names, external_url=external_url, t=t)
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    html = render.email_html(n, names, external_url=external_url, t=t)
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = t.language  # after set_content, which clears the Content-* headers
    return msg


class EmailChannel:
    def __init__(self, settings: EmailSettings, context: ChannelContext) -> None:
        self.settings = settings
        self._context = context
        self._tls_context: ssl.SSLContext | None = None

    async def prepare(self) -> None:
        """Load the CA file now, when one is given: a broken one fails the start or reload."""
        if self.settings.ca_file is not None:
            try:
                await self._tls()
            except (OSError, ValueError) as exc:
                raise ValueError(f"ca_file {self.settings.ca_file}: {exc}") from exc

    async def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            # reading the CA file (or the system store) is disk I/O: off the event loop
            self._tls_context = await executors.CONFIG.run(
                ssl.create_default_context, cafile=self.settings.ca_file
            )
        return self._tls_context

    async def send(self, delivery: Delivery) -> None:
        s = self.settings
        message = build_message(delivery, s, self._context.names, self._context.external_url)
        start_tls = {"required": True, "opportunistic": None, "off": False}[s.starttls]
        try:
            refused, _reply = await aiosmtplib.send(
                # bytes, not the message: aiosmtplib would re-fold headers with its own policy
                message.as_bytes(),
                sender=parseaddr(s.sender)[1],
                recipients=[parseaddr(a)[1] for a in s.to],
                hostname=s.host,
                port=s.port or (465 if s.tls else 587),
                username=s.username,
                password=secret_value(s.password),
                use_tls=s.tls,
                start_tls=False if s.tls else start_tls,
                tls_context=await self._tls(),
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(
                f"every recipient refused ({', '.join(map(str, codes))})",
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            # credentials are configuration: keep the notices until a reload fixes them
            raise DeliveryError(f"SMTP authentication failed: {exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # a 5xx to MAIL, RCPT or DATA rejects this message; 4xx asks to try again later
            raise DeliveryError(f"SMTP {exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {exc}") from exc
        if refused:
            log.warning(
                "notice %s: %d of %d recipients refused by %s: %s",
                delivery.notification.id,
                len(refused),
                len(s.to),
                s.host,
                ", ".join(sorted(refused)),
            )

    async def close(self) -> None:
        return None


def _create(settings: EmailSettings, context: ChannelContext) -> EmailChannel:
    return EmailChannel(settings, context)


CHANNEL = ChannelType(
    name="email",
    settings=EmailSettings,
    create=_create,
    description="Email through an SMTP relay.",
)
