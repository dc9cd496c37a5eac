"""Makes the demo's faults real to ping: an nftables table of the demo's own drops ICMP echo
requests to the simulated devices that are silent (dead, rebooting, dark, or cut off).

Every 127.x address answers ping in the kernel, so without this a device the scenario kills
stays alive to the daemon's ICMP probe. The table (``table inet uptimewatch_demo`` by default)
holds one set of IPv4 addresses and one rule on the input hook, which loopback traffic crosses:
``ip daddr @silent icmp type echo-request drop``. Faults change the set's elements only, in one
``nft -f -`` transaction per change. Needs root (CAP_NET_ADMIN); without it the demo keeps every
address answering ping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable

log = logging.getLogger(__name__)

DEFAULT_TABLE = "uptimewatch_demo"
SET_NAME = "silent"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
#: elements per nft statement: keeps one command line short for provinces of thousands of sites
_CHUNK = 2000


class FirewallError(RuntimeError):
    """nft refused a command."""


def unavailable_reason() -> str | None:
    """Why the firewall cannot be used here, or None when it can."""
    if os.geteuid() != 0:
        return "not running as root"
    if shutil.which("nft") is None:
        return "nft (Debian package nftables) is not installed"
    return None


async def _nft(script: str, *, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        "nft",
        "-f",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate(script.encode())
    if check and proc.returncode != 0:
        raise FirewallError(f"nft failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    return err.decode(errors="replace")


def _elements(op: str, table: str, addresses: list[str]) -> str:
    lines = []
    for i in range(0, len(addresses), _CHUNK):
        chunk = ", ".join(addresses[i : i + _CHUNK])
        lines.append(f"{op} element inet {table} {SET_NAME} {{ {chunk} }}")
    return "\n".join(lines)


class IcmpFirewall:
    """The demo's table: ``await start()``, ``await sync(addresses)`` as often as needed,
    ``await close()`` (idempotent) to delete it."""

    def __init__(self, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"invalid nftables table name {table!r}")
        self.table = table
        self.silent: frozenset[str] = frozenset()
        self._active = False
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return self._active

    async def start(self) -> None:
        # a table left by a demo that was killed (SIGKILL, power cut) would keep dropping pings
        await _nft(f"delete table inet {self.table}\n", check=False)
        await _nft(
            f"table inet {self.table} {{\n"
            f"  set {SET_NAME} {{ type ipv4_addr; }}\n"
            "  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f"    ip daddr @{SET_NAME} icmp type echo-request drop\n"
            "  }\n"
            "}\n"
        )
        self._active = True
        self.silent = frozenset()

    async def sync(self, addresses: Iterable[str]) -> tuple[int, int]:
        """Makes exactly ``addresses`` silent to ping; returns (added, removed)."""
        wanted = frozenset(addresses)
        async with self._lock:
            if not self._active:
                return 0, 0
            add = sorted(wanted - self.silent)
            remove = sorted(self.silent - wanted)
            if not add and not remove:
                return 0, 0
            script = "\n".join(
                s for s in (_elements("delete", self.table, remove), _elements("add", self.table, add)) if s
            )
            await _nft(script + "\n")
            self.silent = wanted
        if add:
            log.info("ICMP now dropped for %d addresses (%s)", len(add), ", ".join(add[:6]))
        if remove:
            log.info("ICMP answered again by %d addresses (%s)", len(remove), ", ".join(remove[:6]))
        return len(add), len(remove)

    async def close(self) -> None:
        if not self._active:
            return
        self._active = False
        self.silent = frozenset()
        try:
            await _nft(f"delete table inet {self.table}\n", check=False)
        except asyncio.CancelledError:
            # a second Ctrl-C while closing: the table must still go, whatever it blocks
            delete_table_sync(self.table)
            raise

    async def __aenter__(self) -> IcmpFirewall:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def delete_table_sync(table: str = DEFAULT_TABLE) -> None:
    """Blocking: deletes the table if it exists (the last resort of :meth:`IcmpFirewall.close`)."""
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)


def table_exists_sync(table: str = DEFAULT_TABLE) -> bool:
    """Blocking check for tests and diagnostics."""
    done = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, check=False)
    return done.returncode == 0
