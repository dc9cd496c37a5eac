"""The cluster's pure parts: sharding, membership, the vantage merge and the wire codec."""

from __future__ import annotations

import msgspec
import pytest

from uptimewatch.cluster import codec, sharding
from uptimewatch.cluster.membership import Heartbeat, MemberTable
from uptimewatch.cluster.quorum import VantageMerge
from uptimewatch.model.observation import ErrorKind, Observation, ProbeError

SITES = [f"site-{i:04d}" for i in range(2000)]


def test_rendezvous_moves_only_the_sites_that_touch_the_new_node() -> None:
    three = sharding.assign(SITES, ["a", "b", "c"], 1)
    four = sharding.assign(SITES, ["a", "b", "c", "d"], 1)
    moved = sharding.moved(three, four)
    assert all(four[s] == ("d",) for s in moved)  # every moved site went to the newcomer
    assert 0.2 < len(moved) / len(SITES) < 0.3  # about a quarter


def test_a_dead_nodes_sites_go_to_the_others_and_no_other_site_moves() -> None:
    before = sharding.assign(SITES, ["a", "b", "c"], 2)
    after = sharding.assign(SITES, ["a", "c"], 2)
    for site in SITES:
        if "b" not in before[site]:
            assert set(after[site]) == set(before[site])
        assert set(after[site]) == {"a", "c"}


def test_vantage_points_and_quorum_defaults() -> None:
    assert sharding.vantage_points(None, 1) == 1
    assert sharding.vantage_points(None, 3) == 2
    assert sharding.vantage_points(3, 2) == 2
    assert sharding.quorum(None, 2) == 2
    assert sharding.quorum(None, 3) == 2
    assert sharding.quorum(3, 2) == 2


def _hb(node: str, at: float, started: float = 0.0, isolated: bool = False) -> Heartbeat:
    return Heartbeat(id=node, pid=1, url="", started_at=started, at=at, seq=int(at), isolated=isolated)


def test_membership_times_heartbeats_on_the_local_clock() -> None:
    table = MemberTable(node_timeout=10, join_grace=30)
    table.update(_hb("a", at=1000.0), mono_now=50.0, wall_now=1000.0)
    table.update(_hb("old", at=900.0), mono_now=50.0, wall_now=1000.0)  # a dead node's last key
    views = {v.id: v for v in table.views(mono_now=55.0, wall_now=1005.0)}
    assert views["a"].alive
    assert not views["old"].alive
    # the same beat again is no sign of life, however skewed the sender's clock
    table.update(_hb("a", at=1000.0), mono_now=70.0, wall_now=1020.0)
    assert not {v.id: v for v in table.views(mono_now=70.0, wall_now=1020.0)}["a"].alive


def test_join_grace_holds_back_newcomers_but_not_a_cold_start() -> None:
    table = MemberTable(node_timeout=10, join_grace=30)
    table.update(_hb("a", at=100.0, started=95.0), mono_now=0.0, wall_now=100.0)
    table.update(_hb("b", at=100.0, started=96.0), mono_now=0.0, wall_now=100.0)
    assert all(v.eligible for v in table.views(mono_now=0.0, wall_now=100.0))  # nobody is older
    table.update(_hb("a", at=140.0, started=95.0), mono_now=40.0, wall_now=140.0)
    table.update(_hb("b", at=140.0, started=96.0), mono_now=40.0, wall_now=140.0)
    table.update(_hb("c", at=140.0, started=139.0), mono_now=40.0, wall_now=140.0)
    eligible = {v.id for v in table.views(mono_now=40.0, wall_now=140.0) if v.eligible}
    assert eligible == {"a", "b"}


def _obs(node_error: ErrorKind | None, at: float) -> Observation:
    return Observation(
        "s1",
        "bts",
        "snmp",
        at,
        0.1,
        {} if node_error else {"x": 1},
        ProbeError(node_error, "no answer") if node_error else None,
    )


def test_one_vantage_point_alone_cannot_take_a_site_down() -> None:
    merge = VantageMerge()
    kw = {"pollers": ("a", "b"), "healthy": {"a", "b"}, "quorum": 2, "max_age": 60.0}
    assert merge.offer("a", _obs(None, 99.0), now=99.0, **kw) is not None  # the lead's round
    assert merge.offer("b", _obs(None, 100.0), now=100.0, **kw) is None  # not the lead's round
    out = merge.offer("a", _obs(ErrorKind.TIMEOUT, 101.0), now=101.0, **kw)
    assert out is not None
    assert out.ok
    assert [d.silent for d in merge.disagreements()] == [("a",)]
    merge.offer("b", _obs(ErrorKind.TIMEOUT, 102.0), now=102.0, **kw)
    out = merge.offer("a", _obs(ErrorKind.TIMEOUT, 103.0), now=103.0, **kw)
    assert out is not None
    assert out.error is not None
    assert out.error.message == "2 of 2 probe nodes: no answer"
    assert merge.disagreements() == []


def test_an_isolated_node_does_not_vote_and_a_lone_healthy_one_decides() -> None:
    merge = VantageMerge()
    kw = {"pollers": ("a", "b"), "healthy": {"b"}, "quorum": 2, "max_age": 60.0}
    assert merge.offer("a", _obs(ErrorKind.TIMEOUT, 100.0), now=100.0, **kw) is None
    out = merge.offer("b", _obs(ErrorKind.TIMEOUT, 101.0), now=101.0, **kw)
    assert out is not None
    assert out.error is not None
    assert out.error.message.startswith("1 of 1 probe nodes")


def test_codec_round_trip_and_rejects_garbage() -> None:
    fields = {"power.on_battery": True, "v": 53.5}
    obs = Observation("s.1", "ups", "snmp", 1.5, 0.25, fields, None, ("p",), "x")
    other = Observation("s.2", "bts", "icmp", 2.0, 0.1, {"loss": float("nan")}, None, (), None)
    node, count, back = codec.decode(codec.encode("n1", [obs, other]))
    assert (node, count) == ("n1", 2)
    assert back == [obs, msgspec.structs.replace(other, fields={"loss": None})]  # NaN is not news
    assert codec.decode(codec.encode("n2", [])) == ("n2", 0, [])
    # a node's own batch read back is counted, not decoded
    assert codec.decode(codec.encode("n1", [obs, other]), skip_node="n1") == ("n1", 2, [])
    assert codec.decode(codec.encode("n1", [obs]), skip_node="n2")[2] == [obs]
    with pytest.raises(codec.CodecError):
        codec.decode(b"\x93\x01\x02")
    wire = msgspec.msgpack.decode(codec.encode("n1", [obs, other]))
    wire[1][1][2] = 7  # one observation's probe is not text: the batch is refused whole
    with pytest.raises(codec.CodecError):
        codec.decode(msgspec.msgpack.encode(wire))
    assert codec.subject("n.1") == "uptimewatch.obs.n%2E1"


def test_a_batch_too_large_for_one_message_is_split_and_loses_nothing() -> None:
    big = {f"if.{i}.rx_level": -40.5 - i for i in range(60)}  # a radio's long table: ~1.5 kB
    batch = [Observation(f"s{i}", "odu", "snmp", float(i), 0.1, big, None, (), "x") for i in range(100)]
    whole = codec.encode("n1", batch)
    limit = len(whole) // 5
    chunks = codec.encode_within("n1", batch, limit)
    assert len(chunks) > 1
    assert all(len(data) <= limit for _, data in chunks)
    back = [obs for _, data in chunks for obs in codec.decode(data)[2]]
    assert back == batch
    assert [count for count, _ in chunks] == [codec.decode(data)[1] for _, data in chunks]
    assert codec.encode_within("n1", batch, len(whole)) == [(100, whole)]
    # one observation alone over the limit stays one message (NATS refuses it, counted as lost)
    assert codec.encode_within("n1", batch[:1], 10) == [(1, codec.encode("n1", batch[:1]))]
