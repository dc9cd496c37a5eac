"""Several probe nodes as one monitor over NATS JetStream (docs/cluster.md)."""
