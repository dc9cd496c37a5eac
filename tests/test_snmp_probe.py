"""The SNMP probe's control flow: detection, the match cache, errors as data.

Recordings are served by a small in-process transport that answers like an agent (GET, walk),
because the cases here need what a frozen snmpsim cannot do: a device swapped for another under
the same address, a transport that fails. Through a real agent: test_snmp_probe_snmpsim.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.test_profiles import _arcs, copy_profiles, read_snmprec
from uptimewatch.config.models import Role, SnmpVersion
from uptimewatch.config.resolve import BUILTIN, ResolvedDevice, SnmpTarget
from uptimewatch.model.observation import ErrorKind, ProbeError
from uptimewatch.probing.snmp import ProfileMatchCache, probe
from uptimewatch.probing.snmp_types import SnmpResponse, SnmpType, Varbind
from uptimewatch.profiles import ProfileCatalog, load_profiles


@dataclass
class RecordingTransport:
    """Answers from a recording; ``stem`` can be changed to swap the device behind the address."""

    stem: str
    fail: ProbeError | None = None
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    async def get(self, target: SnmpTarget, oids: Sequence[str]) -> SnmpResponse:
        self.calls.append(("get", tuple(oids)))
        if self.fail:
            return SnmpResponse(error=self.fail, requests=2)
        rec = read_snmprec(self.stem)
        return SnmpResponse(
            varbinds=tuple(rec.get(o, Varbind(o, SnmpType.NO_SUCH_OBJECT, None)) for o in oids), requests=1
        )

    async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
        self.calls.append(("walk", (root,)))
        if self.fail:
            return SnmpResponse(error=self.fail, requests=2)
        rec = read_snmprec(self.stem)
        rows = sorted((o for o in rec if o.startswith(root + ".")), key=_arcs)
        return SnmpResponse(varbinds=tuple(rec[o] for o in rows), requests=1)

    async def close(self) -> None:
        pass


def device(profile: str = "auto") -> ResolvedDevice:
    assert BUILTIN.thresholds is not None
    target = SnmpTarget(
        host="127.0.0.1",
        port=161,
        version=SnmpVersion.V2C,
        community=SecretStr("cetpower"),
        user=None,
        auth_protocol=None,
        auth_key=None,
        priv_protocol=None,
        priv_key=None,
        context="",
        timeout=1.0,
        retries=0,
        max_repetitions=25,
        max_rows=10_000,
        max_requests=200,
    )
    return ResolvedDevice(
        site_id="s1",
        device_id="ups1",
        role=Role.POWER,
        name="ups1",
        address="127.0.0.1",
        profile=profile,
        interval=60.0,
        timeout=10.0,
        hard_after=3,
        snmp=target,
        icmp=None,
        thresholds=BUILTIN.thresholds,
    )


@pytest.fixture(scope="module")
def catalog() -> ProfileCatalog:
    return load_profiles()


def _gets(transport: RecordingTransport) -> list[tuple[str, ...]]:
    return [oids for kind, oids in transport.calls if kind == "get"]


async def test_auto_detects_and_caches(catalog: ProfileCatalog) -> None:
    transport = RecordingTransport("cetpower")
    cache = ProfileMatchCache(rematch_after=2)
    obs = await probe(device(), catalog, transport, cache)
    assert obs.ok
    assert obs.probe == "snmp"
    assert obs.profile == "generic-host,ups-mib"
    assert obs.fields["power.battery_minutes_remaining"] == 6000
    assert obs.fields["power.on_battery"] is False
    assert obs.site_id == "s1"
    assert obs.device_id == "ups1"
    assert _gets(transport)[0] == catalog.probe_oids  # detection first
    assert len(_gets(transport)) == 2  # detection, then every scalar in one GET

    transport.calls.clear()
    await probe(device(), catalog, transport, cache)
    assert len(_gets(transport)) == 1  # cached: no detection
    await probe(device(), catalog, transport, cache)
    transport.calls.clear()
    await probe(device(), catalog, transport, cache)  # rematch_after=2 polls used up
    assert _gets(transport)[0] == catalog.probe_oids


async def test_rematches_when_sys_object_id_changes(tmp_path: Path) -> None:
    catalog = load_profiles(copy_profiles(tmp_path))  # generic-host and ups-mib: no router profile
    transport = RecordingTransport("cetpower")
    cache = ProfileMatchCache()
    assert (await probe(device(), catalog, transport, cache)).profile == "generic-host,ups-mib"
    transport.stem = "iosxe_asr920"  # a router now answers at that address
    obs = await probe(device(), catalog, transport, cache)
    assert obs.profile == "generic-host"
    assert obs.fields["device.sys_object_id"] == "1.3.6.1.4.1.9.1.2102"
    assert "power.battery_minutes_remaining" not in obs.fields
    assert cache.profile_names(device()) == ["generic-host"]


async def test_explicit_profile_skips_detection(catalog: ProfileCatalog) -> None:
    transport = RecordingTransport("netvision-rfc")
    obs = await probe(device("ups-mib"), catalog, transport)
    assert obs.profile == "generic-host,ups-mib"
    assert catalog.probe_oids not in _gets(transport)
    assert obs.fields["power.battery_current_amps"] is None


async def test_unknown_profile_is_an_error(catalog: ProfileCatalog) -> None:
    obs = await probe(device("no-such"), catalog, RecordingTransport("cetpower"))
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.INTERNAL
    assert "no-such" in obs.error.message


@pytest.mark.parametrize("kind", [ErrorKind.TIMEOUT, ErrorKind.AUTH])
async def test_transport_error_keeps_its_kind(catalog: ProfileCatalog, kind: ErrorKind) -> None:
    transport = RecordingTransport("cetpower", fail=ProbeError(kind, "nothing"))
    obs = await probe(device(), catalog, transport, ProfileMatchCache())
    assert not obs.ok
    assert obs.error == ProbeError(kind, "nothing")
    assert obs.fields == {}


async def test_answer_without_any_field_is_no_such_object(catalog: ProfileCatalog) -> None:
    # a generator controller holds no UPS-MIB object: every ups-mib field is unknown
    only_ups = ProfileCatalog([catalog.get("ups-mib")])
    obs = await probe(device("ups-mib"), only_ups, RecordingTransport("himoinsa-gensets"))
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.NO_SUCH_OBJECT
    assert "ups-mib" in obs.error.message


async def test_walk_failure_is_a_problem_not_an_error(catalog: ProfileCatalog) -> None:
    class FlakyWalks(RecordingTransport):
        async def walk(self, target: SnmpTarget, root: str) -> SnmpResponse:
            if root.startswith("1.3.6.1.2.1.31."):
                return SnmpResponse(error=ProbeError(ErrorKind.TIMEOUT, "no answer"), requests=2)
            return await super().walk(target, root)

    obs = await probe(device(), catalog, FlakyWalks("netvision-rfc"))
    assert obs.ok
    assert obs.fields["if.oper_up[2]"] is True
    assert "if.name[2]" not in obs.fields  # rows are known only from the tables that answered
    assert "walk of 1.3.6.1.2.1.31.1.1.1.1 failed: timeout: no answer" in obs.problems


async def test_cache_clear_forces_detection(catalog: ProfileCatalog) -> None:
    transport = RecordingTransport("cetpower")
    cache = ProfileMatchCache()
    await probe(device(), catalog, transport, cache)
    assert len(cache) == 1
    cache.clear()
    transport.calls.clear()
    await probe(device(), catalog, transport, cache)
    assert _gets(transport)[0] == catalog.probe_oids
