"""A replica's request metrics (model server and OpenAI server): in flight, count, latency.

Only the inference endpoints are measured, each under a fixed ``endpoint`` label; probes
(``/``, ``/v1/models/model``) and unknown paths are not, so the label set is the four names
below whatever clients send. Durations run to the response's last byte (a stream's whole length).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_nodes.serving.metrics import LATENCY_BUCKETS_S, serve_timed, status_class
from plinth.contracts.replica_env import ReplicaVar

ENDPOINTS = {
    "/v1/models/model:predict": "predict",
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


class ReplicaMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight = 0
        self._requests = Counter(
            "plinth_replica_requests",
            "Inference requests answered by this replica.",
            ("endpoint", "status_class"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "plinth_replica_request_duration_seconds",
            "Time from a request's arrival at the replica to the last byte of its response.",
            ("endpoint", "status_class"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        in_flight = Gauge(
            "plinth_replica_in_flight_requests",
            "Inference requests this replica is handling now.",
            registry=self.registry,
        )
        in_flight.set_function(lambda: self.in_flight)
        info = Gauge(
            "plinth_replica_info",
            "Always 1: what this replica serves (from its PLINTH_* environment).",
            ("model_id", "deployment_id", "environment"),
            registry=self.registry,
        )
        info.labels(
            os.environ.get(ReplicaVar.MODEL_ID, ""),
            os.environ.get(ReplicaVar.DEPLOYMENT_ID, ""),
            os.environ.get(ReplicaVar.ENVIRONMENT, ""),
        ).set(1)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status_class(status))
        children = self._children.get(key)
        if children is None:
            children = (self._requests.labels(*key), self._duration.labels(*key))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class ReplicaMetricsMiddleware:
    """Pure ASGI (no buffering, safe for streaming)."""

    def __init__(self, app: ASGIApp, metrics: ReplicaMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ENDPOINTS.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        metrics = self.metrics

        def done(status: int, seconds: float) -> None:
            metrics.observe(endpoint, status, seconds)

        await serve_timed(self.app, scope, receive, send, metrics, done)
