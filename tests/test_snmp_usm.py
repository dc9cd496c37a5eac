"""SNMPv3 on the fast path (``probing/usm.py`` under ``probing/snmp_fast.py``), differentially: against
Debian's net-snmp ``snmpd`` with a user per auth x priv protocol the configuration accepts
(``tests/fixtures/snmpd.py``), and against the pysnmp transport on the same agent. Same values,
same problems, for GET and walk; wrong keys, unknown users, the wrong level, an agent whose engine
changed under us and a stale clock. Then what only a hostile agent shows: unsigned responses, forged
digests and unsigned time reports, from an agent written here with the module under test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any, cast

import pytest
from pydantic import SecretStr

from tests.fixtures.snmpd import AUTH_KEY, PRIV_KEY, Snmpd, V3User, all_users, user_name
from uptimewatch.config.models import AuthProtocol, PrivProtocol, SnmpVersion
from uptimewatch.config.resolve import SnmpTarget
from uptimewatch.model.observation import ErrorKind
from uptimewatch.probing import ber, usm
from uptimewatch.probing.snmp_fast import FastSnmpTransport
from uptimewatch.probing.snmp_transport import PysnmpTransport
from uptimewatch.probing.snmp_types import SnmpResponse, SnmpType

#: what snmpd answers the same way twice: the system group's constants and its engine's
STABLE_OIDS = (
    "1.3.6.1.2.1.1.1.0",  # sysDescr
    "1.3.6.1.2.1.1.2.0",  # sysObjectID
    "1.3.6.1.2.1.1.5.0",  # sysName
    "1.3.6.1.2.1.1.7.0",  # sysServices
    "1.3.6.1.6.3.10.2.1.1.0",  # snmpEngineID
    "1.3.6.1.6.3.10.2.1.4.0",  # snmpEngineMaxMessageSize
)
SYSTEM = "1.3.6.1.2.1.1"
USERS = {u.name: u for u in all_users()}


def v3_target(agent: Snmpd, v3user: V3User, /, **overrides: Any) -> SnmpTarget:
    values: dict[str, Any] = {
        "host": agent.host,
        "port": agent.port,
        "version": SnmpVersion.V3,
        "community": None,
        "user": v3user.name,
        "auth_protocol": v3user.auth,
        "auth_key": SecretStr(v3user.auth_key) if v3user.auth_key else None,
        "priv_protocol": v3user.priv,
        "priv_key": SecretStr(v3user.priv_key) if v3user.priv_key else None,
        "context": "",
        "timeout": 1.0,
        "retries": 1,
        "max_repetitions": 5,  # a walk of the system group takes several GETBULKs
        "max_rows": 10_000,
        "max_requests": 200,
    }
    values.update(overrides)
    return SnmpTarget(**values)


def rows(resp: SnmpResponse) -> list[tuple[str, SnmpType, object]]:
    """A response's varbinds, the ones that tick (sysUpTime, engine time) without their value."""
    return [(vb.oid, vb.type, None if vb.type is SnmpType.TIMETICKS else vb.value) for vb in resp.varbinds]


@pytest.fixture
async def fast() -> AsyncIterator[FastSnmpTransport]:
    t = FastSnmpTransport()
    yield t
    await t.close()


@pytest.fixture
async def pysnmp() -> AsyncIterator[PysnmpTransport]:
    t = PysnmpTransport()
    yield t
    await t.close()


async def both(
    fast: FastSnmpTransport, pysnmp: PysnmpTransport, target: SnmpTarget, oids: tuple[str, ...] = STABLE_OIDS
) -> tuple[SnmpResponse, SnmpResponse]:
    return await fast.get(target, oids), await pysnmp.get(target, oids)


# -- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "ku", "kul"),
    [  # RFC 3414 A.3.1 and A.3.2: password "maplesyrup", engine ID 00..02
        (AuthProtocol.MD5, "9faf3283884e92834ebc9847d8edd963", "526f5eed9fcce26f8964c2930787d82b"),
        (
            AuthProtocol.SHA,
            "9fb5cc0381497b3793528939ff788d5d79145211",
            "6695febc9288e36282235fc7151f128497b38f3f",
        ),
    ],
)
def test_keys_match_the_rfc_3414_vectors(auth: AuthProtocol, ku: str, kul: str) -> None:
    engine_id = bytes.fromhex("000000000000000000000002")
    assert usm.password_to_key(auth, b"maplesyrup").hex() == ku
    creds = usm.credentials("u", auth, "maplesyrup", None, None)
    keys = usm.localize(creds, engine_id)
    # the localized key is the HMAC key: the digest of a message is that HMAC, truncated
    from cryptography.hazmat.primitives import hashes, hmac

    mac = hmac.HMAC(bytes.fromhex(kul), hashes.MD5() if auth is AuthProtocol.MD5 else hashes.SHA1())
    mac.update(b"a message")
    assert keys.sign(b"a ", b"message") == mac.finalize()[:12]


@pytest.mark.parametrize("priv", list(PrivProtocol))
@pytest.mark.parametrize("auth", list(AuthProtocol))
def test_localized_keys_match_pysnmp(auth: AuthProtocol, priv: PrivProtocol) -> None:
    """Key derivation, localization and the AES-192/256 key extension agree with pysnmp's."""
    from pysnmp.entity import config as lcd
    from pysnmp.proto.rfc1902 import OctetString

    from uptimewatch.probing.snmp_transport import _AUTH, _PRIV

    engine_id = bytes.fromhex("80001f8880e9630000d61ff449")
    creds = usm.credentials("u", auth, AUTH_KEY, priv, PRIV_KEY)
    auth_service, priv_service = lcd.AUTH_SERVICES[_AUTH[auth]], lcd.PRIV_SERVICES[_PRIV[priv]]
    assert creds.auth_master == bytes(auth_service.hash_passphrase(AUTH_KEY.encode()))
    assert creds.priv_master == bytes(priv_service.hash_passphrase(_AUTH[auth], PRIV_KEY.encode()))
    keys = usm.localize(creds, engine_id)
    theirs = bytes(priv_service.localize_key(_AUTH[auth], creds.priv_master, OctetString(engine_id)))
    ours = keys._priv_key
    assert ours == theirs[: len(ours)]
    auth_key = bytes(auth_service.localize_key(creds.auth_master, OctetString(engine_id)))
    for secret in (auth_key.hex(), ours.hex(), creds.auth_master.hex()):
        assert secret not in repr(keys)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="may not be empty"):
        usm.credentials("u", AuthProtocol.SHA, "", None, None)


# -- against snmpd, beside pysnmp -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(USERS))
async def test_get_matches_pysnmp(
    snmpd: Snmpd, fast: FastSnmpTransport, pysnmp: PysnmpTransport, name: str
) -> None:
    ours, theirs = await both(fast, pysnmp, v3_target(snmpd, USERS[name]))
    assert ours.error is None, ours.error
    assert theirs.error is None, theirs.error
    assert len(ours.varbinds) == len(STABLE_OIDS)
    assert ours.varbinds == theirs.varbinds
    assert ours.requests == theirs.requests == 1
    engine_id = ours.varbinds[4].value
    assert isinstance(engine_id, bytes)
    assert fast._agents[(snmpd.host, snmpd.port)].engine.engine_id == engine_id


@pytest.mark.parametrize("name", list(USERS))
async def test_walk_matches_pysnmp(
    snmpd: Snmpd, fast: FastSnmpTransport, pysnmp: PysnmpTransport, name: str
) -> None:
    target = v3_target(snmpd, USERS[name])
    ours, theirs = await fast.walk(target, SYSTEM), await pysnmp.walk(target, SYSTEM)
    assert ours.error is None, ours.error
    assert theirs.error is None, theirs.error
    assert len(ours.varbinds) > 10  # the system group and its sysORTable
    assert rows(ours) == rows(theirs)
    assert ours.requests == theirs.requests > 1
    assert ours.problems == theirs.problems == ()


@pytest.mark.parametrize("priv", [None, *PrivProtocol])
@pytest.mark.parametrize("auth", list(AuthProtocol))
async def test_wrong_auth_key_reads_the_same(
    snmpd: Snmpd,
    fast: FastSnmpTransport,
    pysnmp: PysnmpTransport,
    auth: AuthProtocol,
    priv: PrivProtocol | None,
) -> None:
    target = v3_target(snmpd, USERS[user_name(auth, priv)], auth_key=SecretStr("not-the-auth-key"))
    ours, theirs = await both(fast, pysnmp, target)
    assert ours.error is not None
    assert ours.error == theirs.error
    assert ours.error.kind is ErrorKind.AUTH
    assert ours.error.message.startswith("wrong auth key (")
    assert ours.varbinds == ()


@pytest.mark.parametrize("priv", list(PrivProtocol))
async def test_wrong_priv_key_reads_the_same(
    snmpd: Snmpd, fast: FastSnmpTransport, pysnmp: PysnmpTransport, priv: PrivProtocol
) -> None:
    """snmpd cannot parse what the wrong privacy key made of the request, and drops it unanswered:
    a timeout on both transports, in the same words."""
    target = v3_target(
        snmpd,
        USERS[user_name(AuthProtocol.SHA, priv)],
        priv_key=SecretStr("not-the-priv-key"),
        timeout=0.3,
        retries=1,
    )
    ours, theirs = await both(fast, pysnmp, target)
    assert ours.error is not None
    assert ours.error == theirs.error
    assert ours.requests == theirs.requests == 2


@pytest.mark.parametrize(
    ("name", "overrides", "words"),
    [
        (user_name(AuthProtocol.SHA, PrivProtocol.AES), {"user": "intruder"}, "unknown SNMPv3 user ("),
        (user_name(None, None), {"user": "intruder"}, "unknown SNMPv3 user ("),
        # authPriv asked of an authNoPriv user, authNoPriv of a noAuthNoPriv one
        (
            user_name(AuthProtocol.SHA, None),
            {"priv_protocol": PrivProtocol.AES, "priv_key": SecretStr(PRIV_KEY)},
            "unsupported security level (",
        ),
        (
            user_name(None, None),
            {"auth_protocol": AuthProtocol.SHA, "auth_key": SecretStr(AUTH_KEY)},
            "unsupported security level (",
        ),
        # a context snmpd does not have: it drops the request unanswered
        (
            user_name(AuthProtocol.SHA, PrivProtocol.AES),
            {"context": "elsewhere", "timeout": 0.3},
            "no response from ",
        ),
    ],
)
async def test_rejections_read_the_same(  # noqa: PLR0917 - fixtures and parameters
    snmpd: Snmpd,
    fast: FastSnmpTransport,
    pysnmp: PysnmpTransport,
    name: str,
    overrides: dict[str, Any],
    words: str,
) -> None:
    target = v3_target(snmpd, USERS[name], **overrides)
    ours, theirs = await both(fast, pysnmp, target)
    assert ours.error is not None
    assert ours.error == theirs.error
    assert ours.error.message.startswith(words)
    walked, walked_theirs = await fast.walk(target, SYSTEM), await pysnmp.walk(target, SYSTEM)
    assert walked.error == walked_theirs.error == ours.error


async def test_one_transport_many_users_and_wrong_keys_at_once(snmpd: Snmpd, fast: FastSnmpTransport) -> None:
    """Every user of the agent, a wrong key set beside each good one, all concurrently on a fresh
    transport: one engine discovery for all of them, every answer its own."""
    good = [v3_target(snmpd, u) for u in USERS.values() if u.auth_key]
    bad = [replace(t, auth_key=SecretStr("an-older-auth-key")) for t in good]
    results = await asyncio.gather(
        *(fast.get(t, STABLE_OIDS[:2]) for pair in zip(good, bad, strict=True) for t in pair)
    )
    assert [r.error is None for r in results] == [True, False] * len(good)
    assert all(r.error.message.startswith("wrong auth key") for r in results[1::2] if r.error)
    assert fast.stats.requests == 1 + 2 * len(good)  # one discovery
    assert fast.stats.responses == fast.stats.requests


async def test_secrets_never_reach_errors_or_logs(
    snmpd: Snmpd, fast: FastSnmpTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="uptimewatch")
    user = USERS[user_name(AuthProtocol.SHA256, PrivProtocol.AES256)]
    wrong = {"auth_key": SecretStr("wrong-auth-secret"), "priv_key": SecretStr("wrong-priv-secret")}
    messages = []
    for overrides in ({}, {"auth_key": wrong["auth_key"]}, {"priv_key": wrong["priv_key"]}):
        target = v3_target(snmpd, user, timeout=0.3, retries=0, **overrides)
        resp = await fast.get(target, STABLE_OIDS)
        messages.append(resp.error.message if resp.error else "")
    text = caplog.text + "\n".join(messages) + repr(fast._credentials) + repr(fast._local_keys)
    for secret in (AUTH_KEY, PRIV_KEY, "wrong-auth-secret", "wrong-priv-secret"):
        assert secret not in text


# -- engines that change under us -----------------------------------------------------------------

ONE_USER = V3User("resync", AuthProtocol.SHA, "resync-auth-key", PrivProtocol.AES, "resync-priv-key")


@pytest.fixture
def lone_agent() -> Iterator[Snmpd]:
    with Snmpd([ONE_USER], engine_id="uwatch-first") as agent:
        yield agent


async def test_another_engine_at_the_same_address_is_discovered_again(
    lone_agent: Snmpd, fast: FastSnmpTransport, pysnmp: PysnmpTransport
) -> None:
    """The device was replaced (or its agent's engine ID reconfigured): the agent reports our
    engine ID unknown, and the fast path learns the new one and asks again. (pysnmp's transport,
    holding the old engine, times out there; a fresh one answers as we do.)"""
    target = v3_target(lone_agent, ONE_USER)
    first, first_theirs = await both(fast, pysnmp, target)
    assert first.error is None
    assert first_theirs.error is None
    lone_agent.stop()
    second_agent = Snmpd([ONE_USER], engine_id="uwatch-second")
    second_agent.port = lone_agent.port
    with second_agent:
        before = fast.stats.requests
        ours = await fast.get(target, STABLE_OIDS)
        assert ours.error is None, ours.error
        fresh = PysnmpTransport()
        try:
            theirs = await fresh.get(target, STABLE_OIDS)
        finally:
            await fresh.close()
        assert ours.varbinds == theirs.varbinds
        assert ours.varbinds[4].value != first.varbinds[4].value  # snmpEngineID
        assert fast.stats.requests == before + 2  # the report, then the GET with the new keys


async def test_a_stale_clock_is_resynchronized(lone_agent: Snmpd, fast: FastSnmpTransport) -> None:
    """Our idea of the agent's boots and time drifted out of its 150-second window (a reboot we
    missed, a suspended host): snmpd's signed notInTimeWindow report resets it, and the GET is
    sent again. A walk carries on the same way."""
    target = v3_target(lone_agent, ONE_USER)
    assert (await fast.get(target, STABLE_OIDS)).error is None
    engine = fast._agents[(lone_agent.host, lone_agent.port)].engine
    boots, engine_time = engine.boots, engine.time
    for drift in ({"boots": boots + 3}, {"time": engine_time + 10_000}):
        for name, value in drift.items():
            setattr(engine, name, value)
        before = fast.stats.requests
        resp = await fast.get(target, STABLE_OIDS)
        assert resp.error is None, resp.error
        assert fast.stats.requests == before + 2
        assert engine.boots == boots
        assert abs(engine.time - engine_time) < 60
    engine.time += 10_000
    walked = await fast.walk(target, SYSTEM)
    assert walked.error is None
    assert len(walked.varbinds) > 10


async def test_no_agent_times_out_in_discovery(fast: FastSnmpTransport) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        target = SnmpTarget(**{**v3_target_fields(), "port": port})
        resp = await fast.get(target, STABLE_OIDS)
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.TIMEOUT
    assert resp.requests == 2
    assert fast.stats.requests == 2  # discovery, twice; nothing else was sent


def v3_target_fields() -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": 161,
        "version": SnmpVersion.V3,
        "community": None,
        "user": ONE_USER.name,
        "auth_protocol": ONE_USER.auth,
        "auth_key": SecretStr(ONE_USER.auth_key or ""),
        "priv_protocol": ONE_USER.priv,
        "priv_key": SecretStr(ONE_USER.priv_key or ""),
        "context": "",
        "timeout": 0.2,
        "retries": 1,
        "max_repetitions": 5,
        "max_rows": 100,
        "max_requests": 10,
    }


# -- a hostile agent ------------------------------------------------------------------------------

ENGINE = bytes.fromhex("80001f8804686f7374696c65")


class _Hostile(asyncio.DatagramProtocol):
    """Answers discovery as an agent must, then every request as ``mode`` says."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.transport: asyncio.DatagramTransport | None = None
        self.keys = usm.localize(
            usm.credentials(
                ONE_USER.name, ONE_USER.auth, ONE_USER.auth_key, ONE_USER.priv, ONE_USER.priv_key
            ),
            ENGINE,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = usm.decode_message(data)
        assert self.transport is not None
        if not msg.engine_id:
            self.transport.sendto(self._report(msg.msg_id, usm.UNKNOWN_ENGINE_ID, 0), addr)
            return
        if self.mode == "unsigned-time-report":
            self.transport.sendto(self._report(msg.msg_id, usm.NOT_IN_TIME_WINDOW, 0, boots=9), addr)
            return
        flags = 0 if self.mode == "unsigned-response" else usm.AUTH | usm.PRIV
        pdu = ber.tlv(
            ber.RESPONSE,
            ber.tlv(ber.INTEGER, msg.msg_id.to_bytes(4, "big"))
            + ber.tlv(ber.INTEGER, b"\x00") * 2
            + ber.tlv(
                ber.SEQUENCE,
                b"".join(
                    ber.encode_varbind((ber.parse_oid(oid), ber.OCTET_STRING, b"forged"))
                    for oid in STABLE_OIDS
                ),
            ),
        )
        reply = usm.encode_message(
            msg_id=msg.msg_id,
            flags=flags,
            engine_id=ENGINE,
            boots=1,
            engine_time=100,
            user=ONE_USER.name.encode(),
            scoped_pdu=usm.scoped_pdu(ENGINE, b"", pdu),
            keys=self.keys,
            salt=7,
        )
        if self.mode == "forged-digest":
            # one bit of the encrypted PDU flipped: the digest no longer matches the message
            reply = reply[:-1] + bytes((reply[-1] ^ 0x01,))
        self.transport.sendto(reply, addr)

    def _report(self, msg_id: int, number: int, flags: int, boots: int = 1) -> bytes:
        oid = (*usm.USM_STATS, number, 0)
        pdu = ber.tlv(
            usm.REPORT,
            ber.tlv(ber.INTEGER, msg_id.to_bytes(4, "big"))
            + ber.tlv(ber.INTEGER, b"\x00") * 2
            + ber.tlv(ber.SEQUENCE, ber.encode_varbind((oid, ber.COUNTER32, 1))),
        )
        return usm.encode_message(
            msg_id=msg_id,
            flags=flags,
            engine_id=ENGINE,
            boots=boots,
            engine_time=100,
            user=b"",
            scoped_pdu=usm.scoped_pdu(ENGINE, b"", pdu),
        )


@pytest.fixture
async def hostile(request: pytest.FixtureRequest) -> AsyncIterator[tuple[_Hostile, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Hostile(request.param), local_addr=("127.0.0.1", 0)
    )
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


@pytest.mark.parametrize("hostile", ["signed"], indirect=True)
async def test_the_hostile_agent_speaks_usm(hostile: tuple[_Hostile, int], fast: FastSnmpTransport) -> None:
    """The test agent itself is sound: signed and encrypted, its answer is taken."""
    resp = await fast.get(SnmpTarget(**{**v3_target_fields(), "port": hostile[1]}), STABLE_OIDS)
    assert resp.error is None, resp.error
    assert {vb.value for vb in resp.varbinds} == {b"forged"}


@pytest.mark.parametrize("hostile", ["unsigned-response"], indirect=True)
async def test_an_unsigned_response_to_an_authpriv_request_is_dropped(
    hostile: tuple[_Hostile, int], fast: FastSnmpTransport
) -> None:
    resp = await fast.get(SnmpTarget(**{**v3_target_fields(), "port": hostile[1]}), STABLE_OIDS)
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.TIMEOUT
    assert resp.varbinds == ()
    assert fast.stats.malformed == 2  # both attempts' answers


@pytest.mark.parametrize("hostile", ["forged-digest"], indirect=True)
async def test_a_response_failing_its_digest_is_an_auth_error(
    hostile: tuple[_Hostile, int], fast: FastSnmpTransport
) -> None:
    resp = await fast.get(SnmpTarget(**{**v3_target_fields(), "port": hostile[1]}), STABLE_OIDS)
    assert resp.error is not None
    assert resp.error.kind is ErrorKind.AUTH
    assert resp.error.message.startswith("wrong auth key (response failed authentication) (")
    assert resp.varbinds == ()


@pytest.mark.parametrize("hostile", ["unsigned-time-report"], indirect=True)
async def test_an_unsigned_time_report_moves_no_clock(
    hostile: tuple[_Hostile, int], fast: FastSnmpTransport
) -> None:
    target = SnmpTarget(**{**v3_target_fields(), "port": hostile[1]})
    resp = await fast.get(target, STABLE_OIDS)
    assert resp.error is not None
    assert resp.error.message.startswith("not in time window (")
    assert fast._agents[("127.0.0.1", hostile[1])].engine.boots == 1  # not the report's 9
    assert fast.stats.requests == 2  # discovery, the GET: no resend on an unsigned report
