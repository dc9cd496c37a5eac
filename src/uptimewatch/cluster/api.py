"""``GET /api/v1/cluster``: the nodes as this node sees them, the leader, and where they disagree."""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web

from .node import ClusterNode

NODE_KEY: Final[web.AppKey[ClusterNode]] = web.AppKey("cluster_node", ClusterNode)


async def cluster_status(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return web.json_response(node.status(), dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def cluster_sites(request: web.Request) -> web.Response:
    """Which nodes poll each site, best first (the first is its primary)."""
    node = request.app[NODE_KEY]
    owners = {site: list(nodes) for site, nodes in sorted(node.owners().items())}
    return web.json_response({"node": node.node_id, "count": len(owners), "sites": owners})


def install(app: web.Application, node: ClusterNode) -> None:
    app[NODE_KEY] = node
    app.router.add_get("/api/v1/cluster", cluster_status)
    app.router.add_get("/api/v1/cluster/sites", cluster_sites)


__all__ = ["install"]
