"""ICMP probing against real hosts: loopback addresses and namespaces behind veth pairs."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.netns import NetnsHost
from uptimewatch.config.models import Role, Thresholds
from uptimewatch.config.resolve import BUILTIN, IcmpTarget, ResolvedDevice
from uptimewatch.model.observation import ErrorKind, Observation
from uptimewatch.probing import icmp

NetnsFactory = Callable[[], NetnsHost]
REPO = Path(__file__).resolve().parents[1]


def device(
    host: str, *, count: int = 3, interval: float = 0.01, timeout: float = 1.0, device_id: str | None = None
) -> ResolvedDevice:
    assert BUILTIN.thresholds is not None
    thresholds: Thresholds = BUILTIN.thresholds
    return ResolvedDevice(
        site_id="site-1",
        device_id=device_id or f"dev-{host}",
        role=next(iter(Role)),
        name=host,
        address=host,
        profile="generic",
        interval=60.0,
        timeout=10.0,
        hard_after=3,
        snmp=None,
        icmp=IcmpTarget(host=host, count=count, interval=interval, timeout=timeout, payload_size=56),
        thresholds=thresholds,
    )


def assert_all_answered(obs: Observation, count: int, timeout: float) -> None:
    f = obs.fields
    assert obs.error is None, obs.error
    assert obs.probe == "icmp"
    assert (f["icmp.sent"], f["icmp.received"], f["icmp.loss_ratio"]) == (count, count, 0.0)
    rtt_min, rtt_avg, rtt_max = (
        f["icmp.rtt_min_seconds"],
        f["icmp.rtt_avg_seconds"],
        f["icmp.rtt_max_seconds"],
    )
    assert isinstance(rtt_min, float)
    assert isinstance(rtt_avg, float)
    assert isinstance(rtt_max, float)
    assert 0 < rtt_min <= rtt_avg <= rtt_max <= timeout
    jitter = f["icmp.jitter_seconds"]
    assert isinstance(jitter, float)
    assert 0 <= jitter <= rtt_max - rtt_min


@pytest.fixture
def prober() -> Iterator[icmp.IcmpProber]:
    found = icmp.IcmpProber(icmp.detect_privilege())
    yield found
    found.close()


def test_privilege_is_usable_as_root() -> None:
    found = icmp.detect_privilege()
    if not found.privileged:
        pytest.skip("not root: raw ICMP sockets are not available to this test run")
    assert found.usable
    assert "raw" in found.message


async def test_probers_share_nothing() -> None:
    """Two daemons in one process (tests, the demo) each own their sockets and counters."""
    one, two = icmp.IcmpProber(icmp.detect_privilege()), icmp.IcmpProber(icmp.detect_privilege())
    assert one.pinger is not two.pinger
    both = await asyncio.gather(one.probe(device("127.0.0.1")), two.probe(device("127.0.0.1")))
    for obs in both:
        assert_all_answered(obs, 3, 1.0)
    assert one.pinger.open_sockets() == two.pinger.open_sockets() == 0


async def test_close_stops_bursts_in_flight(prober: icmp.IcmpProber) -> None:
    burst = asyncio.ensure_future(prober.pinger.burst("127.0.0.1", 50, 0.05, 1.0))
    await asyncio.sleep(0.2)
    assert prober.pinger.open_sockets() == 1
    prober.close()
    assert prober.pinger.open_sockets() == 0
    with pytest.raises(icmp.BurstError):
        await burst


async def test_intervals_no_burst_uses_any_more_leave_nothing_on_the_tick(prober: icmp.IcmpProber) -> None:
    """The socket stays open while one long burst runs, as it does in a daemon that always has
    bursts in flight; bursts of forty other intervals (a reload that changed them all) come and go,
    and answer, and the tick keeps no queue for an interval nobody waits on."""
    pinger = prober.pinger
    long_one = asyncio.ensure_future(pinger.burst("127.0.0.1", 40, 0.05, 1.0))
    await asyncio.sleep(0.05)
    intervals = [0.01 + i / 1000 for i in range(40)]
    results = await asyncio.gather(
        *(pinger.burst(f"127.0.1.{i + 1}", 2, interval, 1.0) for i, interval in enumerate(intervals))
    )
    assert [r.received for r in results] == [2] * len(intervals)
    await asyncio.sleep(0.2)  # a tick or two after the last of them expired
    (channel,) = pinger._channels.values()
    assert pinger.open_sockets() == 1
    assert set(channel._due) <= {0.05, 1.0}
    assert (await long_one).received == 40


async def test_loopback_addresses_concurrently(prober: icmp.IcmpProber) -> None:
    hosts = ["127.0.0.1"] + [f"127.0.0.{i}" for i in range(2, 51)]
    results = await asyncio.gather(*(prober.probe(device(h)) for h in hosts))
    for host, obs in zip(hosts, results, strict=True):
        assert obs.device_id == f"dev-{host}"
        assert_all_answered(obs, 3, 1.0)
    # the shared socket closes once nothing is in flight
    assert prober.pinger.in_flight() == 0


async def test_ipv6_loopback(prober: icmp.IcmpProber) -> None:
    obs = await prober.probe(device("::1", count=2))
    assert_all_answered(obs, 2, 1.0)


async def test_unresolvable_name_is_unreachable_not_an_exception(prober: icmp.IcmpProber) -> None:
    obs = await prober.probe(device("nonexistent.invalid"))
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.UNREACHABLE
    assert "nonexistent.invalid" in obs.error.message
    assert obs.fields == {}


async def test_device_without_icmp_is_an_error_result(prober: icmp.IcmpProber) -> None:
    dev = device("127.0.0.1")
    obs = await prober.probe(replace(dev, icmp=None))
    assert obs.error is not None
    assert obs.error.kind is ErrorKind.INTERNAL


def test_fields_of_a_burst() -> None:
    fields = icmp.burst_fields(4, [0.010, 0.014, 0.012])
    assert fields["icmp.loss_ratio"] == 0.25
    assert fields["icmp.rtt_min_seconds"] == 0.010
    assert fields["icmp.rtt_max_seconds"] == 0.014
    assert fields["icmp.rtt_avg_seconds"] == pytest.approx(0.012)
    assert fields["icmp.jitter_seconds"] == pytest.approx((0.004 + 0.002) / 2)
    one = icmp.burst_fields(3, [0.01])
    assert one["icmp.jitter_seconds"] is None
    assert one["icmp.loss_ratio"] == pytest.approx(2 / 3)
    none = icmp.burst_fields(3, [])
    assert none["icmp.loss_ratio"] == 1.0
    assert none["icmp.rtt_avg_seconds"] is None
    assert none["icmp.jitter_seconds"] is None


async def test_observation_round_trip(prober: icmp.IcmpProber) -> None:
    obs = await prober.probe(device("127.0.0.1", count=2))
    assert obs.error is None
    back = Observation.from_dict(obs.to_dict())
    assert back == obs
    lost = Observation.from_dict(
        Observation(
            site_id="s",
            device_id="d",
            probe="icmp",
            started_at=1.0,
            duration_s=1.0,
            fields=icmp.burst_fields(3, []),
        ).to_dict()
    )
    assert lost.fields["icmp.loss_ratio"] == 1.0
    assert lost.fields["icmp.rtt_min_seconds"] is None


# -- namespaces ----------------------------------------------------------------------------------


@pytest.mark.root
async def test_namespace_host_answers(netns_host: NetnsFactory, prober: icmp.IcmpProber) -> None:
    host = netns_host()
    obs = await prober.probe(device(host.address, count=5))
    assert_all_answered(obs, 5, 1.0)


@pytest.mark.root
async def test_lossy_host(netns_host: NetnsFactory, prober: icmp.IcmpProber) -> None:
    host = netns_host()
    host.set_loss(30)
    # 300 requests, 30 % dropped: outside 15..45 % has probability 1.6e-8 (binomial tails)
    obs = await prober.probe(device(host.address, count=300, interval=0.002, timeout=0.5))
    assert obs.error is None
    assert obs.fields["icmp.sent"] == 300
    loss = obs.fields["icmp.loss_ratio"]
    assert isinstance(loss, float)
    assert 0.15 <= loss <= 0.45
    host.set_loss(0)
    assert_all_answered(await prober.probe(device(host.address, count=5)), 5, 1.0)


@pytest.mark.root
async def test_dead_host_is_total_loss_not_an_error(
    netns_host: NetnsFactory, prober: icmp.IcmpProber
) -> None:
    host = netns_host()
    host.link_down()
    obs = await prober.probe(device(host.address, count=3, timeout=0.3))
    assert obs.error is None
    f = obs.fields
    assert (f["icmp.sent"], f["icmp.received"], f["icmp.loss_ratio"]) == (3, 0, 1.0)
    assert f["icmp.rtt_min_seconds"] is None
    assert f["icmp.rtt_avg_seconds"] is None
    assert f["icmp.rtt_max_seconds"] is None
    assert f["icmp.jitter_seconds"] is None
    host.link_up()
    assert_all_answered(await prober.probe(device(host.address)), 3, 1.0)


@pytest.mark.root
async def test_dead_and_live_hosts_do_not_delay_each_other(
    netns_host: NetnsFactory, prober: icmp.IcmpProber
) -> None:
    dead, live = netns_host(), netns_host()
    dead.link_down()
    obs_dead, obs_live = await asyncio.gather(
        prober.probe(device(dead.address, timeout=0.3)), prober.probe(device(live.address, timeout=0.3))
    )
    assert obs_dead.fields["icmp.loss_ratio"] == 1.0
    assert_all_answered(obs_live, 3, 0.3)


# An echo responder inside the namespace, standing in for the kernel's: it answers every request,
# but those to argv[1] alternately from argv[1] and from argv[2], the namespace's second address.
_RESPONDER = r"""
import socket, struct, sys
address, alt = sys.argv[1], sys.argv[2]

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

listen = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
senders = {}
for source in (address, alt):
    senders[source] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    senders[source].bind((source, 0))
print("ready", flush=True)
answered = 0
while True:
    packet, (peer, _) = listen.recvfrom(4096)
    ihl = (packet[0] & 0x0F) * 4
    dst = socket.inet_ntoa(packet[16:20])
    if packet[ihl] != 8:
        continue
    ident, seq = struct.unpack_from("!HH", packet, ihl + 4)
    payload = packet[ihl + 8:]
    if dst == address:
        answered += 1
        source = address if answered % 2 else alt
    else:
        source = dst
    reply = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + payload
    reply = reply[:2] + struct.pack("!H", checksum(reply)) + reply[4:]
    senders[source].sendto(reply, (peer, 0))
"""


@asynccontextmanager
async def responder(host: NetnsHost) -> AsyncIterator[None]:
    host.run("sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
    proc = await asyncio.create_subprocess_exec(
        *host.exec_argv(sys.executable, "-c", _RESPONDER, host.address, host.alt_address),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"ready\n"
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.root
async def test_reply_from_another_address_is_not_counted(
    netns_host: NetnsFactory, prober: icmp.IcmpProber
) -> None:
    host = netns_host()
    async with responder(host):
        # control: replies sourced from the second address do reach us when they are due
        assert_all_answered(await prober.probe(device(host.alt_address, count=2)), 2, 1.0)
        # requests 1 and 3 are answered by the right host, 2 and 4 by the other address with
        # the right identifier and sequence: only the first ones may count
        obs = await prober.probe(device(host.address, count=4, interval=0.02, timeout=0.5))
    assert obs.error is None
    assert (obs.fields["icmp.sent"], obs.fields["icmp.received"]) == (4, 2)
    assert obs.fields["icmp.loss_ratio"] == 0.5


# Unprivileged datagram ICMP, exercised where net.ipv4.ping_group_range (a per-namespace
# setting) allows it: inside a test namespace, pinging its own loopback.
_DGRAM_PROBE = r"""
import asyncio, json
from uptimewatch.probing.icmp import Pinger, detect_privilege

async def main():
    found = detect_privilege()
    pinger = Pinger(privileged=False)
    out = {"privilege": [found.privileged, found.usable]}
    for address in ("127.0.0.1", "::1"):
        result = await pinger.burst(address, 3, 0.01, 1.0)
        out[address] = [result.sent, result.received, min(result.rtts, default=0.0)]
    print(json.dumps(out))

asyncio.run(main())
"""


async def run_without_raw_sockets(host: NetnsHost, script: str) -> Any:
    """``script``'s JSON output, run inside ``host``'s namespace as root without CAP_NET_RAW."""
    proc = await asyncio.create_subprocess_exec(
        *host.exec_argv(
            "setpriv", "--inh-caps=-all", "--bounding-set=-net_raw", sys.executable, "-c", script
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,  # the script imports this module
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    return json.loads(stdout)


@pytest.mark.root
async def test_unprivileged_datagram_sockets(netns_host: NetnsFactory) -> None:
    host = netns_host()
    host.run("sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
    result = await run_without_raw_sockets(host, _DGRAM_PROBE)
    assert result["privilege"] == [False, True]  # no raw sockets, datagram ones work
    for address in ("127.0.0.1", "::1"):
        sent, received, rtt_min = result[address]
        assert (sent, received) == (3, 3), address
        assert rtt_min > 0


_NO_SOCKET_PROBE = r"""
import asyncio, json
from uptimewatch.probing import icmp
from tests.test_icmp import device

found = icmp.detect_privilege()
obs = asyncio.run(icmp.IcmpProber(found).probe(device("127.0.0.1")))
print(json.dumps({"usable": found.usable, "message": found.message, "error": obs.to_dict()["error"]}))
"""


@pytest.mark.root
async def test_no_icmp_socket_is_reported_clearly(netns_host: NetnsFactory) -> None:
    host = netns_host()
    host.run("sysctl", "-q", "-w", "net.ipv4.ping_group_range=1 0")  # nobody may use datagram ICMP
    result = await run_without_raw_sockets(host, _NO_SOCKET_PROBE)
    assert result["usable"] is False
    assert "CAP_NET_RAW" in result["message"]
    assert "ping_group_range = 1 0" in result["message"]
    assert result["error"] == {"kind": "permission", "message": result["message"]}
