"""Opening and closing an aiomqtt client so that a cancellation never leaves it half open.

aiomqtt connects in an executor thread: a task cancelled while ``Client.__aenter__`` waits
leaves that thread to finish the connect, and the socket it opens and the client's loop task
then outlive the daemon that asked for them. Both MQTT users (the notifiers and telemetry) open
their client through :func:`enter` and close it through :func:`leave`.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt

#: How long a cancelled connect is let finish so that it can be closed; the client's own
#: connect timeout bounds it well below this.
CONNECT_GRACE_S = 15.0


async def enter(client: aiomqtt.Client) -> None:
    """``client.__aenter__()``, except that a cancellation while it connects lets the connect
    end and disconnects before the cancellation goes on."""
    entering = asyncio.ensure_future(client.__aenter__())
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        await asyncio.wait({entering}, timeout=CONNECT_GRACE_S)
        if entering.done() and not entering.cancelled() and entering.exception() is None:
            await leave(client)
        raise


async def leave(client: aiomqtt.Client) -> None:
    """Disconnect; a broker already gone is not an error here."""
    with contextlib.suppress(aiomqtt.MqttError, OSError):
        await client.__aexit__(None, None, None)
