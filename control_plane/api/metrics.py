"""``GET /metrics``: the control plane's Prometheus metrics (API key or the internal token).

Outside ``/v1`` (it is not part of the management API) and out of the OpenAPI document; it names
every model and deployment id, so it takes the same credentials as the routing table.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from control_plane.api.auth import platform_of, require_api_key_or_internal_token

router = APIRouter(dependencies=[Depends(require_api_key_or_internal_token)])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    registry = platform_of(request).metrics.registry
    # Collecting reads the metadata store (replica counts): off the event loop.
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
