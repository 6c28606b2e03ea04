"""The inference gateway app: path grammar -> environment -> deployment -> replica."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpu_nodes.disconnect import CLIENT_CLOSED_STATUS, cancel_on_disconnect
from gpu_nodes.gateway.async_routes import (
    ASYNC_MODEL_ACTIONS,
    async_model_action,
    register_async_routes,
)
from gpu_nodes.gateway.cluster_router import ClusterRouter
from gpu_nodes.gateway.exceptions import (
    BadRequestError,
    GatewayError,
    MethodNotAllowedError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    RoutingUnavailableError,
    UnauthorizedError,
    WakeFailedError,
)
from gpu_nodes.gateway.heartbeat import ClusterHeartbeat
from gpu_nodes.gateway.load_reports import LoadReporter
from gpu_nodes.gateway.metrics import GatewayMetrics, GatewayMetricsMiddleware, label_request
from gpu_nodes.gateway.openapi import OPENAPI_PATH, gateway_openapi
from gpu_nodes.gateway.paths import InferencePath, model_id_from_host, parse_inference_path
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.proxy import ReplicaProxy, UpstreamRequest, forwardable_headers
from gpu_nodes.gateway.routing import RoutingSnapshot, Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import RoutingTableSource
from gpu_nodes.serving.metrics import METRICS_PATH, metrics_response
from gpu_nodes.serving.request_id import REQUEST_ID_HEADER, RequestIdMiddleware

log = logging.getLogger("plinth.gateway")

OPENAI_GATEWAY_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
PREDICT_PATH = "/v1/models/model:predict"
PickedT = TypeVar("PickedT")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Gateway:
    """Owns the gateway's state: control-plane client, routing table source, picker, proxy."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        # Only the routing table and wake calls to the control plane go through this client.
        timeout = httpx.Timeout(
            settings.control_plane_timeout_s, connect=settings.connect_timeout_s
        )
        self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self.source = RoutingTableSource(settings, self.client)
        self.picker = ReplicaPicker(settings, self.source, self.client)
        self.metrics = GatewayMetrics(parked=lambda: self.picker.parked)
        self.proxy = ReplicaProxy(settings, self.picker, self._upstream_error)
        self.load_reporter = LoadReporter(
            settings,
            self.client,
            self.picker.load,
            self.picker.balancer,
            lambda: self.source.snapshot,
        )
        self.heartbeat = ClusterHeartbeat(settings, self.client)
        self.clusters = ClusterRouter(settings, self.snapshot, self.proxy)

    def _upstream_error(self, target: Target, kind: str) -> None:
        self.metrics.upstream_error(target.model_id, target.environment, kind)

    def snapshot(self) -> RoutingSnapshot:
        if self.source.snapshot is None:
            raise RoutingUnavailableError(
                "routing table not loaded yet: the control plane has not answered"
            )
        return self.source.snapshot

    def authenticate(self, request: Request, snapshot: RoutingSnapshot) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise UnauthorizedError(
                "missing API key: send 'Authorization: Api-Key <key>' or 'Bearer <key>'"
            )
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() not in ("api-key", "bearer") or not key.strip():
            raise UnauthorizedError(
                "malformed Authorization header: expected 'Api-Key <key>' or 'Bearer <key>'"
            )
        if not snapshot.key_is_valid(key.strip()):
            raise UnauthorizedError("invalid API key")

    def authenticate_scraper(self, request: Request) -> None:
        """``/metrics`` names every model: the internal token or a valid API key only."""
        header = request.headers.get("authorization", "")
        _, _, credential = header.strip().partition(" ")
        token = self.settings.internal_token
        if token and hmac.compare_digest(credential.strip().encode(), token.encode()):
            return
        self.authenticate(request, self.snapshot())

    async def resolve(
        self, request: Request, pick: Callable[[RoutingSnapshot], PickedT]
    ) -> tuple[RoutingSnapshot, PickedT]:
        """Authenticate and pick a target; on a miss, refresh the table once and try again.

        A model pushed or an API key created a moment ago may not be in our copy yet: the
        user should not see a 404/401 for the length of a poll interval.
        """
        try:
            snapshot = self.snapshot()
            self.authenticate(request, snapshot)
            picked = pick(snapshot)
        except (NotFoundError, UnauthorizedError):
            await self.source.refresh_on_miss()
            snapshot = self.snapshot()
            self.authenticate(request, snapshot)
            picked = pick(snapshot)
        if isinstance(picked, Target):
            label_request(request.scope, picked.model_id, picked.environment)
        return snapshot, picked

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def forward(
        self, request: Request, target: Target, method: str, path: str, body: bytes
    ) -> Response:
        upstream = UpstreamRequest(
            method=method,
            path=path,
            query=request.url.query.encode(),
            headers=forwardable_headers(request.headers.raw),
            body=body,
            request_id=request.headers.get(REQUEST_ID_HEADER, "-"),
        )
        # A client that gives up cancels the upstream request: the connection to the replica
        # closes (an async predict there is cancelled) and it stops counting as in flight.
        outcome = await cancel_on_disconnect(
            request, lambda: self.clusters.send(request, target, upstream)
        )
        if outcome.disconnected or outcome.value is None:
            log.info("request_id=%s cancelled: the client disconnected", upstream.request_id)
            return Response(status_code=CLIENT_CLOSED_STATUS)
        return outcome.value

    async def close(self) -> None:
        await self.proxy.close()
        await self.client.aclose()


def create_gateway_app(settings: GatewaySettings) -> FastAPI:
    gateway = Gateway(settings)
    app = FastAPI(
        title="plinth gateway",
        lifespan=_lifespan(gateway),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(GatewayMetricsMiddleware, metrics=gateway.metrics)
    app.state.gateway = gateway
    _add_operational_routes(app, gateway)
    register_async_routes(app, gateway)
    _add_inference_route(app, gateway, settings)
    return app


def _lifespan(gateway: Gateway) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Background work for the app's lifetime: the routing-table poller and the load reporter."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.source.load_cache()
        poller = asyncio.create_task(
            gateway.source.run(requests_parked=lambda: gateway.picker.parked > 0),
            name="routing-table-poller",
        )
        reporter = asyncio.create_task(gateway.load_reporter.run(), name="load-reporter")
        heartbeat = asyncio.create_task(gateway.heartbeat.run(), name="cluster-heartbeat")
        try:
            yield
        finally:
            for task in (poller, reporter, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await gateway.close()

    return lifespan


def _add_operational_routes(app: FastAPI, gateway: Gateway) -> None:
    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        snapshot = gateway.source.snapshot
        body = {"ok": snapshot is not None, "version": snapshot.table.version if snapshot else None}
        return JSONResponse(body, status_code=200 if snapshot is not None else 503)

    @app.get(OPENAPI_PATH)
    async def openapi() -> JSONResponse:
        return JSONResponse(gateway_openapi())

    @app.get(METRICS_PATH)
    async def metrics(request: Request) -> Response:
        try:
            gateway.authenticate_scraper(request)
        except GatewayError as exc:
            return JSONResponse(exc.body(), status_code=exc.status_code)
        return metrics_response(gateway.metrics.registry)


def _add_inference_route(app: FastAPI, gateway: Gateway, settings: GatewaySettings) -> None:
    """The catch-all: model paths (predict, wake, v1/...) and the OpenAI API at /v1/."""

    @app.api_route("/{full_path:path}", methods=ALL_METHODS)
    async def dispatch(request: Request, full_path: str) -> Response:
        host_model_id = model_id_from_host(request.headers.get("host"), settings.domain)
        path = "/" + full_path
        openai = path.startswith("/v1/") or "/v1/" in path
        try:
            if host_model_id is None and path.startswith("/v1/"):
                return await _gateway_openai(gateway, request, path)
            parsed = parse_inference_path(path, host_model_id)
            if parsed is None:
                raise NotFoundError(
                    f"no route for {request.method} {path}: expected /models/{{model_id}}/"
                    "{production|development|environments/{env}|deployment/{id}}/"
                    "{predict|async_predict|wake|v1/...}"
                )
            return await _model_path(gateway, request, parsed)
        except GatewayError as exc:
            return JSONResponse(exc.body(openai=openai), status_code=exc.status_code)


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
    if request.method != "POST":
        raise MethodNotAllowedError(f"{parsed.action} takes POST, not {request.method}")
    if parsed.action == "wake":
        woke = await gateway.picker.request_wake(target.model_id, target.deployment_id, force=True)
        if not woke:
            raise WakeFailedError("the control plane did not accept the wake request; try again")
        ids = {"model_id": target.model_id, "deployment_id": target.deployment_id}
        return JSONResponse({**ids, "status": "waking"}, status_code=202)
    body_bytes = await gateway.read_body(request)
    return await gateway.forward(request, target, "POST", PREDICT_PATH, body_bytes)


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
    """Only engine deployments serve the OpenAI API; a Model-class replica would answer a
    bare framework 404 that no OpenAI client can read."""
    deployment = snapshot.deployment(target.model_id, target.deployment_id)
    if deployment is not None and not deployment.engine:
        raise ModelNotFoundError(
            f"The model '{model}' is served by a Model class, not an LLM engine, so it has no"
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
