"""The gateway's Prometheus metrics and the ASGI middleware that records them.

Per request: ``plinth_gateway_requests_total`` and ``plinth_gateway_request_duration_seconds``
by model id, environment and status class. The handler names the model and environment once the
routing table resolved them (``label_request``); a request that never resolved (bad key, unknown
model, bad path) counts under ``model="unknown"``, so label values only ever come from the
routing table. In-flight and parked requests are plain integers read at scrape time, so the hot
path takes no lock for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_nodes.serving.metrics import (
    LATENCY_BUCKETS_S,
    METRICS_PATH,
    serve_timed,
    status_class,
)

UNKNOWN_MODEL = "unknown"
# Requests naming a deployment by id (``/deployment/{id}/...``) have no environment.
NO_ENVIRONMENT = ""
_LABELS_KEY = "plinth.request_labels"
_NOT_COUNTED = frozenset({METRICS_PATH, "/healthz"})


class RequestLabels:
    """Filled in by the handler once it knows the target; shared through the ASGI scope."""

    __slots__ = ("environment", "model")

    def __init__(self) -> None:
        self.model = UNKNOWN_MODEL
        self.environment = NO_ENVIRONMENT


def label_request(scope: Scope, model_id: str, environment: str | None) -> None:
    """Name the resolved model and environment of the request (no-op without the middleware)."""
    labels = scope.get(_LABELS_KEY)
    if labels is not None:
        labels.model = model_id
        labels.environment = environment or NO_ENVIRONMENT


class GatewayMetrics:
    def __init__(self, parked: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.in_flight = 0
        labels = ("model", "environment", "status_class")
        self._requests = Counter(
            "plinth_gateway_requests",
            "Requests answered by the gateway.",
            labels,
            registry=self.registry,
        )
        self._duration = Histogram(
            "plinth_gateway_request_duration_seconds",
            "Time from the request's arrival to the last byte of its response.",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "plinth_gateway_upstream_errors",
            "Replica failures seen by the gateway, by kind: unreachable (connection refused or"
            " timed out, retried once elsewhere), failed (before answering), mid_response.",
            ("model", "environment", "kind"),
            registry=self.registry,
        )
        in_flight = Gauge(
            "plinth_gateway_in_flight_requests",
            "Requests being handled now (parked ones included).",
            registry=self.registry,
        )
        in_flight.set_function(lambda: self.in_flight)
        parked_gauge = Gauge(
            "plinth_gateway_parked_requests",
            "Requests waiting for a deployment with no ready replica.",
            registry=self.registry,
        )
        parked_gauge.set_function(lambda: parked())
        # Children cached per label set: ``labels()`` takes a lock and builds a tuple each call.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def observe(self, model: str, environment: str, status: int, seconds: float) -> None:
        key = (model, environment, status_class(status))
        children = self._children.get(key)
        if children is None:
            children = (self._requests.labels(*key), self._duration.labels(*key))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def upstream_error(self, model: str, environment: str | None, kind: str) -> None:
        self._upstream_errors.labels(model, environment or NO_ENVIRONMENT, kind).inc()


class GatewayMetricsMiddleware:
    """Pure ASGI (no buffering): counts each request once its response ended, streams included."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _NOT_COUNTED:
            await self.app(scope, receive, send)
            return
        labels = RequestLabels()
        scope[_LABELS_KEY] = labels
        metrics = self.metrics

        def done(status: int, seconds: float) -> None:
            metrics.observe(labels.model, labels.environment, status, seconds)

        await serve_timed(self.app, scope, receive, send, metrics, done)
