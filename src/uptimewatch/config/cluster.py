"""The ``cluster:`` section: several probe nodes as one monitor over NATS JetStream.

Without this section the daemon is one process, exactly as before, and needs no NATS. The code that
runs a node lives in :mod:`uptimewatch.cluster`; this is only the schema, beside the other sections.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ..primitives import Duration

_ID = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"  # no dots: node ids are KV keys and subject tokens


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSettings(_Strict):
    """How a node reaches the NATS cluster (JetStream enabled) that the nodes share."""

    servers: list[str] = Field(
        min_length=1,
        description="NATS URLs (`nats://host:4222`); list every server of the NATS cluster.",
    )
    user: str | None = Field(default=None, description="User name, when the servers ask for one.")
    password: SecretStr | None = Field(default=None, description="Password; never logged.")
    token: SecretStr | None = Field(default=None, description="Authentication token; never logged.")
    replicas: int = Field(
        default=3,
        ge=1,
        le=5,
        description="Replicas of the KV buckets and the observation stream (3 on a 3-server cluster).",
    )
    connect_timeout: Duration = Field(default=2.0, gt=0, description="Timeout of one connection attempt.")
    request_timeout: Duration = Field(
        default=2.0, gt=0, description="Timeout of one JetStream request (publish, KV read or write)."
    )
    stream_max_age: Duration = Field(
        default=3600.0, gt=0, description="How long the observation stream keeps observations."
    )


class ClusterConfig(_Strict):
    """This node's place among the probe nodes. Every node has the same file except ``node_id``
    (use `${UPTIMEWATCH_NODE}` with the `uptimewatch@.service` template unit)."""

    node_id: str = Field(pattern=_ID, description="Stable id of this node, unique in the cluster.")
    url: str | None = Field(
        default=None,
        description="This node's base URL as the others and the operators reach it; "
        "default http://`server.listen`.",
    )
    nats: NatsSettings = Field(description="The NATS cluster the nodes share.")
    vantage_points: int | None = Field(
        default=None,
        ge=1,
        le=9,
        description="How many nodes poll each site; default 2 when at least 2 nodes are alive, else 1.",
    )
    quorum: int | None = Field(
        default=None,
        ge=1,
        le=9,
        description="How many healthy vantage points must see a device down before it counts as down; "
        "default a majority of `vantage_points`. Fewer healthy vantage points lower it to their number.",
    )
    heartbeat_interval: Duration = Field(
        default=2.0, gt=0, description="How often a node writes its heartbeat (and renews its lease)."
    )
    node_timeout: Duration = Field(
        default=10.0, gt=0, description="A node whose heartbeat is older than this is gone."
    )
    leader_timeout: Duration = Field(
        default=15.0,
        gt=0,
        description="A leader that has not renewed its lease for this long is replaced.",
    )
    join_grace: Duration = Field(
        default=10.0,
        ge=0,
        description="A node that joins gets sites only after being alive this long, so flaps do not "
        "reshuffle the province. Dead nodes' sites move at once.",
    )
    canaries: list[str] = Field(
        default_factory=list,
        description="Addresses this node pings to check its own uplink (the NOC router, a public "
        "resolver). A node that reaches none of its canaries, no other node and no NATS server is "
        "isolated: its verdicts count as unknown.",
    )

    @model_validator(mode="after")
    def _orders(self) -> ClusterConfig:
        if self.heartbeat_interval * 2 > self.node_timeout:
            raise ValueError("node_timeout must be at least twice heartbeat_interval")
        if self.heartbeat_interval * 2 > self.leader_timeout:
            raise ValueError("leader_timeout must be at least twice heartbeat_interval")
        if self.quorum is not None and self.vantage_points is not None and self.quorum > self.vantage_points:
            raise ValueError("quorum cannot exceed vantage_points")
        return self


__all__ = ["ClusterConfig", "NatsSettings"]
