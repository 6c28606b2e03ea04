"""The model server's FastAPI app: Truss routes over a ``TrussModelHost``."""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gpu_nodes.disconnect import CLIENT_CLOSED_STATUS, cancel_on_disconnect
from gpu_nodes.model_server.exceptions import (
    InputError,
    PackageError,
    PredictTimeoutError,
    ReplicaBusyError,
    ResultNotSerializableError,
)
from gpu_nodes.model_server.openai_methods import add_openai_method_routes
from gpu_nodes.model_server.package_config import ServingConfig, load_serving_config
from gpu_nodes.model_server.responses import (
    GuardedStreamingResponse,
    encode_json,
    encoded_chunks,
    parse_json_body,
)
from gpu_nodes.model_server.runner import ModelStatus, PredictionStream, TrussModelHost
from gpu_nodes.model_server.tracebacks import format_user_traceback
from gpu_nodes.serving.metrics import METRICS_PATH, metrics_response
from gpu_nodes.serving.replica_metrics import ReplicaMetrics, ReplicaMetricsMiddleware
from gpu_nodes.serving.request_id import REQUEST_ID_HEADER, RequestIdMiddleware
from plinth.contracts.async_work import (
    ASYNC_WORK_HEADER,
    BUSY_RETRY_AFTER_S,
    REPLICA_BUSY_HEADER,
)
from plinth.contracts.replica_env import ReplicaVar

log = logging.getLogger("plinth.model_server")

STREAM_MEDIA_TYPE = "application/octet-stream"


def create_model_server_app(
    model_dir: Path,
    *,
    secrets_dir: Path | None = None,
    environment: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the app serving the package in ``model_dir``.

    ``secrets_dir`` / ``environment`` default to ``$PLINTH_SECRETS_DIR`` and
    ``{"name": $PLINTH_ENVIRONMENT}``. Packages with an ``engine:`` section get the
    OpenAI-compatible engine app of ``gpu_nodes.openai.server`` instead (same Truss routes).
    Raises ``PackageError`` when config.yaml is missing or invalid.
    """
    model_dir = Path(model_dir).resolve()
    cfg = load_serving_config(model_dir)
    for key, value in cfg.environment_variables.items():
        # As in a Truss image: config sets defaults, the replica's real environment wins.
        os.environ.setdefault(key, value)
    if cfg.has_engine:
        return _create_engine_app(model_dir, cfg)
    # Single variables, not ReplicaEnv.from_env(): a bad weights variable must fail the
    # weights fetch (a FAILED status with the reason), not the server's start.
    if secrets_dir is None and os.environ.get(ReplicaVar.SECRETS_DIR):
        secrets_dir = Path(os.environ[ReplicaVar.SECRETS_DIR])
    if environment is None and os.environ.get(ReplicaVar.ENVIRONMENT):
        environment = {"name": os.environ[ReplicaVar.ENVIRONMENT]}
    runner = TrussModelHost(model_dir, cfg, secrets_dir=secrets_dir, environment=environment)
    return _build_app(runner)


def _create_engine_app(model_dir: Path, cfg: ServingConfig) -> FastAPI:
    if cfg.spec is None:
        raise PackageError("packages with an 'engine:' section need plinth.spec to be installed")
    # Imported by name, only here: the engine stack pulls in torch, which plain replicas skip.
    openai_server = importlib.import_module("gpu_nodes.openai.server")
    app: FastAPI = openai_server.create_openai_app(model_dir, cfg.spec)
    app.add_middleware(RequestIdMiddleware)
    return app


def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code)


def _build_app(runner: TrussModelHost) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync predict/pre/post run in anyio's worker threads: never let that pool (40 by
        # default) be what limits a high predict_concurrency.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * runner.cfg.predict_concurrency + 8)
        runner.start_loading()
        yield

    app = FastAPI(title=f"plinth model server: {runner.cfg.model_name}", lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    metrics = ReplicaMetrics()
    app.add_middleware(ReplicaMetricsMiddleware, metrics=metrics)
    app.state.runner = runner

    @app.get(METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # Unauthenticated like every replica route: replicas are reachable in-cluster only.
        return metrics_response(metrics.registry)

    @app.get("/")
    async def liveness() -> dict[str, Any]:
        return {}

    @app.get("/v1/models/model")
    async def readiness() -> JSONResponse:
        state = runner.state
        body: dict[str, Any] = {
            "model_name": runner.cfg.model_name,
            "ready": state.status is ModelStatus.READY,
            "status": state.status.value,
        }
        if state.error is not None:
            body["error"] = state.error
        if state.weights is not None:  # still fetching the deployment's weights
            body["weights"] = dict(state.weights)
        # When this start reached each phase (epoch s): the cluster driver times cold starts.
        body["cold_start"] = dict(runner.cold_start)
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.post("/v1/models/model:predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER, "-")
        response = await _predict(runner, request, request_id)
        log.info(
            "predict request_id=%s status=%d %.1fms",
            request_id,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    add_openai_method_routes(app, runner)
    return app


async def _predict(runner: TrussModelHost, request: Request, request_id: str) -> Response:
    state = runner.state
    if state.status is not ModelStatus.READY:
        detail = f"model is not ready (status {state.status.value})"
        if state.error:
            detail += f": {state.error}"
        return _error(503, detail, status=state.status.value)
    try:
        payload = await parse_json_body(request)
        async_work = ASYNC_WORK_HEADER in request.headers
        outcome = await cancel_on_disconnect(
            request, lambda: runner.run(payload, request, async_work=async_work)
        )
        if outcome.disconnected:
            log.info("predict request_id=%s cancelled: the client disconnected", request_id)
            return Response(status_code=CLIENT_CLOSED_STATUS)
        result = outcome.value
        if isinstance(result, PredictionStream):
            return GuardedStreamingResponse(
                encoded_chunks(result, runner, request_id),
                on_close=result.close,
                media_type=STREAM_MEDIA_TYPE,
            )
        if isinstance(result, Response):
            return result
        return Response(encode_json(result), media_type="application/json")
    except InputError as exc:
        return _error(exc.status_code, exc.message)
    except ReplicaBusyError as exc:
        busy = {"Retry-After": str(BUSY_RETRY_AFTER_S), REPLICA_BUSY_HEADER: "1"}
        return JSONResponse({"error": str(exc)}, status_code=429, headers=busy)
    except PredictTimeoutError as exc:
        log.error("predict request_id=%s: %s", request_id, exc)
        return _error(504, str(exc))
    except HTTPException as exc:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(
            {"error": detail}, status_code=exc.status_code, headers=dict(exc.headers or {})
        )
    except ResultNotSerializableError as exc:  # the server's own words about the result
        log.error("predict failed request_id=%s: %s", request_id, exc)
        return _error(500, str(exc))
    except Exception as exc:
        # As Truss: the model's exception text stays in the log (it may hold inputs or
        # secrets); the caller gets the status and the request id to find it there.
        trace = format_user_traceback(exc, runner.user_roots)
        log.error("predict failed request_id=%s\n%s", request_id, trace)
        return _error(500, "Internal Server Error")
