"""MQTT telemetry in: devices that push JSON become observations (``probe="mqtt"``).

One subscriber connection (aiomqtt) to the broker of the ``mqtt`` section subscribes to every
device's ``telemetry.topic``. Each message is decoded by the device's telemetry profile
(:mod:`uptimewatch.profiles.telemetry`) into one :class:`Observation` handed to ``sink``.

* A payload that is not a JSON object is counted ``malformed`` (with its topic) and dropped; one
  whose values have the wrong type yields an observation without them, counted ``partial``.
  Nothing a device sends can stop the subscriber.
* A device silent for ``silent_after`` of its intervals turns unknown: the silence watcher sends
  an observation setting every field the profile feeds to null (so the checks they fed go
  UNKNOWN), then one with a TIMEOUT error ("no telemetry for 3 intervals") that the API shows as
  the probe's last result.
* The connection is an explicit loop: on any broker error, wait (exponential backoff up to
  ``max_reconnect_delay``), connect again and subscribe again.

Labels in the counters come from the configuration only, never from what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from .. import executors, mqtt_session
from ..config.models import Config, MqttBroker, TelemetrySettings
from ..model.checks import TELEMETRY_CHECKS
from ..model.observation import ErrorKind, Observation, ProbeError
from ..profiles.telemetry import (
    TelemetryProfile,
    TelemetryProfileError,
    default_telemetry_dir,
    load_telemetry_profiles,
)
from ..supervisor import Supervisor
from .protocol import Protocol

log = logging.getLogger(__name__)

PROBE: Final = "mqtt"
TelemetryResult = Literal["accepted", "partial", "malformed"]
RESULTS: Final[tuple[TelemetryResult, ...]] = ("accepted", "partial", "malformed")
#: a telemetry message is a handful of readings; anything this large is not one
MAX_PAYLOAD_BYTES: Final = 256 * 1024
INITIAL_RECONNECT_DELAY: Final = 0.5

Sink = Callable[[Observation], None]


@dataclass(frozen=True, slots=True)
class PushDevice:
    """One device that publishes telemetry, as the subscriber needs it."""

    site_id: str
    device_id: str
    topic: str
    profile: str
    interval: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.site_id, self.device_id)


def push_devices(config: Config) -> tuple[PushDevice, ...]:
    """The devices of ``config`` that declare ``telemetry``."""
    return tuple(
        PushDevice(site.id, dev.id, dev.telemetry.topic, dev.telemetry.profile, dev.telemetry.interval)
        for site in config.sites
        for dev in site.devices
        if dev.telemetry is not None
    )


def unknown_profiles(devices: Iterable[PushDevice], profiles: Mapping[str, TelemetryProfile]) -> list[str]:
    """One sentence per device naming a telemetry profile that does not exist."""
    known = ", ".join(sorted(profiles)) or "none"
    return [
        f"site {d.site_id} device {d.device_id}: unknown telemetry profile '{d.profile}' (known: {known})"
        for d in devices
        if d.profile not in profiles
    ]


class _State:
    __slots__ = ("device", "last", "profile", "silent")

    def __init__(self, device: PushDevice, profile: TelemetryProfile, now: float) -> None:
        self.device = device
        self.profile = profile
        self.last = now  # monotonic time of the last message, or of the start
        self.silent = False


class TelemetrySubscriber:
    """Subscribes to the devices' topics and turns their messages into observations."""

    def __init__(
        self,
        broker: MqttBroker,
        settings: TelemetrySettings,
        devices: Iterable[PushDevice],
        profiles: Mapping[str, TelemetryProfile],
        sink: Sink,
        *,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._broker = broker
        self._settings = settings
        self._password = password
        self._sink = sink
        self._clock = clock
        self._wall = wall
        self._by_topic: dict[str, list[_State]] = {}
        self._counts: dict[tuple[str, TelemetryResult], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections = 0  # successful connections so far: a reconnect makes it 2
        self._configure(devices, profiles)

    # -- configuration --------------------------------------------------------------------------

    def _configure(self, devices: Iterable[PushDevice], profiles: Mapping[str, TelemetryProfile]) -> None:
        now = self._clock()
        old = {s.device.key: s for states in self._by_topic.values() for s in states}
        by_topic: dict[str, list[_State]] = {}
        for device in devices:
            profile = profiles.get(device.profile)
            if profile is None:
                continue  # reported by unknown_profiles() before we get here
            state = old.get(device.key)
            if state is not None and state.device.topic == device.topic:
                state.device, state.profile = device, profile
            else:
                state = _State(device, profile, now)
            by_topic.setdefault(device.topic, []).append(state)
        self._by_topic = by_topic

    def connection_settings(self) -> tuple[object, ...]:
        """What a reload must reconnect for when it changes."""
        return (self._broker, self._settings, self._password)

    @property
    def topics(self) -> list[str]:
        return sorted(self._by_topic)

    async def update(self, devices: Iterable[PushDevice], profiles: Mapping[str, TelemetryProfile]) -> None:
        """Apply a reload; a changed set of topics reconnects to subscribe to it."""
        before = set(self._by_topic)
        self._configure(devices, profiles)
        self._wake.set()
        if set(self._by_topic) != before and self._tasks:
            await self.stop()
            await self.start()

    def counts(self) -> dict[tuple[str, str], int]:
        """Messages per (configured topic, result), for ``uptimewatch_telemetry_messages_total``;
        every configured topic has all results, zeros included."""
        out: dict[tuple[str, str], int] = {(t, r): 0 for t in self._by_topic for r in RESULTS}
        for (topic, result), n in self._counts.items():
            if topic in self._by_topic:
                out[(topic, result)] = n
        return out

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        where = f"{self._broker.host}:{self._broker.port}"
        self._tasks = [
            self._supervisor.spawn("telemetry", self._connection_loop, vital=True, context=f"broker {where}"),
            self._supervisor.spawn("telemetry-silence", self._silence_loop, vital=True),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    # -- receiving ------------------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        import aiomqtt

        broker = self._broker
        delay = INITIAL_RECONNECT_DELAY
        while True:
            try:
                client = aiomqtt.Client(
                    broker.host,
                    broker.port,
                    username=broker.username,
                    password=self._password,
                    # the notifiers connect as client_id: a second session under that id would
                    # make the broker drop the first
                    identifier=f"{broker.client_id}-telemetry",
                    keepalive=max(int(broker.keepalive), 1),
                    tls_context=ssl.create_default_context() if broker.tls else None,
                )
                await mqtt_session.enter(client)
                try:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connections += 1
                    self.connected.set()
                    delay = INITIAL_RECONNECT_DELAY
                    log.info(
                        "telemetry: subscribed to %d topic(s) at %s:%d",
                        len(self.topics),
                        broker.host,
                        broker.port,
                    )
                    async for message in client.messages:
                        self.handle(str(message.topic), message.payload)
                finally:
                    await mqtt_session.leave(client)
            except (aiomqtt.MqttError, OSError) as exc:
                self.connected.clear()
                log.warning(
                    "telemetry: broker %s:%d: %s; reconnecting in %.1f s",
                    broker.host,
                    broker.port,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.max_reconnect_delay)

    def handle(self, topic: str, payload: object) -> None:
        """One message: decode, count, hand the observations on. Never raises."""
        states = self._by_topic.get(topic)
        if not states:
            return  # a retained message of a topic dropped by a reload
        started = self._wall()
        data: object = None
        problem = ""
        if isinstance(payload, bytes | bytearray):
            if len(payload) > MAX_PAYLOAD_BYTES:
                problem = f"{len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}"
            else:
                try:
                    data = json.loads(payload)
                except (ValueError, RecursionError) as exc:
                    problem = f"not JSON ({type(exc).__name__})"
        else:
            data = payload
        if not problem and not isinstance(data, dict):
            problem = f"a JSON {type(data).__name__}, not an object"
        if problem:
            self._count(topic, "malformed")
            log.warning("telemetry: malformed payload on topic %s dropped: %s", topic, problem)
            return
        assert isinstance(data, dict)
        now = self._clock()
        partial = False
        for state in states:
            try:
                fields, problems = state.profile.decode(data)
            except Exception:
                log.exception(
                    "telemetry: decoding topic %s with profile %s failed", topic, state.profile.name
                )
                self._count(topic, "malformed")
                return
            partial = partial or bool(problems)
            state.last = now
            state.silent = False
            device = state.device
            self._emit(
                Observation(
                    site_id=device.site_id,
                    device_id=device.device_id,
                    probe=PROBE,
                    started_at=started,
                    duration_s=0.0,
                    fields=fields,
                    problems=tuple(problems),
                    profile=state.profile.name,
                )
            )
        if partial:
            log.info("telemetry: topic %s: some values were unusable and left null", topic)
        self._count(topic, "partial" if partial else "accepted")

    def _count(self, topic: str, result: TelemetryResult) -> None:
        key = (topic, result)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _emit(self, obs: Observation) -> None:
        try:
            self._sink(obs)
        except Exception:
            log.exception(
                "telemetry: observation sink failed for site %s device %s", obs.site_id, obs.device_id
            )

    # -- silence --------------------------------------------------------------------------------

    async def _silence_loop(self) -> None:
        while True:
            self.check_silence()
            states = [s for group in self._by_topic.values() for s in group]
            tick = min((s.device.interval for s in states), default=60.0) / 4
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(tick, 0.05), 5.0)):
                    await self._wake.wait()

    def check_silence(self) -> int:
        """Turn devices silent for ``silent_after`` intervals unknown; returns how many turned."""
        now = self._clock()
        n = self._settings.silent_after
        turned = 0
        for states in self._by_topic.values():
            for state in states:
                device = state.device
                if state.silent or now - state.last < n * device.interval:
                    continue
                state.silent = True
                turned += 1
                started = self._wall()
                words = f"no telemetry for {n} interval{'s' if n != 1 else ''}"
                log.info("telemetry: site %s device %s: %s", device.site_id, device.device_id, words)
                # first the fields become unknown (their checks follow), then the probe's last
                # result says why: the health model keeps an errored probe's fields untouched
                self._emit(
                    Observation(
                        site_id=device.site_id,
                        device_id=device.device_id,
                        probe=PROBE,
                        started_at=started,
                        duration_s=0.0,
                        fields=dict.fromkeys((v.name for v in state.profile.values), None),
                        problems=(words,),
                        profile=state.profile.name,
                    )
                )
                self._emit(
                    Observation(
                        site_id=device.site_id,
                        device_id=device.device_id,
                        probe=PROBE,
                        started_at=started,
                        duration_s=0.0,
                        error=ProbeError(
                            ErrorKind.TIMEOUT,
                            f"{words} of {device.interval:g} s on topic {device.topic}",
                        ),
                        profile=state.profile.name,
                    )
                )
        return turned


def broker_password(broker: MqttBroker, base_dir: Path) -> str | None:
    """The broker password, from ``password`` or ``password_file`` (relative to the config).
    Blocking (file read)."""
    if broker.password is not None:
        return broker.password.get_secret_value()
    if broker.password_file:
        path = Path(broker.password_file)
        path = path if path.is_absolute() else base_dir / path
        return path.read_text(encoding="utf-8").strip()
    return None


def telemetry_profiles_dir(config: Config, source: Path, profiles_dir: Path) -> Path:
    """``telemetry.profiles_dir`` (relative to the config file), else ``<profiles>/telemetry``."""
    configured = config.telemetry.profiles_dir
    if configured is None:
        return default_telemetry_dir(profiles_dir)
    path = Path(configured)
    return path if path.is_absolute() else source.parent / path


def check_telemetry(config: Config, source: Path, profiles_dir: Path) -> dict[str, TelemetryProfile]:
    """The telemetry profiles, after checking that every pushing device can be served.

    Blocking (file reads): the daemon calls it where it loads the configuration, so a bad
    telemetry set-up fails a reload like any other configuration error."""
    from ..config.loader import ConfigError, ConfigIssue

    devices = push_devices(config)
    if not config.telemetry.enabled or not devices:
        return {}
    issues: list[ConfigIssue] = []
    if config.mqtt is None:
        issues.append(
            ConfigIssue(
                str(source), None, None, "mqtt", "telemetry is enabled but there is no mqtt broker section"
            )
        )
    directory = telemetry_profiles_dir(config, source, profiles_dir)
    try:
        profiles = load_telemetry_profiles(directory)
    except TelemetryProfileError as exc:
        issues.extend(ConfigIssue(str(source), None, None, "telemetry", p) for p in exc.problems)
        profiles = {}
    else:
        issues.extend(
            ConfigIssue(str(source), None, None, "telemetry", p) for p in unknown_profiles(devices, profiles)
        )
    if issues:
        raise ConfigError(issues)
    return profiles


@dataclass
class SubscriberPlan:
    """What a reload will do to the subscriber; the files it needs are already read. ``fresh``
    (not started yet) replaces ``current`` when the broker connection changes."""

    current: TelemetrySubscriber | None
    fresh: TelemetrySubscriber | None
    devices: tuple[PushDevice, ...]
    profiles: Mapping[str, TelemetryProfile]
    enabled: bool

    async def commit(self) -> TelemetrySubscriber | None:
        if not self.enabled or self.fresh is not None:
            if self.current is not None:
                await self.current.stop()
            if self.fresh is not None:
                await self.fresh.start()
            return self.fresh
        assert self.current is not None
        await self.current.update(self.devices, self.profiles)
        return self.current

    async def abort(self) -> None:
        """Nothing to give back: a fresh subscriber connects only once committed."""


async def prepare_subscriber(
    current: TelemetrySubscriber | None,
    config: Config,
    source: Path,
    profiles: Mapping[str, TelemetryProfile],
    sink: Sink,
    *,
    supervisor: Supervisor | None = None,
) -> SubscriberPlan:
    """``profiles``: what :func:`check_telemetry` returned when the configuration was loaded.
    Reads the broker's password file (``OSError`` when it cannot)."""
    devices = push_devices(config)
    if not profiles or config.mqtt is None:
        return SubscriberPlan(current, None, devices, profiles, enabled=False)
    try:
        password = await executors.CONFIG.run(broker_password, config.mqtt, source.parent)
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"mqtt.password_file: {exc}") from exc
    if current is not None and current.connection_settings() == (config.mqtt, config.telemetry, password):
        return SubscriberPlan(current, None, devices, profiles, enabled=True)
    fresh = TelemetrySubscriber(
        config.mqtt, config.telemetry, devices, profiles, sink, password=password, supervisor=supervisor
    )
    return SubscriberPlan(current, fresh, devices, profiles, enabled=True)


#: telemetry's registry entry: pushed over MQTT, so never scheduled; its fields feed the checks
PROTOCOL = Protocol("telemetry", TELEMETRY_CHECKS, scheduled=False)
