"""The Prometheus text exposition, written by hand where prometheus_client is too slow.

prometheus_client formats about 170,000 samples a second: for hundreds of thousands of devices
(twenty-odd series each) one scrape would hold the event loop for tens of seconds. The big
per-site families therefore arrive as :class:`PrerenderedFamily` objects whose text is produced
(and cached) by their owner; everything else (the daemon's own counters, process and platform
metrics) still goes through prometheus_client. :func:`scrape` does the cheap part, collecting, on
the event loop and the text, joining and gzip in a worker thread.

The output is the same text format prometheus_client writes (labels sorted by name, values as Go
formats them), so generic consumers and our own tests see no difference.
"""

from __future__ import annotations

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
    """

    def __init__(self, name: str, documentation: str, chunks: Callable[[], Sequence[bytes]]) -> None:
        self._chunks_fn = chunks
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


def render_body(metrics: Iterable[Metric], gzip: bool) -> bytes:
    """The answer's body: the text, or a gzip member of it."""
    if not gzip:
        return render(metrics)
    # Compressed family by family, the whole uncompressed text (216 MB for 100,000 devices) never
    # exists at once. wbits 31: a gzip member. zlib releases the GIL while it compresses.
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    out = [compressor.compress(b"".join(part)) for part in render_parts(metrics)]
    out.append(compressor.flush())
    return b"".join(out)


async def scrape(registry: CollectorRegistry, accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
    """One ``/metrics`` answer: the body and its headers.

    Collectors run here on the event loop, since they read the daemon's live state (a collector
    must return plain data, not views of it); the text is written in a worker thread, where the
    prerendered families read only immutable snapshots.
    """
    metrics = list(registry.collect())
    gzip = gzip_accepted(accept_encoding)
    body = await executors.RENDER.run(render_body, metrics, gzip)
    headers = {"Content-Type": CONTENT_TYPE_LATEST}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return body, headers
