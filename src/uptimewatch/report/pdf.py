"""The report as PDF: the same self-contained HTML, laid out for print by WeasyPrint.

WeasyPrint (the ``pdf`` extra) is a CSS paged-media engine: ``@page`` gives A4 landscape with a
running header and "page 1 of 3" footers, charts stay vector (inline SVG), and the fonts come
from fontconfig through Pango and are embedded as subsets, so Vietnamese diacritics print on a
machine that has never seen Noto Sans. It needs Debian's Pango (``libpango-1.0-0``,
``libpangoft2-1.0-0``) and the fonts ``fonts-noto-core`` and ``fonts-dejavu-core``.

Nothing is fetched while rendering: the report has no external resource, and a URL fetcher
that allows no protocol (and fails the rendering if asked) keeps it that way.
"""

from __future__ import annotations

import logging

from ..config import capabilities

# WeasyPrint reports each layout step at INFO: not news for the reader of a report
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)


class PdfUnavailableError(RuntimeError):
    """WeasyPrint or the system libraries it needs are missing."""


def html_to_pdf(document: str) -> bytes:
    """Render the report's HTML (from :func:`.render.to_html`) as PDF bytes (blocking)."""
    problem = capabilities.missing(capabilities.PDF)
    if problem is not None:
        raise PdfUnavailableError(problem)
    import weasyprint

    # no protocol allowed, and a refused fetch stops the rendering instead of leaving a hole
    fetcher = weasyprint.URLFetcher(allowed_protocols=(), fail_on_errors=True)
    html = weasyprint.HTML(string=document, url_fetcher=fetcher, media_type="print")
    pdf = html.write_pdf()
    if not isinstance(pdf, bytes):  # pragma: no cover - write_pdf() without a target returns bytes
        raise PdfUnavailableError("WeasyPrint returned no PDF")
    return pdf
