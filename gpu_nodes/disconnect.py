"""Stop work nobody waits for: cancel a handler's await when its HTTP client goes away.

Starlette does not cancel a non-streaming handler when the client disconnects, so an
abandoned request would keep its replica slot (model server) or its in-flight count and
upstream connection (gateway) until the work finished on its own. Once the request body has
been read, the next ASGI ``receive()`` only returns on disconnect; this watches for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from starlette.requests import Request

T = TypeVar("T")

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
    outcome: Outcome[T] = Outcome()
    with anyio.CancelScope() as scope:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        watcher = asyncio.create_task(watch())
        try:
            outcome.value = await work()
        finally:
            watcher.cancel()
    outcome.disconnected = scope.cancelled_caught
    return outcome
