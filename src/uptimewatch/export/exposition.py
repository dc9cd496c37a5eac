"""The Prometheus text exposition, written by hand where prometheus_client is too slow.

prometheus_client formats about 170,000 samples a second: for hundreds of thousands of devices
(twenty-odd series each) one scrape would hold the event loop for tens of seconds. The big
per-site families therefore arrive as :class:`PrerenderedFamily` objects whose text is produced
(and cached) by their owner; everything else (the daemon's own counters, process and platform
metrics) still goes through prometheus_client. :func:`scrape` does the cheap part, collecting, on
the event loop, in steps that each hold it briefly, and the text, joining and gzip in a worker
thread.

Gzip: a prerendered family may also hand over its text as deflate pieces compressed earlier, each
ended by a full flush (byte-aligned, with no back-reference before its start, so pieces can be put
between any others). The answer is one gzip member: the small families compressed on the spot,
the cached pieces copied in as they are, the CRC-32 and length computed over the text. Only the
pieces whose text changed since the previous scrape are compressed again.

The output is the same text format prometheus_client writes (labels sorted by name, values as Go
formats them), so generic consumers and our own tests see no difference.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .. import executors

#: zlib level for gzip answers: level 1 already shrinks this repetitive text ~10x, at a third of
#: the CPU of the default level 6.
GZIP_LEVEL = 1


def escape_label_value(value: str) -> str:
    """A label value as it goes between the double quotes of the text format."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if '"' in value:
        value = value.replace('"', '\\"')
    return value


def format_value(value: float) -> str:
    """A sample value as prometheus_client (and Go) writes it: ``1.0``, ``0.25``, ``1.75e+09``."""
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6 and value > 0:
        # Go switches to an exponent from 1e7 where Python's repr still writes all the digits
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    if dot < 0:
        if text in ("inf", "-inf"):
            return "+Inf" if value > 0 else "-Inf"
        if text == "nan":
            return "NaN"
    return text


def family_header(name: str, documentation: str, typ: str = "gauge") -> bytes:
    doc = documentation.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {typ}\n".encode()


class PrerenderedFamily(Metric):
    """A gauge family whose sample lines come ready made from ``chunks()``.

    ``chunks`` is called at most once, lazily: by :func:`render` in the worker thread, or, for a
    consumer that reads ``samples`` (prometheus_client's own ``generate_latest``, tests), by
    parsing the text back, which is slow but gives exactly the samples the text holds.
    ``packed``, when given, returns the same text as raw deflate pieces, one per chunk, each
    ended by a full flush (see the module's docstring).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        chunks: Callable[[], Sequence[bytes]],
        packed: Callable[[], Sequence[bytes]] | None = None,
    ) -> None:
        self._chunks_fn = chunks
        self._packed_fn = packed
        self._chunks: Sequence[bytes] | None = None
        self._parsed: list[Sample] | None = None
        super().__init__(name, documentation, "gauge")

    @property
    def samples(self) -> list[Sample]:
        if self._parsed is None:
            text = (self.header() + b"".join(self.chunks())).decode()
            self._parsed = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
        return self._parsed

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ assigns an empty list; the samples only ever come from the text
        if value:
            raise TypeError("a prerendered family takes no samples")

    def header(self) -> bytes:
        return family_header(self.name, self.documentation)

    def chunks(self) -> Sequence[bytes]:
        if self._chunks is None:
            self._chunks = self._chunks_fn()
        return self._chunks

    def packed(self) -> Sequence[bytes] | None:
        """The chunks as deflate pieces, or None when the family has no compressed form."""
        return None if self._packed_fn is None else self._packed_fn()


class _Metrics:
    """A collector over metric families already collected (what generate_latest wants)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def render_parts(metrics: Iterable[Metric]) -> list[Sequence[bytes]]:
    """The text exposition of ``metrics`` in their order, as pieces to join: each prerendered
    family as its header and chunks, runs of other families through prometheus_client."""
    parts: list[Sequence[bytes]] = []
    plain: list[Metric] = []
    for metric in metrics:
        if isinstance(metric, PrerenderedFamily):
            if plain:
                parts.append((generate_latest(_Metrics(plain)),))
                plain = []
            parts.append((metric.header(), *metric.chunks()))
        else:
            plain.append(metric)
    if plain:
        parts.append((generate_latest(_Metrics(plain)),))
    return parts


def render(metrics: Iterable[Metric]) -> bytes:
    """The text exposition of ``metrics``, in their order."""
    return b"".join([chunk for part in render_parts(metrics) for chunk in part])


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (``gzip;q=0`` refuses it)."""
    for coding in accept_encoding.split(","):
        name, *params = coding.split(";")
        if name.strip().lower() != "gzip":
            continue
        for param in params:
            key, _, q = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    return float(q) > 0
                except ValueError:
                    return False
        return True
    return False


#: a gzip member's header: deflate, no name, no mtime, unknown OS (RFC 1952)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def render_body(metrics: Iterable[Metric], gzip: bool) -> bytes:
    """The answer's body: the text, or a gzip member of it."""
    if not gzip:
        return render(metrics)
    # The whole uncompressed text (100 MB for 100,000 devices) never exists at once: the small
    # families are compressed here, the big ones come as the pieces their owner keeps.
    # wbits -15: raw deflate, with our own gzip header and trailer around it.
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    crc = 0
    size = 0
    out = [_GZIP_HEADER]
    plain: list[Metric] = []

    def text(data: bytes) -> None:
        nonlocal crc, size
        crc = zlib.crc32(data, crc)
        size += len(data)
        out.append(compressor.compress(data))

    for metric in [*metrics, None]:
        if metric is not None and not isinstance(metric, PrerenderedFamily):
            plain.append(metric)
            continue
        if plain:
            text(generate_latest(_Metrics(plain)))
            plain = []
        if metric is None:
            break
        pieces = metric.packed()
        if pieces is None:
            text(metric.header() + b"".join(metric.chunks()))
            continue
        text(metric.header())
        out.append(compressor.flush(zlib.Z_FULL_FLUSH))  # byte-aligned: the pieces follow
        for chunk in metric.chunks():
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
        out.extend(pieces)
    out.append(compressor.flush())
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)


async def scrape(
    registry: CollectorRegistry,
    accept_encoding: str = "",
    prepare: Callable[[], bool] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """One ``/metrics`` answer: the body and its headers.

    Collectors run here on the event loop, since they read the daemon's live state (a collector
    must return plain data, not views of it); the text is written in a worker thread, where the
    prerendered families read only immutable snapshots. ``prepare``, when given, is one bounded
    step of the work the collectors would otherwise do in one piece (the health snapshot after a
    cycle of changes), returning True while more remains: it runs first, yielding to the loop
    between steps.
    """
    more = prepare is not None and prepare()
    while more:
        await asyncio.sleep(0)  # a turn for everything else between two steps
        more = prepare is not None and prepare()
    metrics = list(registry.collect())
    gzip = gzip_accepted(accept_encoding)
    body = await executors.RENDER.run(render_body, metrics, gzip)
    headers = {"Content-Type": CONTENT_TYPE_LATEST}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return body, headers
