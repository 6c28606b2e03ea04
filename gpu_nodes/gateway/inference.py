"""The gateway's hot path: inference requests served by a plain ASGI router in front of FastAPI.

Model paths (predict, wake, async, ``v1/...``) and the OpenAI API at ``/v1/`` are matched by the
path grammar (``paths.py``) here and never enter FastAPI: profiling the gateway under
``bench/gateway.py`` showed FastAPI's per-request machinery for its catch-all route (middleware
stack, matching every route in turn, solving the handler's dependencies) costing about as much
CPU as relaying the request itself. FastAPI keeps the few fixed routes (``/healthz``,
``/metrics``, ``/openapi.json``, ``/async_request/{id}``) and the app's lifespan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_nodes.disconnect import CLIENT_CLOSED_STATUS
from gpu_nodes.gateway.async_routes import ASYNC_MODEL_ACTIONS, async_model_action
from gpu_nodes.gateway.exceptions import (
    BadRequestError,
    GatewayError,
    MethodNotAllowedError,
    ModelNotFoundError,
    NotFoundError,
    WakeFailedError,
)
from gpu_nodes.gateway.openapi import OPENAPI_PATH
from gpu_nodes.gateway.paths import InferencePath, model_id_from_host, parse_inference_path
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.routing import RoutingSnapshot, Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.serving.metrics import METRICS_PATH
from plinth.contracts.routing import TRUSS_PREDICT_PATH

OPENAI_GATEWAY_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/responses",
)
# FastAPI's routes, by method (a GET route answers HEAD too); every other request is ours.
_FIXED_GET_PATHS = frozenset({"/healthz", METRICS_PATH, OPENAPI_PATH})
_GET = frozenset({"GET", "HEAD"})
_ASYNC_REQUEST_PREFIX = "/async_request/"
PickedT = TypeVar("PickedT")


class Gateway(Protocol):
    """What the hot path uses of ``gpu_nodes.gateway.app.Gateway``."""

    settings: GatewaySettings
    client: httpx.AsyncClient
    picker: ReplicaPicker

    async def read_body(self, request: Request) -> bytes: ...

    async def resolve(
        self, request: Request, pick: Callable[[RoutingSnapshot], PickedT]
    ) -> tuple[RoutingSnapshot, PickedT]: ...

    async def forward(
        self, request: Request, target: Target, method: str, path: str, body: bytes
    ) -> Response: ...


def is_fixed_route(method: str, path: str) -> bool:
    """Whether FastAPI serves ``method path`` (the same matches its routes made)."""
    if path in _FIXED_GET_PATHS:
        return method in _GET
    if not path.startswith(_ASYNC_REQUEST_PREFIX):
        return False
    request_id, slash, tail = path[len(_ASYNC_REQUEST_PREFIX) :].partition("/")
    if not request_id:
        return False
    if not slash:  # /async_request/{id}
        return method in _GET or method == "DELETE"
    return tail == "replay_webhook" and method == "POST"


class InferenceRouter:
    """Serves inference requests itself; hands everything else (lifespan included) to
    ``fallback``, the FastAPI app."""

    def __init__(self, gateway: Gateway, fallback: ASGIApp) -> None:
        self.gateway = gateway
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_fixed_route(scope["method"], scope["path"]):
            await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            response = await self._dispatch(Request(scope, receive), path)
        except GatewayError as exc:
            openai = path.startswith("/v1/") or "/v1/" in path
            response = JSONResponse(
                exc.body(openai=openai),
                status_code=exc.status_code,
                headers=exc.response_headers(),
            )
        except ClientDisconnect:  # gone while sending its body: nobody reads an answer
            response = Response(status_code=CLIENT_CLOSED_STATUS)
        await response(scope, receive, send)

    async def _dispatch(self, request: Request, path: str) -> Response:
        gateway = self.gateway
        host_model_id = model_id_from_host(request.headers.get("host"), gateway.settings.domain)
        if host_model_id is None and path.startswith("/v1/"):
            return await _gateway_openai(gateway, request, path)
        parsed = parse_inference_path(path, host_model_id)
        if parsed is None:
            raise NotFoundError(
                f"no route for {request.method} {path}: expected /models/{{model_id}}/"
                "{production|development|environments/{env}|deployment/{id}}/"
                "{predict|async_predict|wake|v1/...|sync/{route}}"
            )
        return await _model_path(gateway, request, parsed)


async def _model_path(gateway: Gateway, request: Request, parsed: InferencePath) -> Response:
    snapshot, target = await gateway.resolve(
        request, lambda snapshot: snapshot.resolve(parsed.model_id, parsed.selector)
    )
    if parsed.action == "openai":
        _require_openai_api(snapshot, target, parsed.model_id)
        body = await gateway.read_body(request)
        return await gateway.forward(request, target, request.method, parsed.upstream_path, body)
    if parsed.action in ASYNC_MODEL_ACTIONS:
        return await async_model_action(gateway, request, target, parsed.action)
    if parsed.action == "sync" and parsed.upstream_path:
        body = await gateway.read_body(request)
        return await gateway.forward(request, target, request.method, parsed.upstream_path, body)
    if request.method != "POST":
        raise MethodNotAllowedError(f"{parsed.action} takes POST, not {request.method}")
    if parsed.action == "wake":
        woke = await gateway.picker.request_wake(target.model_id, target.deployment_id, force=True)
        if not woke:
            raise WakeFailedError("the control plane did not accept the wake request; try again")
        ids = {"model_id": target.model_id, "deployment_id": target.deployment_id}
        return JSONResponse({**ids, "status": "waking"}, status_code=202)
    body_bytes = await gateway.read_body(request)
    deployment = snapshot.deployment(target.model_id, target.deployment_id)
    predict_path = deployment.predict_path if deployment is not None else TRUSS_PREDICT_PATH
    return await gateway.forward(request, target, "POST", predict_path, body_bytes)


async def _gateway_openai(gateway: Gateway, request: Request, path: str) -> Response:
    snapshot, _ = await gateway.resolve(request, lambda _: None)
    if path == "/v1/models":
        if request.method != "GET":
            raise MethodNotAllowedError(f"/v1/models takes GET, not {request.method}")
        return JSONResponse({"object": "list", "data": snapshot.openai_models()})
    if path not in OPENAI_GATEWAY_PATHS:
        raise NotFoundError(f"no OpenAI route {path}; use {', '.join(OPENAI_GATEWAY_PATHS)}")
    if request.method != "POST":
        raise MethodNotAllowedError(f"{path} takes POST, not {request.method}")
    body = await gateway.read_body(request)
    model = _model_field(body)
    snapshot, target = await gateway.resolve(
        request, lambda table: table.resolve_openai_model(model)
    )
    _require_openai_api(snapshot, target, model)
    return await gateway.forward(request, target, "POST", path, body)


def _require_openai_api(snapshot: RoutingSnapshot, target: Target, model: str) -> None:
    """Engines, custom servers and Model classes with OpenAI-style methods serve the OpenAI
    API; any other replica would answer a bare framework 404 that no OpenAI client can read."""
    deployment = snapshot.deployment(target.model_id, target.deployment_id)
    if deployment is not None and not (deployment.engine or deployment.openai):
        raise ModelNotFoundError(
            f"The model '{model}' is served by a Model class without OpenAI methods"
            " (chat_completions, completions, embeddings, messages, responses), so it has no"
            f" OpenAI API; call POST /models/{target.model_id}/production/predict instead",
            param="model",
        )


def _model_field(body: bytes) -> str:
    try:
        parsed: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from exc
    model = parsed.get("model") if isinstance(parsed, dict) else None
    if not isinstance(model, str) or not model:
        raise BadRequestError("'model' is required: the name (or id) of the model", param="model")
    return model
