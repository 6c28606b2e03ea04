"""``X-Request-Id`` handling as a pure ASGI middleware (no buffering, safe for streaming).

An incoming id is kept when it looks sane; otherwise a new one is generated. The id is written
back into the request headers (so handlers read it like any header) and added to the response.
Shared by the model server and the gateway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
_HEADER = REQUEST_ID_HEADER.encode()
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_request_id() -> str:
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> bool:
    return value is not None and _VALID_ID.match(value) is not None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        incoming = next((v for k, v in headers if k == REQUEST_ID_HEADER.encode()), None)
        request_id = incoming.decode("latin-1") if incoming is not None else None
        if not valid_request_id(request_id):
            request_id = new_request_id()
            headers = [(k, v) for k, v in headers if k != REQUEST_ID_HEADER.encode()]
            headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            scope = dict(scope)
            scope["headers"] = headers
        id_bytes = str(request_id).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                out.append((REQUEST_ID_HEADER.encode(), id_bytes))
                message["headers"] = out
            await send(message)

        await self.app(scope, receive, send_with_id)
