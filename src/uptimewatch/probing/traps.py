"""SNMP traps and informs in: a notification from a known device re-polls that device at once.

Notifications only say "look now": the poll that follows reads the device's real state, so a lost
trap costs one interval and a forged one costs one poll. Hence the rules here are about whom to
listen to, never about what a trap claims:

* the UDP source address must be a configured device address, checked before pysnmp decodes
  anything (unknown senders cost a dict lookup);
* v1/v2c notifications need one of the configured communities, v3 ones a configured user with
  the right keys. A device sends v3 traps as the authoritative engine, with its own engine ID:
  a configured user's keys are localized to a sender's engine ID the first time that sender is
  seen, so operators configure users, not engine IDs;
* informs are acknowledged by pysnmp's notification receiver;
* one re-poll per device per ``min_repoll_interval``, so a flapping link is no poll storm.

Every datagram ends in one of the counters ``accepted``, ``unknown_source``, ``bad_credentials``
or ``malformed``; v3 discovery exchanges (informs start with one) are not notifications and are
not counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from .. import executors
from ..config.models import AuthProtocol, Config, PrivProtocol, TrapSettings, TrapUser
from ..config.resolve import ResolvedDevice

log = logging.getLogger(__name__)

TrapResult = Literal["accepted", "unknown_source", "bad_credentials", "malformed"]
RESULTS: Final[tuple[TrapResult, ...]] = ("accepted", "unknown_source", "bad_credentials", "malformed")
Severity = Literal["info", "warning", "critical"]

SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"


@dataclass(frozen=True, slots=True)
class KnownTrap:
    """A notification that warrants a re-poll, with the name logs show."""

    oid: str
    name: str
    severity: Severity | None = None
    source: str = "standard"  # the profile that named it, or "standard"


#: Notifications every device may send whose meaning changes what a poll would read.
STANDARD_TRAPS: Final[Mapping[str, KnownTrap]] = {
    t.oid: t
    for t in (
        KnownTrap("1.3.6.1.6.3.1.1.5.1", "coldStart", "warning"),
        KnownTrap("1.3.6.1.6.3.1.1.5.2", "warmStart", "warning"),
        KnownTrap("1.3.6.1.6.3.1.1.5.3", "linkDown", "critical"),
        KnownTrap("1.3.6.1.6.3.1.1.5.4", "linkUp", "info"),
        KnownTrap("1.3.6.1.2.1.33.2.1", "upsTrapOnBattery", "critical"),
        KnownTrap("1.3.6.1.2.1.33.2.3", "upsTrapAlarmEntryAdded", "warning"),
        KnownTrap("1.3.6.1.2.1.33.2.4", "upsTrapAlarmEntryRemoved", "info"),
    )
}


@dataclass(frozen=True, slots=True)
class TrapEvent:
    """One accepted notification from one configured device."""

    source: str
    site_id: str
    device_id: str
    trap_oid: str | None
    name: str | None  # None: not a notification we know
    version: str  # "1", "2c" or "3"
    inform: bool
    repolled: bool


Trigger = Callable[[str, str], object]
OnTrap = Callable[[TrapEvent], None]

_MP_VERSION: Final = {0: "1", 1: "2c", 3: "3"}
_V2C_COUNTERS: Final = ("snmpInBadCommunityNames",)
_USM_BAD: Final = (
    "usmStatsUnsupportedSecLevels",
    "usmStatsNotInTimeWindows",
    "usmStatsUnknownUserNames",
    "usmStatsWrongDigests",
    "usmStatsDecryptionErrors",
)
_USM_DISCOVERY: Final = "usmStatsUnknownEngineIDs"
#: engine IDs a single source address may make us learn; a device has one, a few cover re-imaging
_MAX_ENGINES_PER_SOURCE: Final = 4


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _ip_key(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


async def device_sources(devices: Iterable[ResolvedDevice]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Source IP -> the (site, device) keys polled at it. Host names are resolved once, here."""
    out: dict[str, list[tuple[str, str]]] = {}
    for device in devices:
        key = _ip_key(device.address)
        keys = [key] if key is not None else []
        if key is None:
            try:
                infos = await executors.getaddrinfo(device.address, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning(
                    "traps: cannot resolve %s of site %s device %s: %s; its traps will be dropped",
                    device.address,
                    device.site_id,
                    device.device_id,
                    exc,
                )
                continue
            keys = [k for info in infos if (k := _ip_key(str(info[4][0]))) is not None]
        for k in dict.fromkeys(keys):
            out.setdefault(k, []).append(device.key)
    return {k: tuple(v) for k, v in out.items()}


class TrapReceiver:
    """Receives notifications on one UDP socket and re-polls the devices that sent them.

    ``trigger(site_id, device_id)`` starts the re-poll (the scheduler's ``trigger``); ``on_trap``
    hears of every accepted notification. Use :meth:`start` and :meth:`stop`; :meth:`update`
    swaps in a reloaded configuration (a changed socket or credentials restart the receiver).
    """

    def __init__(
        self,
        settings: TrapSettings,
        devices: Sequence[ResolvedDevice],
        trigger: Trigger,
        *,
        known_traps: Mapping[str, KnownTrap] | None = None,
        on_trap: OnTrap | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._devices = tuple(devices)
        self._trigger = trigger
        self._known: Mapping[str, KnownTrap] = {**STANDARD_TRAPS, **(known_traps or {})}
        self._on_trap = on_trap
        self._clock = clock
        self._sources: dict[str, tuple[tuple[str, str], ...]] = {}
        self._last_repoll: dict[tuple[str, str], float] = {}
        self._counts: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self._engine: Any = None
        self._masters: dict[str, tuple[Any, Any, Any, Any]] = {}  # user -> auth id, key, priv id, key
        self._learned: dict[str, set[bytes]] = {}  # source -> engine IDs learned from it
        self._current: dict[str, Any] = {}
        self._accepted = False
        self._sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        """Bind the socket (``OSError`` if it cannot be) and start receiving; ``sock``: receive on
        this bound socket instead (a reload hands over the running receiver's)."""
        self._sources = await device_sources(self._devices)
        self._masters = await executors.CONFIG.run(_master_keys, self._settings.v3_users)
        self._engine = await executors.CONFIG.run(_new_engine)
        try:
            self._setup_engine(sock)
        except BaseException:
            self._close_engine()
            raise
        log.info(
            "traps: listening on udp %s:%d (%d device addresses, %d communities, %d v3 users)",
            *(self.address or ("?", 0)),
            len(self._sources),
            len(self._settings.communities),
            len(self._settings.v3_users),
        )

    async def stop(self) -> None:
        self._close_engine()

    async def update(
        self,
        settings: TrapSettings,
        devices: Sequence[ResolvedDevice],
        known_traps: Mapping[str, KnownTrap] | None = None,
    ) -> None:
        """Apply a reloaded configuration."""
        restart = settings != self._settings
        self._devices = tuple(devices)
        self._known = {**STANDARD_TRAPS, **(known_traps or {})}
        if restart:
            await self.stop()
            self._settings = settings
            self._learned.clear()
            await self.start()
        else:
            self._sources = await device_sources(self._devices)
        wanted = {d.key for d in self._devices}
        for key in [k for k in self._last_repoll if k not in wanted]:
            del self._last_repoll[key]

    def counts(self) -> dict[str, int]:
        """Notifications received since start, by outcome (for ``uptimewatch_traps_received_total``)."""
        return dict(self._counts)

    # -- pysnmp set-up ----------------------------------------------------------------------------

    def shared_socket(self) -> socket.socket | None:
        """A duplicate of the bound socket, for a successor on the same address: it receives
        on it at once, and the port is never free between the two."""
        return self._sock.dup() if self._sock is not None and self._engine is not None else None

    def carry_over(self, old: TrapReceiver) -> None:
        """Keep the counters (they are Prometheus counters) and the re-poll times of ``old``."""
        self._counts = old._counts
        self._last_repoll.update(old._last_repoll)

    def _setup_engine(self, given: socket.socket | None = None) -> None:
        from pysnmp.carrier.asyncio.dgram import udp, udp6
        from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
        from pysnmp.entity import config as lcd
        from pysnmp.entity.rfc3413 import ntfrcv

        engine = self._engine
        loop = asyncio.get_running_loop()
        dispatcher = AsyncioDispatcher(loop=loop)
        # pysnmp's own receive callback sits under a private id; ours (the default id) sees every
        # datagram first and hands on only those from configured devices
        engine.register_transport_dispatcher(dispatcher, "uptimewatch-pysnmp")
        dispatcher.register_recv_callback(self._on_datagram)

        host, port = split_listen(self._settings.listen)
        v6 = ":" in host
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if given is not None:
            sock = given
            sock.setblocking(False)
        else:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
        self._sock = sock
        self.address = (host, int(sock.getsockname()[1]))
        transport_cls = udp6.Udp6AsyncioTransport if v6 else udp.UdpAsyncioTransport
        domain = udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME
        lcd.add_transport(engine, domain, transport_cls(loop=loop).open_server_mode(sock=sock))

        for index, community in enumerate(self._settings.communities):
            lcd.add_v1_system(engine, f"trap-c{index}", community.get_secret_value())
        for user in self._settings.v3_users:
            self._add_user(user.user, None)  # informs: this receiver is the authoritative engine
        ntfrcv.NotificationReceiver(engine, self._on_notification)
        engine.observer.register_observer(self._on_request, "rfc3412.receiveMessage:request")

        builder = engine.get_mib_builder()
        self._v2c_counters = builder.import_symbols("__SNMPv2-MIB", *_V2C_COUNTERS)
        self._usm_bad = builder.import_symbols("__SNMP-USER-BASED-SM-MIB", *_USM_BAD)
        (self._usm_discovery,) = builder.import_symbols("__SNMP-USER-BASED-SM-MIB", _USM_DISCOVERY)

    def _add_user(self, name: str, engine_id: bytes | None) -> None:
        from pysnmp.entity import config as lcd
        from pysnmp.proto import rfc1902

        auth_id, auth_master, priv_id, priv_master = self._masters[name]
        extra: dict[str, Any] = {}
        if engine_id is not None:
            extra["securityEngineId"] = rfc1902.OctetString(engine_id)
        lcd.add_v3_user(
            self._engine,
            name,
            auth_id,
            auth_master,
            priv_id,
            priv_master,
            authKeyType=lcd.USM_KEY_TYPE_MASTER,
            privKeyType=lcd.USM_KEY_TYPE_MASTER,
            **extra,
        )

    def _close_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            if engine.transport_dispatcher is not None:
                engine.transport_dispatcher.unregister_recv_callback(None)
                engine.close_dispatcher()
        except Exception:
            log.exception("traps: closing the receiver failed")
        if self._sock is not None:
            self._sock.close()  # pysnmp may or may not have; closing twice is harmless
            self._sock = None
        self.address = None

    # -- receiving --------------------------------------------------------------------------------

    def _on_datagram(self, dispatcher: Any, domain: Any, address: Any, message: bytes) -> None:
        # called by pysnmp from the socket's callback: what escapes here would go unseen, and a
        # receiver that raises on one datagram must still take the next
        try:
            self._receive(domain, address, message)
        except Exception:
            self._counts["malformed"] += 1
            log.exception("traps: handling a datagram from %s failed", address[0] if address else "?")

    def _receive(self, domain: Any, address: Any, message: bytes) -> None:
        source = _ip_key(str(address[0])) or str(address[0])
        keys = self._sources.get(source)
        if keys is None:
            self._counts["unknown_source"] += 1
            log.debug("traps: dropped a datagram from %s, which is no configured device", source)
            return
        engine = self._engine
        if engine is None:
            return
        before = self._snapshot()
        discovery = int(self._usm_discovery.syntax)
        self._accepted = False
        self._current = {"source": source, "keys": keys}
        try:
            engine.message_dispatcher.receive_message(engine, domain, address, message)
            if not self._accepted and self._bad(before) and self._learn(source, message):
                # the sender's engine ID is new to us: its keys are localized now, so try again
                before = self._snapshot()
                engine.message_dispatcher.receive_message(engine, domain, address, message)
        except Exception as exc:
            log.debug("traps: cannot process a datagram from %s: %s", source, type(exc).__name__)
        finally:
            self._current = {}
        if self._accepted:
            return
        if self._bad(before):
            self._counts["bad_credentials"] += 1
            # which community or key was wrong stays unsaid: it would put secrets in the log
            log.debug("traps: dropped a notification from %s: wrong community or SNMPv3 credentials", source)
        elif int(self._usm_discovery.syntax) == discovery:
            self._counts["malformed"] += 1
            log.debug("traps: dropped a malformed or unexpected datagram from %s", source)

    def _snapshot(self) -> tuple[int, ...]:
        return tuple(int(c.syntax) for c in (*self._v2c_counters, *self._usm_bad))

    def _bad(self, before: tuple[int, ...]) -> bool:
        return self._snapshot() != before

    def _learn(self, source: str, message: bytes) -> bool:
        """Localize a configured user's keys to the engine ID of a v3 trap's sender."""
        header = _v3_sender(message)
        if header is None:
            return False
        engine_id, user = header
        if user not in self._masters or not 5 <= len(engine_id) <= 32:
            return False
        learned = self._learned.setdefault(source, set())
        if engine_id in learned or len(learned) >= _MAX_ENGINES_PER_SOURCE:
            return False
        learned.add(engine_id)
        self._add_user(user, engine_id)
        log.debug("traps: SNMPv3 user %s now accepted from engine %s at %s", user, engine_id.hex(), source)
        return True

    def _on_request(self, engine: Any, execpoint: str, variables: Mapping[str, Any], ctx: Any) -> None:
        self._current["mp"] = variables.get("messageProcessingModel")
        pdu = variables.get("pdu")
        self._current["inform"] = pdu is not None and pdu.tagSet == _inform_tag()

    def _on_notification(  # noqa: PLR0917 (pysnmp calls it positionally)
        self,
        engine: Any,
        state_reference: Any,
        context_engine_id: Any,
        context_name: Any,
        varbinds: Sequence[tuple[Any, Any]],
        ctx: Any,
    ) -> None:
        current = self._current
        keys: tuple[tuple[str, str], ...] = current.get("keys", ())
        if not keys:
            return
        self._accepted = True
        self._counts["accepted"] += 1
        trap_oid = next((str(value) for name, value in varbinds if str(name) == SNMP_TRAP_OID), None)
        known = self._known.get(trap_oid) if trap_oid else None
        wanted = known is not None or self._settings.repoll == "any"
        version = _MP_VERSION.get(int(current.get("mp") or 0), "?")
        inform = bool(current.get("inform"))
        now = self._clock()
        for site_id, device_id in keys:
            repolled = False
            if wanted:
                last = self._last_repoll.get((site_id, device_id))
                if last is None or now - last >= self._settings.min_repoll_interval:
                    self._last_repoll[(site_id, device_id)] = now
                    try:
                        self._trigger(site_id, device_id)
                        repolled = True
                    except Exception:
                        log.exception("traps: re-polling site %s device %s failed", site_id, device_id)
            log.info(
                "traps: %s %s from site %s device %s (SNMPv%s)%s",
                "inform" if inform else "trap",
                known.name if known else (trap_oid or "without snmpTrapOID"),
                site_id,
                device_id,
                version,
                ": re-polling" if repolled else "",
            )
            if self._on_trap is not None:
                self._on_trap(
                    TrapEvent(
                        current.get("source", ""),
                        site_id,
                        device_id,
                        trap_oid,
                        known.name if known else None,
                        version,
                        inform,
                        repolled,
                    )
                )


def _inform_tag() -> Any:
    from pysnmp.proto.api import v2c

    return v2c.InformRequestPDU.tagSet


def _new_engine() -> Any:
    # loads the engine's MIB modules: tens of milliseconds, so it runs in a thread
    from pysnmp.entity.engine import SnmpEngine

    return SnmpEngine()


def _master_keys(users: Sequence[TrapUser]) -> dict[str, tuple[Any, Any, Any, Any]]:
    """RFC 3414 password-to-key for every user: a megabyte of hashing per key, done once."""
    from pysnmp.entity import config as lcd

    from .snmp_transport import _AUTH, _PRIV

    out: dict[str, tuple[Any, Any, Any, Any]] = {}
    for user in users:
        auth_id, priv_id = lcd.USM_AUTH_NONE, lcd.USM_PRIV_NONE
        auth_master = priv_master = None
        if user.auth_key is not None:
            auth_id = _AUTH[user.auth_protocol or AuthProtocol.SHA]
            auth_master = lcd.AUTH_SERVICES[auth_id].hash_passphrase(
                user.auth_key.get_secret_value().encode()
            )
        if user.priv_key is not None:
            priv_id = _PRIV[user.priv_protocol or PrivProtocol.AES]
            priv_master = lcd.PRIV_SERVICES[priv_id].hash_passphrase(
                auth_id, user.priv_key.get_secret_value().encode()
            )
        out[user.user] = (auth_id, auth_master, priv_id, priv_master)
    return out


def _v3_sender(message: bytes) -> tuple[bytes, str] | None:
    """(msgAuthoritativeEngineID, msgUserName) of an SNMPv3 message, or None."""
    from pyasn1.codec.ber import decoder
    from pyasn1.error import PyAsn1Error
    from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    try:
        msg, _ = decoder.decode(message, asn1Spec=SNMPv3Message())
        params, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        engine_id = bytes(params["msgAuthoritativeEngineId"])
        user = bytes(params["msgUserName"]).decode("utf-8", "replace")
    except (PyAsn1Error, ValueError, TypeError):
        return None
    return engine_id, user


def profile_traps(directory: str | Path) -> dict[str, KnownTrap]:
    """The ``traps:`` of every profile in ``directory``: trap OIDs are vendor-unique, so one table
    serves all devices. Blocking (file reads); files the profile loader rejects are skipped here,
    that loader reports them."""
    from pydantic import ValidationError

    from ..profiles import profile_files
    from ..profiles._yaml import load_yaml
    from ..profiles.schema import ProfileSpec

    out: dict[str, KnownTrap] = {}
    for path in profile_files([directory]):
        try:
            raw, problems = load_yaml(path.read_text(encoding="utf-8"))
            if problems:
                continue
            spec = ProfileSpec.model_validate(raw)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError):
            continue
        for trap in spec.traps:
            out[trap.oid] = KnownTrap(trap.oid, trap.name, trap.severity, spec.name)
    return out


@dataclass
class ReceiverPlan:
    """What a reload will do to the receiver, with everything that can fail already done:
    ``fresh`` is started and bound (or None: no new receiver), ``update`` applies to the running one."""

    current: TrapReceiver | None
    fresh: TrapReceiver | None
    settings: TrapSettings
    devices: Sequence[ResolvedDevice]
    known: Mapping[str, KnownTrap]

    async def commit(self) -> TrapReceiver | None:
        """Cannot fail: swap the receivers (or update the running one)."""
        if not self.settings.enabled:
            if self.current is not None:
                await self.current.stop()
                log.info("traps: receiver stopped (traps.enabled is false)")
            return None
        if self.fresh is None:
            assert self.current is not None
            await self.current.update(self.settings, self.devices, self.known)
            return self.current
        if self.current is not None:
            self.fresh.carry_over(self.current)
            await self.current.stop()
        return self.fresh

    async def abort(self) -> None:
        if self.fresh is not None:
            await self.fresh.stop()


async def prepare_receiver(
    current: TrapReceiver | None,
    config: Config,
    devices: Sequence[ResolvedDevice],
    profiles_dir: Path,
    trigger: Trigger,
) -> ReceiverPlan:
    """Acquire what the configuration needs before anything changes: a receiver whose socket
    changes is started now, beside the running one (``OSError`` if the port cannot be bound)."""
    settings = config.traps
    if not settings.enabled:
        return ReceiverPlan(current, None, settings, devices, {})
    known = await executors.CONFIG.run(profile_traps, profiles_dir)
    if current is not None and settings == current._settings:
        return ReceiverPlan(current, None, settings, devices, known)
    fresh = TrapReceiver(settings, devices, trigger, known_traps=known)
    same_address = current is not None and current._settings.listen == settings.listen
    sock = current.shared_socket() if current is not None and same_address else None
    try:
        await fresh.start(sock)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise OSError(
            exc.errno, f"traps: cannot listen on udp {settings.listen}: {exc.strerror or exc}"
        ) from exc
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return ReceiverPlan(current, fresh, settings, devices, known)
