"""One daemon per state database: an exclusive ``flock`` on ``<database>.lock``, held for the run.

Two daemons on one database would both poll, both judge and both notify (every email twice).
The lock is taken before the database is opened and released only when the process ends or
closes it, so a ``kill -9`` frees it at once (the kernel drops the lock with the file
descriptor): there is never a stale lock to clean up by hand. The file holds the owner's pid, so
the second daemon can say whom it ran into. A lock file beside the database, not the database
itself: SQLite's own POSIX locks on the database are dropped when *any* descriptor of that file
in the process is closed, which a second descriptor of ours would risk.

Readers (``uptimewatch report``) do not take it. Several nodes share state through the cluster
setup, never through one file.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class StateLocked(Exception):
    """Another process holds the state database; the message names it and its pid."""


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


class StateLock:
    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Blocking (a file open): call it off the event loop. Raises :class:`StateLocked`."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_pid(self.path)
            who = f"pid {holder}" if holder is not None else "another process"
            raise StateLocked(
                f"the state store {self.path.with_suffix('')} is in use by another uptimewatch"
                f" ({who}, lock {self.path}); two daemons on one storage.path would both notify."
                " Stop the other one, or give this one its own storage.path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # drops the lock; the file stays, harmless and reused by the next start


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
