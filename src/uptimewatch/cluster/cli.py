"""``uptimewatch cluster status -c FILE``: the cluster as NATS holds it, as a table.

Reads the heartbeats and the leader lease straight from the KV buckets, so it works even when the
node on this host is down. A node is alive when its last heartbeat is younger than
``cluster.node_timeout`` (judged by wall-clock age here: one look has no arrival times).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors

from ..config.cluster import ClusterConfig
from ..config.loader import ConfigError, load_config
from ..probing.registry import RegistryError, installed
from .membership import decode_heartbeat
from .node import LEADER_KEY, LEASES_BUCKET, NODES_BUCKET, _Lease


async def read_status(cfg: ClusterConfig) -> dict[str, Any]:
    nc = await nats.connect(
        servers=list(cfg.nats.servers),
        user=cfg.nats.user,
        password=cfg.nats.password.get_secret_value() if cfg.nats.password else None,
        token=cfg.nats.token.get_secret_value() if cfg.nats.token else None,
        connect_timeout=max(1, round(cfg.nats.connect_timeout)),
        allow_reconnect=False,
        max_reconnect_attempts=0,
    )
    try:
        js = nc.jetstream(timeout=cfg.nats.request_timeout)
        nodes_kv = await js.key_value(NODES_BUCKET)
        try:
            keys = await nodes_kv.keys()
        except nats.js.errors.NoKeysError:
            keys = []
        now = time.time()
        nodes = []
        for key in sorted(keys):
            try:
                entry = await nodes_kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            hb = decode_heartbeat(entry.value or b"")
            if hb is None:
                continue
            nodes.append(
                {
                    "id": hb.id,
                    "alive": now - hb.at <= cfg.node_timeout,
                    "isolated": hb.isolated,
                    "pid": hb.pid,
                    "url": hb.url,
                    "sites": hb.sites,
                    "last_heartbeat": hb.at,
                    "degraded": hb.degraded,
                }
            )
        leader = None
        try:
            leases = await js.key_value(LEASES_BUCKET)
            lease = await leases.get(LEADER_KEY)
            if lease.value:
                holder = msgspec.json.decode(lease.value, type=_Lease)
                alive = {n["id"] for n in nodes if n["alive"]}
                leader = holder.node if holder.node in alive else None
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.BucketNotFoundError):
            pass
        return {"leader": leader, "nodes": nodes}
    finally:
        await nc.close()


def format_table(status: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    header = ("NODE", "ALIVE", "ISOLATED", "PID", "SITES", "LAST HEARTBEAT", "URL")
    rows = [header]
    for n in status["nodes"]:
        mark = "*" if n["id"] == status["leader"] else ""
        stamp = dt.datetime.fromtimestamp(n["last_heartbeat"]).strftime("%H:%M:%S")
        age = f"{stamp} ({now - n['last_heartbeat']:.0f} s ago)"
        rows.append(
            (
                n["id"] + mark,
                "yes" if n["alive"] else "NO",
                "YES" if n["isolated"] else "no",
                str(n["pid"]),
                str(n["sites"]),
                age,
                n["url"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    leader = status["leader"] or "none (no live lease holder)"
    lines.append(f"leader: {leader}" + ("  (* above)" if status["leader"] else ""))
    for n in status["nodes"]:
        if n.get("degraded"):
            lines.append(f"node {n['id']} is DEGRADED: {n['degraded']}")
    return "\n".join(lines)


def cli_cluster_status(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config, probe_models=installed().settings())
    except RegistryError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    cfg = loaded.config.cluster
    if cfg is None:
        print(f"{args.config}: no cluster: section; this daemon runs on its own", file=sys.stderr)
        return 1
    try:
        status = asyncio.run(read_status(cfg))
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        print(f"uptimewatch: cannot read the cluster from NATS: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except nats.js.errors.BucketNotFoundError:
        print("uptimewatch: no node has joined yet (no membership bucket)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
    else:
        print(format_table(status))
    return 0


__all__ = ["cli_cluster_status", "format_table", "read_status"]
