"""What this installation can serve, and what a configuration asks of it.

A feature can rest on a Python package that is missing or unusable even though uptimewatch
declares it: an install with ``--no-deps``, a distribution package too old for pysnmp, a broken
OpenSSL. Without this check the daemon would start and every poll of every such device would fail
with the library's own words (pysnmp: "Ciphering services not available"), which name neither the
cause nor the cure. Here the configuration's needs are listed once, at load time (start, reload and
``check-config`` all load through :func:`uptimewatch.config.loader.load_config`), and a need this
installation cannot meet is a configuration error naming the device, the file and the line, and the
command that installs what is missing.

Each capability is probed by doing what the feature does (an import and a real cipher operation,
not a look at installed metadata), once per process.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .models import Config, PrivProtocol, SnmpVersion
from .resolve import ResolvedDevice

DISTRIBUTION = "uptimewatch"


@dataclass(frozen=True, slots=True)
class Capability:
    """A feature that needs a Python package at run time."""

    name: str
    feature: str  # in the operator's words
    package: str  # the distribution that provides it, as pip names it
    extra: str | None = None  # the optional-dependency group that installs it; None: always installed


#: SNMPv3 authPriv: pysnmp ciphers (DES, AES-128/192/256) through ``cryptography``
SNMPV3_PRIVACY = Capability("snmpv3-privacy", "SNMPv3 privacy", "cryptography")
#: ``uptimewatch report --format pdf``: WeasyPrint over Debian's Pango
PDF = Capability("pdf", "PDF reports (report --format pdf)", "weasyprint", extra="pdf")


@dataclass(frozen=True, slots=True)
class Lack:
    """Why a capability is unavailable, and the remedy when it is not installing its package."""

    reason: str
    remedy: str | None = None

    def __str__(self) -> str:
        return self.reason


def _probe_privacy() -> str | Lack | None:
    try:
        import cryptography
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    except ImportError as exc:
        return str(exc)
    # the ciphers pysnmp's USM uses, from pysnmp's own modules: each records at import whether the
    # cryptography it found has every name it needs (a release too old for this pysnmp does not)
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pysnmp.proto.secmod.rfc3826.priv import aes

    if aes.PysnmpCryptoError or des.PysnmpCryptoError:
        version = getattr(cryptography, "__version__", "?")
        pysnmp = _version("pysnmp") or "?"
        return f"cryptography {version} lacks ciphers that pysnmp {pysnmp} needs"
    from cryptography.hazmat.decrepit.ciphers.modes import CFB  # there, or pysnmp said so above

    try:  # importable is not usable: the OpenSSL behind it must encrypt (AES-CFB, as RFC 3826)
        Cipher(algorithms.AES(bytes(16)), CFB(bytes(16))).encryptor().update(bytes(16))
    except Exception as exc:  # whatever the backend raises, the feature does not work
        return f"cryptography cannot encrypt: {type(exc).__name__}: {exc}"
    return None


def _probe_pdf() -> str | Lack | None:
    try:
        import weasyprint  # noqa: F401
    except ImportError as exc:
        return str(exc)
    except OSError as exc:  # WeasyPrint is there but cannot load Pango
        return Lack(
            f"WeasyPrint cannot load Pango: {exc}",
            "apt-get install libpango-1.0-0 libpangoft2-1.0-0 (Debian's Pango, which WeasyPrint uses)",
        )
    return None


_PROBES: dict[str, Callable[[], str | Lack | None]] = {
    SNMPV3_PRIVACY.name: _probe_privacy,
    PDF.name: _probe_pdf,
}


@functools.cache
def unavailable(capability: Capability) -> Lack | None:
    """Why this process cannot serve ``capability`` (the library's own words), or None when it can.
    Probed once per process: what imported at start stays imported."""
    found = _PROBES[capability.name]()
    return Lack(found) if isinstance(found, str) else found


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement(capability: Capability) -> str:
    """The requirement uptimewatch's own metadata declares for the capability's package (one
    source of truth: pyproject.toml), e.g. ``cryptography>=47``; the bare name without metadata."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    wanted = _canonical(capability.package)
    for line in declared:
        spec, _, marker = line.partition(";")
        match = _NAME.match(spec)
        if match is None or _canonical(match.group(1)) != wanted:
            continue
        in_extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if (in_extra.group(1) if in_extra else None) == capability.extra:
            return spec.strip().replace(" ", "")
    return capability.package


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_hint(capability: Capability) -> str:
    """The command that brings the package into the environment this process runs from."""
    command = f"{sys.executable} -m pip install '{requirement(capability)}'"
    if capability.extra is None:
        return f"{command} (uptimewatch depends on it: this installation is incomplete)"
    return f"{command} (the '{capability.extra}' extra of uptimewatch)"


def explain(capability: Capability, lack: Lack, *, feature: str | None = None) -> str:
    """One sentence: what cannot work (``feature``, the capability's by default), why, what to run."""
    return (
        f"{feature or capability.feature} needs the Python package '{capability.package}', which this "
        f"installation cannot use ({lack.reason}): {lack.remedy or install_hint(capability)}"
    )


def missing(capability: Capability) -> str | None:
    """:func:`explain` when ``capability`` is unavailable, None when it works."""
    reason = unavailable(capability)
    return None if reason is None else explain(capability, reason)


def missing_dependency(exc: ImportError) -> str | None:
    """The sentence for an import of a declared runtime dependency that failed; None when the
    module that failed is not one (then it is a bug, and its traceback is the report)."""
    top = (exc.name or "").partition(".")[0]
    if not top or top == DISTRIBUTION:
        return None
    packages = importlib.metadata.packages_distributions().get(top, [top])
    for package in packages:
        needed = Capability(top, "uptimewatch", package)
        if _declared(package):
            return explain(needed, Lack(str(exc)))
    return None


def _declared(package: str) -> bool:
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(
        (m := _NAME.match(line)) is not None
        and _canonical(m.group(1)) == _canonical(package)
        and "extra ==" not in line.partition(";")[2]
        for line in declared
    )


# --- what a configuration asks for ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Need:
    """One thing in the configuration that asks for ``capability`` through its setting ``key``:
    ``devices[device]``, or (``device`` None) the settings at ``loc``, named by ``what``."""

    capability: Capability
    key: str
    detail: str  # e.g. the priv protocol
    device: int | None = None
    loc: tuple[str | int, ...] = ()
    what: str = ""


def needs(config: Config, devices: Sequence[ResolvedDevice]) -> Iterator[Need]:
    """Every capability the configuration asks for: its trap receiver's users, then the resolved
    devices in order."""
    if config.traps.enabled:
        for index, user in enumerate(config.traps.v3_users):
            if user.priv_key is not None:
                priv = user.priv_protocol or PrivProtocol.AES
                yield Need(
                    SNMPV3_PRIVACY,
                    "priv_key",
                    priv.value,
                    loc=("traps", "v3_users", index, "priv_key"),
                    what=f"trap user '{user.user}'",
                )
    for index, device in enumerate(devices):
        snmp = device.snmp
        if snmp is not None and snmp.version is SnmpVersion.V3 and snmp.priv_key is not None:
            priv = snmp.priv_protocol or PrivProtocol.AES
            yield Need(SNMPV3_PRIVACY, "priv_key", priv.value, device=index)


def unmet(config: Config, devices: Sequence[ResolvedDevice]) -> Iterator[tuple[Need, Lack]]:
    """The needs this installation cannot meet, each with its reason."""
    for need in needs(config, devices):
        reason = unavailable(need.capability)
        if reason is not None:
            yield need, reason
