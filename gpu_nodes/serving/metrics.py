"""What every server of the workload plane shares for ``GET /metrics`` (Prometheus text format).

Each app owns its own ``CollectorRegistry`` (never the process-global one), so several apps in one
process (tests, an engine app inside a model server) never collide. Label values stay bounded:
status codes are reduced to their class, and nothing taken from a request (ids, paths, bodies)
becomes a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds. Predict calls range from a millisecond (a tiny Python model) to minutes (long
# generations), so the buckets span 1 ms .. 10 min.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

METRICS_PATH = "/metrics"


def status_class(status: int) -> str:
    """``200`` -> ``"2xx"``; no response at all (the app raised) counts as ``"5xx"``."""
    if 100 <= status < 600:
        return f"{status // 100}xx"
    return "5xx"


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def serve_timed(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    metrics: Any,
    done: Callable[[int, float], None],
) -> None:
    """Serve one request counted in ``metrics.in_flight``; ``done(status, seconds)`` once its
    response ended (a stream's too). Shared by the gateway's and the replicas' middlewares."""
    status = 0

    async def send_recording_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    metrics.in_flight += 1
    started = time.perf_counter()
    try:
        await app(scope, receive, send_recording_status)
    finally:
        metrics.in_flight -= 1
        done(status, time.perf_counter() - started)
