"""``uptimewatch probe HOST[:PORT]``: poll one device once and print its normalized fields.

For people at a terminal: does this box answer, which profiles does it match, what do we make of
its values. Exit 0 with fields, 2 when the device gave no usable answer, 1 on bad profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from .. import executors
from ..config import capabilities
from ..config.models import AuthProtocol, PrivProtocol, Role, SnmpVersion
from ..config.resolve import BUILTIN, IcmpTarget, ResolvedDevice, SnmpTarget
from ..i18n import Translator, terminal_language, translator
from ..model.observation import ErrorKind, FieldValue, Observation
from ..primitives import valid_port
from ..profiles import ProfileCatalog, ProfileError, load_profiles

EXIT_OK, EXIT_PROFILES, EXIT_NO_ANSWER = 0, 1, 2


class UsageError(Exception):
    pass


def split_target(target: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = target.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "161"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "161"
    if not host or not valid_port(port):
        raise UsageError(f"target {target!r} is not HOST or HOST:PORT")
    return host, int(port)


def build_device(args: argparse.Namespace) -> ResolvedDevice:
    host, port = split_target(args.target)
    snmp: SnmpTarget | None = None
    if not args.no_snmp:
        snmp = _snmp_target(args, host, port)
    icmp: IcmpTarget | None = None
    if args.icmp or args.no_snmp:
        icmp = IcmpTarget(host=host, count=3, interval=0.05, timeout=1.0, payload_size=56)
    assert BUILTIN.thresholds is not None
    return ResolvedDevice(
        site_id="cli",
        device_id=host,
        role=Role.ROUTER,  # the probe does not look at the role
        name=f"{host}:{port}",
        address=host,
        profile=args.profile,
        interval=60.0,
        timeout=max(args.timeout * (args.retries + 1) * 4, 10.0),
        hard_after=1,
        snmp=snmp,
        icmp=icmp,
        thresholds=BUILTIN.thresholds,
    )


def _snmp_target(args: argparse.Namespace, host: str, port: int) -> SnmpTarget:
    version = SnmpVersion(args.snmp_version or ("3" if args.v3_user else "2c"))
    defaults = BUILTIN.snmp
    assert defaults is not None
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.retries < 0:
        raise UsageError("--retries cannot be negative")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "version": version,
        "context": args.v3_context or "",
        "timeout": args.timeout,
        "retries": args.retries,
        "max_repetitions": defaults.max_repetitions or 25,
        "max_rows": defaults.max_rows or 10_000,
        "max_requests": defaults.max_requests or 200,
    }
    if version is not SnmpVersion.V3:
        return SnmpTarget(
            **common,
            community=SecretStr(args.community if args.community is not None else "public"),
            user=None,
            auth_protocol=None,
            auth_key=None,
            priv_protocol=None,
            priv_key=None,
        )
    if not args.v3_user:
        raise UsageError("SNMPv3 needs --v3-user")
    for name in ("v3_auth_key", "v3_priv_key"):
        key = getattr(args, name)
        if key is not None and len(key) < 8:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 8 characters (RFC 3414)")
    if args.v3_priv_key and not args.v3_auth_key:
        raise UsageError("--v3-priv-key needs --v3-auth-key too")
    try:
        auth = AuthProtocol(args.v3_auth_protocol.upper()) if args.v3_auth_key else None
        priv = PrivProtocol(args.v3_priv_protocol.upper()) if args.v3_priv_key else None
    except ValueError as exc:
        raise UsageError(f"unknown SNMPv3 protocol: {exc}") from None
    return SnmpTarget(
        **common,
        community=None,
        user=args.v3_user,
        auth_protocol=auth,
        auth_key=SecretStr(args.v3_auth_key) if args.v3_auth_key else None,
        priv_protocol=priv,
        priv_key=SecretStr(args.v3_priv_key) if args.v3_priv_key else None,
    )


def no_answer_reason(target: str, obs: Observation, timeout: float, t: Translator | None = None) -> str:
    """The one line a person at the terminal reads when the device gave nothing usable."""
    assert obs.error is not None
    t = t or translator("en")
    kind = obs.error.kind
    if kind is ErrorKind.TIMEOUT:
        return t.gettext(
            "no answer from {target} within {timeout} s (wrong community, SNMP disabled, or host down)",
            target=target,
            timeout=f"{timeout:g}",
        )
    if kind is ErrorKind.AUTH:
        return t.gettext(
            "{target} rejected the SNMPv3 credentials: {error}", target=target, error=obs.error.message
        )
    if kind is ErrorKind.NO_SUCH_OBJECT:
        return t.gettext(
            "{target} answered but holds none of the profile fields: {error}",
            target=target,
            error=obs.error.message,
        )
    return f"{target}: {obs.probe} {kind.value}: {obs.error.message}"


def _sort_key(name: str) -> tuple[str, tuple[int | str, ...]]:
    base, _, index = name.partition("[")
    arcs = tuple(int(a) if a.isdigit() else a for a in index.rstrip("]").split(".")) if index else ()
    return base, arcs


def _clean(value: FieldValue) -> FieldValue:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def render_json(
    target: str, profile: str | None, fields: Mapping[str, FieldValue], problems: list[str]
) -> str:
    ordered = {k: _clean(fields[k]) for k in sorted(fields, key=_sort_key)}
    doc = {"target": target, "profile": profile, "fields": ordered, "problems": problems}
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _show(value: FieldValue) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        # plain decimals for uptimes and counters; scientific only for the very small (RTTs)
        return f"{value:.6f}".rstrip("0").rstrip(".") if value == 0 or abs(value) >= 0.001 else f"{value:.6g}"
    if isinstance(value, str):
        if not value.strip():
            return json.dumps(value)  # an empty or blank string, visibly
        text = value.replace("\r", "\\r").replace("\n", "\\n")
        return text if len(text) <= 100 else text[:97] + "..."
    return str(value)


def render_table(
    target: str,
    profile: str | None,
    fields: Mapping[str, FieldValue],
    problems: list[str],
    t: Translator | None = None,
) -> str:
    names = sorted(fields, key=_sort_key)
    width = max([len(n) for n in names] + [7])
    lines = [f"{'target':<{width}}  {target}", f"{'profile':<{width}}  {profile or '-'}", ""]
    lines.extend(f"{name:<{width}}  {_show(fields[name])}" for name in names)
    if problems:
        lines.append("")
        lines.append((t or translator("en")).gettext("problems:"))
        lines.extend(f"  - {p}" for p in problems)
    return "\n".join(lines)


async def _run(args: argparse.Namespace, device: ResolvedDevice, catalog: ProfileCatalog | None) -> int:
    t = translator(terminal_language(getattr(args, "lang", None)))
    target = device.name
    fields: dict[str, FieldValue] = {}
    problems: list[str] = []
    profile: str | None = None
    failure: str | None = None
    if device.snmp is not None:
        assert catalog is not None
        from .snmp import probe
        from .snmp_transport import create_transport

        transport = create_transport()
        try:
            obs = await probe(device, catalog, transport)
        finally:
            await transport.close()
        profile = obs.profile
        fields.update(obs.fields)
        problems.extend(obs.problems)
        if obs.error is not None:
            failure = no_answer_reason(target, obs, device.snmp.timeout, t)
            diagnosed = await _v3_diagnosis(device.snmp, obs)
            if diagnosed is not None:
                problems.append(f"SNMPv3: {diagnosed}")
                failure = f"{target}: {diagnosed}"
    if device.icmp is not None:
        from . import icmp  # SNMP-only use never opens an ICMP socket

        privilege = await executors.CONFIG.run(icmp.detect_privilege)
        prober = icmp.IcmpProber(privilege)
        try:
            obs_icmp: Observation = await prober.probe(device)
        finally:
            prober.close()
        fields.update(obs_icmp.fields)
        problems.extend(obs_icmp.problems)
        if obs_icmp.error is not None:
            reason = f"ICMP {obs_icmp.error.kind.value}: {obs_icmp.error.message}"
            if device.snmp is None:
                failure = t.gettext(
                    "no ICMP answer from {address}: {reason}", address=device.address, reason=reason
                )
            else:
                problems.append(reason)
    if failure is not None and not fields:
        if args.json and any(p.startswith("SNMPv3: ") for p in problems):
            print(render_json(target, profile, fields, problems))
        print(failure, file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(render_json(target, profile, fields, problems))  # for programs: not translated
    else:
        print(render_table(target, profile, fields, problems, t))
    if failure is not None:
        print(failure, file=sys.stderr)
        return EXIT_NO_ANSWER
    return EXIT_OK


async def _v3_diagnosis(snmp: SnmpTarget, obs: Observation) -> str | None:
    """Why a failed SNMPv3 poll failed, in the operator's words (see v3diag); None otherwise."""
    if snmp.version is not SnmpVersion.V3 or obs.error is None:
        return None
    if obs.error.kind not in (ErrorKind.TIMEOUT, ErrorKind.AUTH):
        return None
    from .v3diag import diagnose_v3

    diagnosis = await diagnose_v3(snmp)
    return None if diagnosis.ok else diagnosis.message


def cli_probe(args: argparse.Namespace) -> int:
    try:
        device = build_device(args)
    except UsageError as exc:
        print(f"uptimewatch probe: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if device.snmp is not None and device.snmp.priv_key is not None:
        # said once, with the cure, instead of the cipher library's "Ciphering services not available"
        problem = capabilities.missing(capabilities.SNMPV3_PRIVACY)
        if problem is not None:
            print(f"uptimewatch probe: {problem}", file=sys.stderr)
            return EXIT_NO_ANSWER
    catalog: ProfileCatalog | None = None
    if device.snmp is not None:
        try:
            catalog = load_profiles(args.profiles_dir)
        except ProfileError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            return EXIT_PROFILES
        if args.profile != "auto" and args.profile not in catalog:
            known = ", ".join(catalog.names())
            print(f"uptimewatch probe: unknown profile {args.profile!r} (known: {known})", file=sys.stderr)
            return EXIT_NO_ANSWER
    return asyncio.run(_run(args, device, catalog))
