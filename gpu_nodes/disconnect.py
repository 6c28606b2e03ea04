"""Stop work nobody waits for: cancel a handler's await when its HTTP client goes away.

Starlette does not cancel a non-streaming handler when the client disconnects, so an
abandoned request would keep its replica slot (model server) or its in-flight count and
upstream connection (gateway) until the work finished on its own. Once the request body has
been read, the next ASGI ``receive()`` only returns on disconnect; this watches for it.

Plain asyncio (a watcher task that cancels the handler's task) rather than an anyio cancel
scope: this runs once per request on the gateway's hot path, and the scope cost about twice
the watcher task itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request

T = TypeVar("T")
Receive = Callable[[], Awaitable[Mapping[str, Any]]]

# Not sent (the client is gone); what access logs show, as nginx does for the same case.
CLIENT_CLOSED_STATUS = 499


@dataclass
class Outcome(Generic[T]):
    """``value`` when the work finished; ``disconnected`` when it was cancelled instead."""

    value: T | None = None
    disconnected: bool = False


async def cancel_on_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> Outcome[T]:
    """Await ``work()``; cancel it if the client disconnects first. Call after the body was
    read. Exceptions from ``work`` propagate as they are (no task group wraps them)."""
    return await cancel_on_receive_disconnect(request.receive, work)


async def cancel_on_receive_disconnect(
    receive: Receive, work: Callable[[], Awaitable[T]]
) -> Outcome[T]:
    """``cancel_on_disconnect`` for a plain ASGI ``receive``."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("cancel_on_disconnect must run inside an asyncio task")
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        value = await work()
    except asyncio.CancelledError:
        # Ours only when the watcher asked and nobody else did (a server shutdown, say).
        if disconnected and task.uncancel() == 0:
            return Outcome(disconnected=True)
        raise
    finally:
        watcher.cancel()
    if disconnected:  # the work swallowed our cancellation and finished anyway
        task.uncancel()
    return Outcome(value)
