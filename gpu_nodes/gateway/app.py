"""The inference gateway app: path grammar -> environment -> deployment -> replica."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from gpu_nodes.disconnect import CLIENT_CLOSED_STATUS, cancel_on_receive_disconnect
from gpu_nodes.gateway.async_routes import register_async_routes
from gpu_nodes.gateway.cluster_router import ClusterRouter
from gpu_nodes.gateway.exceptions import (
    GatewayError,
    NotFoundError,
    PayloadTooLargeError,
    RoutingUnavailableError,
    UnauthorizedError,
)
from gpu_nodes.gateway.heartbeat import ClusterHeartbeat
from gpu_nodes.gateway.inference import InferenceRouter
from gpu_nodes.gateway.load_reports import LoadReporter
from gpu_nodes.gateway.metrics import GatewayMetrics, GatewayMetricsMiddleware, label_request
from gpu_nodes.gateway.openapi import OPENAPI_PATH, gateway_openapi
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.proxy import ReplicaProxy, UpstreamRequest, forwardable_headers
from gpu_nodes.gateway.routing import RoutingSnapshot, Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import RoutingTableSource
from gpu_nodes.serving.metrics import METRICS_PATH, metrics_response
from gpu_nodes.serving.request_id import REQUEST_ID_HEADER, RequestIdMiddleware

log = logging.getLogger("plinth.gateway")

PickedT = TypeVar("PickedT")


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
        """The whole body, refused past ``max_body_bytes`` (read from ASGI ``receive`` as is:
        Starlette's stream wrapper cost more than the loop)."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def forward(
        self, request: Request, target: Target, method: str, path: str, body: bytes
    ) -> Response:
        upstream = UpstreamRequest(
            method=method,
            path=path,
            query=request.scope["query_string"],
            headers=forwardable_headers(request.scope["headers"]),
            body=body,
            request_id=request.headers.get(REQUEST_ID_HEADER, "-"),
        )
        # A client that gives up cancels the upstream request: the connection to the replica
        # closes (an async predict there is cancelled) and it stops counting as in flight.
        outcome = await cancel_on_receive_disconnect(
            request.receive, lambda: self.clusters.send(request, target, upstream)
        )
        if outcome.disconnected or outcome.value is None:
            log.info("request_id=%s cancelled: the client disconnected", upstream.request_id)
            return Response(status_code=CLIENT_CLOSED_STATUS)
        return outcome.value

    async def close(self) -> None:
        await self.proxy.close()
        await self.client.aclose()


def create_gateway_app(settings: GatewaySettings) -> ASGIApp:
    """Inference paths go to the plain ASGI ``InferenceRouter``; the fixed routes (health,
    metrics, OpenAPI, async requests) and the lifespan to a FastAPI app behind it. Both are
    counted by the metrics middleware and get a request id."""
    gateway = Gateway(settings)
    api = FastAPI(
        title="plinth gateway",
        lifespan=_lifespan(gateway),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    api.state.gateway = gateway
    _add_operational_routes(api, gateway)
    register_async_routes(api, gateway)
    router = InferenceRouter(gateway, api)
    return GatewayMetricsMiddleware(RequestIdMiddleware(router), metrics=gateway.metrics)


def _lifespan(gateway: Gateway) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Background work for the app's lifetime: the routing-table poller and the load reporter."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway.source.load_cache()
        # What startup imported and built (~75k objects) lives as long as the process: leave it
        # out of every collection (a full one took ~0.25 s of a loaded run's p99 otherwise).
        gc.freeze()
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
