"""The gateway's async inference routes (Baseten's paths), relayed to the control plane.

``POST .../async_predict`` and ``GET .../async_queue_status`` on every model path, and
``GET|DELETE /async_request/{id}`` (plus ``POST /async_request/{id}/replay_webhook``). The
gateway authenticates the caller's API key and resolves the environment to a deployment;
the control plane (called with the internal token) keeps the records and the queue. The
inference itself still goes gateway -> replica: the async worker calls the sync path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpu_nodes.gateway.exceptions import GatewayError, MethodNotAllowedError, UpstreamError
from gpu_nodes.gateway.routing import Target
from gpu_nodes.gateway.settings import GatewaySettings


class Gateway(Protocol):
    """What these routes use of ``gpu_nodes.gateway.app.Gateway``."""

    settings: GatewaySettings
    client: httpx.AsyncClient

    async def read_body(self, request: Request) -> bytes: ...

    async def resolve(self, request: Request, pick: Callable[[Any], Any]) -> tuple[Any, Any]: ...


ASYNC_MODEL_ACTIONS = ("async_predict", "async_queue_status")
_RELAYED_HEADERS = ("content-type",)


async def _relay(gateway: Gateway, method: str, path: str, body: bytes | None = None) -> Response:
    """Call the control plane and hand its answer (status, JSON body) back unchanged."""
    settings = gateway.settings
    headers = dict(settings.control_plane_headers)
    if body is not None:
        headers["content-type"] = "application/json"
    try:
        answer = await gateway.client.request(
            method, settings.control_plane_base + path, content=body, headers=headers
        )
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"the control plane did not answer ({type(exc).__name__}); try again"
        ) from None
    kept = {k: v for k, v in answer.headers.items() if k.lower() in _RELAYED_HEADERS}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


async def async_model_action(
    gateway: Gateway, request: Request, target: Target, action: str
) -> Response:
    """``async_predict`` (POST) or ``async_queue_status`` (GET) of a resolved deployment."""
    deployment = f"/v1/models/{target.model_id}/deployments/{target.deployment_id}"
    if action == "async_queue_status":
        if request.method != "GET":
            raise MethodNotAllowedError(f"async_queue_status takes GET, not {request.method}")
        return await _relay(gateway, "GET", deployment + "/async_queue_status")
    if request.method != "POST":
        raise MethodNotAllowedError(f"async_predict takes POST, not {request.method}")
    body = await gateway.read_body(request)
    return await _relay(gateway, "POST", deployment + "/async_requests", body)


def register_async_routes(app: FastAPI, gateway: Gateway) -> None:
    """``/async_request/{id}`` routes; registered before the gateway's catch-all route."""

    async def authenticated(request: Request) -> None:
        await gateway.resolve(request, lambda snapshot: None)

    @app.get("/async_request/{request_id}")
    async def get_request(request_id: str, request: Request) -> Response:
        return await _guarded(request, lambda: _relay(gateway, "GET", _path(request_id)))

    @app.delete("/async_request/{request_id}")
    async def cancel_request(request_id: str, request: Request) -> Response:
        return await _guarded(request, lambda: _relay(gateway, "DELETE", _path(request_id)))

    @app.post("/async_request/{request_id}/replay_webhook")
    async def replay(request_id: str, request: Request) -> Response:
        path = _path(request_id) + "/replay_webhook"
        return await _guarded(request, lambda: _relay(gateway, "POST", path))

    async def _guarded(request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
        try:
            await authenticated(request)
            return await call()
        except GatewayError as exc:
            return JSONResponse(exc.body(), status_code=exc.status_code)


def _path(request_id: str) -> str:
    return f"/v1/async_requests/{request_id}"
