"""The demo's SMTP sink: alert emails end up as ``.eml`` files the user can open.

An aiosmtpd server on the demo's own event loop, on 127.0.0.1 only, without TLS or AUTH (the
demo's receivers send with ``starttls: opportunistic`` and no password, so nothing secret crosses
it). Each accepted message is written to ``<directory>/NNNN.eml`` and described by one JSON line
in ``<directory>/index.jsonl``; :attr:`MailSink.messages` holds the same index in memory.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

INDEX_NAME = "index.jsonl"


@dataclass(frozen=True, slots=True)
class MailRecord:
    """One received email, as listed in the index."""

    file: str  # name within the mail directory
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str  # decoded (RFC 2047 words turned back into UTF-8)
    message_id: str
    kind: str  # X-Uptimewatch-Kind: firing, resolved, ...

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rcpt_tos"] = list(self.rcpt_tos)
        return data


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else bytes(content)
        try:
            await self.sink._store(envelope.mail_from or "", tuple(envelope.rcpt_tos), raw)
        except OSError as exc:  # a full disk refuses the message for now: the sender retries
            log.error("mail sink: cannot store a message: %s", exc)
            return "451 4.3.0 Cannot store the message now"
        return "250 2.0.0 OK: stored"


class MailSink:
    """``async with MailSink(directory) as sink``: listening on ``sink.host:sink.port`` inside."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.host = host
        self._port = port
        self._server: asyncio.base_events.Server | None = None
        self.messages: list[MailRecord] = []
        self._count = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mail sink is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def index_path(self) -> Path:
        return self.directory / INDEX_NAME

    async def start(self) -> None:
        # aiosmtpd logs every SMTP command and reply at INFO on "mail.log": a few lines per email,
        # hundreds during a hub cut, burying the demo's own console. Its warnings still show; the
        # sink writes one line per message itself.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        await asyncio.to_thread(self._prepare)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="uptimewatch-demo", ident="uptimewatch demo mail sink"),
            self.host,
            self._port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MailSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _prepare(self) -> None:
        """Blocking: a fresh directory per run, so the index matches what is in it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("*.eml"):
            old.unlink()
        self.index_path.write_text("", encoding="utf-8")

    async def _store(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        # the name is taken before the write, so concurrent deliveries cannot pick the same one
        self._count += 1
        name = f"{self._count:04d}.eml"
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        record = MailRecord(
            file=name,
            received_at=time.time(),
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            subject=str(parsed.get("Subject", "")),
            message_id=str(parsed.get("Message-ID", "")),
            kind=str(parsed.get("X-Uptimewatch-Kind", "")),
        )
        line = json.dumps(record.to_dict(), ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._write, name, raw, line)
        self.messages.append(record)
        log.info("mail sink: %s to %s: %s", name, ", ".join(rcpt_tos), record.subject)

    def _write(self, name: str, raw: bytes, index_line: str) -> None:
        (self.directory / name).write_bytes(raw)
        with self.index_path.open("a", encoding="utf-8") as fh:
            fh.write(index_line)


_EML_NAME = re.compile(r"^\d{4}\.eml$")
SINK_KEY: web.AppKey[MailSink] = web.AppKey("demo_mail_sink", MailSink)


async def _mail_index(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    rows = [m.to_dict() | {"url": f"/demo/mail/{m.file}"} for m in reversed(sink.messages)]
    body = {"directory": str(sink.directory), "count": len(rows), "messages": rows}
    return web.json_response(body, dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def _mail_file(request: web.Request) -> web.Response:
    sink = request.app[SINK_KEY]
    name = request.match_info["name"]
    if not _EML_NAME.match(name) or not any(m.file == name for m in sink.messages):
        raise web.HTTPNotFound(text=f"no message {name}\n")
    raw = await asyncio.to_thread((sink.directory / name).read_bytes)
    # shown as text: a browser displays the message, headers and MIME parts as they were sent
    return web.Response(body=raw, content_type="text/plain", charset="utf-8")


def install_routes(app: web.Application, sink: MailSink) -> None:
    """``GET /demo/mail`` (the index, newest first, JSON) and ``GET /demo/mail/NNNN.eml``."""
    app[SINK_KEY] = sink
    app.router.add_get("/demo/mail", _mail_index)
    app.router.add_get("/demo/mail/{name}", _mail_file)
