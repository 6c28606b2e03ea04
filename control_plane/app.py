"""The control plane's FastAPI application: ``create_app(settings)``.

Routes are thin (parse, call the domain, serialise). The lifespan stores the bootstrap
API key and, when ``settings.run_background_workers``, runs the build worker and the
reconciler; with the lifespan off (Lambda) everything is wired lazily on first use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from control_plane.adapters.lazy_blob import LazyBlobStore
from control_plane.api import (
    metrics,
    routes_async,
    routes_autoscaling,
    routes_clusters,
    routes_deletion,
    routes_environments,
    routes_models,
    routes_platform,
    routes_uploads,
)
from control_plane.api.docs import install_offline_docs
from control_plane.api.errors import install_error_handlers
from control_plane.settings import Settings
from control_plane.weights.delivery import WEIGHTS_ORIGIN_PATH
from control_plane.weights.origin import create_origin_app
from control_plane.wiring import Platform

ROUTERS = (
    routes_models.router,
    routes_models.wake_router,
    routes_deletion.router,
    routes_environments.router,
    routes_platform.router,
    routes_platform.routing_router,
    routes_uploads.router,
    metrics.router,
    routes_clusters.router,
    routes_clusters.heartbeat_router,
    routes_clusters.placements_router,
    routes_autoscaling.router,
    routes_autoscaling.gateway_router,
    routes_async.router,
    routes_async.secrets_router,
)


def create_app(
    settings: Settings, *, platform: Platform | None = None, serve_weights_origin: bool = True
) -> FastAPI:
    """The app; pass ``platform`` to share one you constructed (and will close) yourself.

    ``serve_weights_origin=False`` leaves ``/weights`` out: a Lambda never serves chunks (its
    responses are capped at ~6 MB); pods read the bucket through the in-cluster cache instead.
    """
    owns_platform = platform is None
    platform = platform or Platform(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(platform.ensure_admin_key)
        if settings.run_background_workers:
            platform.start_background_workers()
        try:
            yield
        finally:
            await run_in_threadpool(
                platform.close if owns_platform else platform.stop_background_workers
            )

    app = FastAPI(
        title="Plinth control plane",
        version="0.1.0",
        description="Management API: models, deployments, environments, promotion, secrets.",
        lifespan=lifespan,
        docs_url=None,  # served from the package by install_offline_docs, not from a CDN
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.settings = settings
    app.state.platform = platform
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in ROUTERS:
        app.include_router(router)
    if serve_weights_origin:
        # Weight origin for replicas: unauthenticated, content-addressed (weights/delivery.py).
        origin = create_origin_app(LazyBlobStore(lambda: platform.blobs))
        app.state.weights_origin = origin
        app.mount(WEIGHTS_ORIGIN_PATH, origin)
    return app
