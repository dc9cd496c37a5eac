"""A progress line for long command-line work (reading months of ledger, loading a large inventory).

On a terminal the line is rewritten in place (``\\r``) at most every ``interval`` seconds and ends
with a newline when the work is done. On a pipe or a file nothing at all is written, so output
that a script captures or a cron job mails stays clean. The line goes to stderr, never to the
report or data on stdout.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: The line's text for (done, total or None); the caller words it in the reader's language.
Describe = Callable[[int, int | None], str]


class Progress:
    """``with Progress(describe, total) as p: ... p.advance()``; silent unless ``stream`` is a TTY."""

    def __init__(
        self,
        describe: Describe,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._clock = clock
        self._shown_at: float | None = None
        self._width = 0
        try:
            self.enabled = self._stream.isatty()
        except (AttributeError, ValueError):  # closed or not a real stream
            self.enabled = False

    def __enter__(self) -> Progress:
        self._show(force=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, total: int | None, describe: Describe | None = None) -> None:
        """Begin a new stage with its own total (and words); the same line is rewritten."""
        self.total = total
        self.done = 0
        if describe is not None:
            self._describe = describe
        self._show(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        # the last step of a stage is always shown, so a finished stage reads 100 %
        self._show(force=self.total is not None and self.done >= self.total)

    def close(self) -> None:
        if self.enabled and self._shown_at is not None:
            self._show(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._shown_at = None

    def _show(self, *, force: bool) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._shown_at is not None and now - self._shown_at < self._interval:
            return
        self._shown_at = now
        line = self._describe(self.done, self.total)
        pad = max(0, self._width - len(line))  # wipe what a longer previous line left behind
        self._width = len(line)
        self._stream.write("\r" + line + " " * pad)
        self._stream.flush()
