"""What every server of the workload plane shares for ``GET /metrics`` (Prometheus text format).

Each app owns its own ``CollectorRegistry`` (never the process-global one), so several apps in one
process (tests, an engine app inside a model server) never collide. Label values stay bounded:
status codes are reduced to their class, and nothing taken from a request (ids, paths, bodies)
becomes a label.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

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
