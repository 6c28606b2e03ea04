"""The OpenAI-compatible FastAPI app of an engine package, plus the Truss routes.

Routes: ``GET /`` (liveness), ``GET /v1/models/model`` (200 once the engine loaded, 503 before or
after a failed load), ``POST /v1/models/model:predict`` (a chat-completions or completions body,
as Baseten engine deployments accept), ``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/embeddings`` (400: not supported by text-generation models).

The ``model`` field must name this model: the package's ``model_name``, the weights directory's
name, ``"model"``, or an id given in ``served_model_names`` / env ``PLINTH_MODEL_ID``; a
``name@environment`` suffix (gateway syntax) is ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gpu_nodes.exceptions import openai_error_body
from gpu_nodes.openai.chat import chat_completion, prepare_chat, stream_chat
from gpu_nodes.openai.completions import completion, prepare_completion, stream_completion
from gpu_nodes.openai.engine_factory import load_engine
from gpu_nodes.openai.engine_port import Engine, EngineSettings
from gpu_nodes.openai.exceptions import (
    EngineNotReady,
    InvalidRequest,
    ModelNotFound,
    NotSupported,
    OpenAIError,
)
from gpu_nodes.openai.generation import now
from gpu_nodes.openai.metrics import EngineStatsCollector
from gpu_nodes.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    parse_request,
)
from gpu_nodes.serving.metrics import METRICS_PATH, metrics_response
from gpu_nodes.serving.replica_metrics import ReplicaMetrics, ReplicaMetricsMiddleware
from plinth.contracts.replica_env import ReplicaVar

logger = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class EngineSlot:
    """The engine once loaded in the background, or why it is not there."""

    engine: Engine | None = None
    error: str | None = None

    def require(self) -> Engine:
        if self.engine is not None:
            return self.engine
        if self.error is not None:
            raise EngineNotReady(f"The model failed to load: {self.error}")
        raise EngineNotReady("The model is still loading; retry shortly.")


@dataclass
class ServedModel:
    name: str  # reported in responses and /v1/models
    aliases: set[str] = field(default_factory=set)
    created: int = field(default_factory=now)

    def check(self, requested: str) -> None:
        base = requested.split("@", 1)[0]
        if requested not in self.aliases and base not in self.aliases:
            raise ModelNotFound(
                f"The model '{requested}' does not exist; this server serves '{self.name}'.",
                param="model",
            )


async def _load_into(slot: EngineSlot, settings: EngineSettings) -> None:
    try:
        slot.engine = await asyncio.to_thread(load_engine, settings)
        logger.info("engine %s loaded from %s", settings.kind, settings.model_path)
    except Exception as exc:  # reported on /v1/models/model and every request
        slot.error = f"{type(exc).__name__}: {exc}"
        logger.error("engine %s failed to load: %s", settings.kind, slot.error)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest(
            "We could not parse the JSON body of your request: it is not valid JSON."
        ) from None


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Awaitable[ResultT]) -> ResultT | None:
    """Run ``work``; cancel it (aborting its engine requests) if the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return None
    finally:
        watcher.cancel()
        task.cancel()


async def _guarded_sse(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Errors after the 200 went out become an OpenAI error event, then ``[DONE]``."""
    try:
        async with aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield event
    except OpenAIError as exc:
        yield f"data: {json.dumps(exc.to_body())}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:
        logger.exception("generation failed mid-stream")
        error = openai_error_body(str(exc), error_type="server_error")
        yield f"data: {json.dumps(error)}\n\n"
        yield "data: [DONE]\n\n"


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        _guarded_sse(events), media_type="text/event-stream", headers=_SSE_HEADERS
    )


def _served_model(config: Any, settings: EngineSettings, extra: list[str] | None) -> ServedModel:
    name = getattr(config, "model_name", None) or settings.model_path.name
    aliases = {name, settings.model_path.name, "model", *(extra or [])}
    model_id = os.environ.get(ReplicaVar.MODEL_ID)
    if model_id:
        aliases.add(model_id)
    return ServedModel(name=name, aliases=aliases)


def create_openai_app(
    model_dir: Path, config: Any, *, served_model_names: list[str] | None = None
) -> FastAPI:
    """The app serving ``config.engine`` (a ``plinth.spec`` ``TrussConfig``) from ``model_dir``.

    The engine loads in a background thread when the app starts (its lifespan); until then the
    readiness route and inference answer 503."""
    if getattr(config, "engine", None) is None:
        raise ValueError("config.yaml has no 'engine' section; this app serves engine packages")
    settings = EngineSettings.from_spec(Path(model_dir), config.engine)
    slot = EngineSlot()
    served = _served_model(config, settings, served_model_names)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_load_into(slot, settings))
        try:
            yield
        finally:
            if not loading.done():
                await asyncio.wait({loading}, timeout=30)
            if slot.engine is not None:
                slot.engine.shutdown()

    app = FastAPI(title=f"Plinth OpenAI server: {served.name}", lifespan=lifespan)
    app.state.engine_slot = slot
    app.state.served_model = served
    metrics = ReplicaMetrics()
    metrics.registry.register(
        EngineStatsCollector(lambda: slot.engine.stats() if slot.engine is not None else None)
    )
    app.add_middleware(ReplicaMetricsMiddleware, metrics=metrics)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # Unauthenticated like every replica route: replicas are reachable in-cluster only.
        return metrics_response(metrics.registry)

    @app.exception_handler(OpenAIError)
    async def openai_error(_: Request, exc: OpenAIError) -> JSONResponse:
        return JSONResponse(exc.to_body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        logger.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        message = f"The server failed to handle the request ({type(exc).__name__})."
        return JSONResponse(openai_error_body(message, error_type="server_error"), status_code=500)

    _add_truss_routes(app, slot, served)
    _add_openai_routes(app, slot, served)
    return app


def _add_truss_routes(app: FastAPI, slot: EngineSlot, served: ServedModel) -> None:
    @app.get("/")
    async def liveness() -> dict[str, Any]:
        return {}

    @app.get("/v1/models/model")
    async def readiness() -> JSONResponse:
        if slot.engine is not None:
            return JSONResponse({"model_name": served.name, "ready": True})
        body: dict[str, Any] = {"model_name": served.name, "ready": False, "status": "LOADING"}
        if slot.error is not None:
            body.update(status="FAILED", error=slot.error)
        return JSONResponse(body, status_code=503)

    @app.post("/v1/models/model:predict")
    async def predict(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, dict) and "messages" in body:
            return await _chat(request, body, slot, served)
        if isinstance(body, dict) and "prompt" in body:
            return await _completions(request, body, slot, served)
        raise InvalidRequest(
            "An engine deployment's predict takes a chat completions body ('messages') or a "
            "completions body ('prompt').",
            param="messages",
        )


async def _chat(request: Request, body: Any, slot: EngineSlot, served: ServedModel) -> Response:
    parsed = parse_request(ChatCompletionRequest, body)
    served.check(parsed.model)
    engine = slot.require()
    prepared = await prepare_chat(engine, parsed)
    if parsed.stream:
        return _sse(stream_chat(engine, prepared, served.name))
    result = await _unless_disconnected(request, chat_completion(engine, prepared, served.name))
    return JSONResponse(result.model_dump() if result else {}, status_code=200 if result else 499)


async def _completions(
    request: Request, body: Any, slot: EngineSlot, served: ServedModel
) -> Response:
    parsed = parse_request(CompletionRequest, body)
    served.check(parsed.model)
    engine = slot.require()
    prepared = prepare_completion(engine, parsed)
    if parsed.stream:
        return _sse(stream_completion(engine, prepared, served.name))
    result = await _unless_disconnected(request, completion(engine, prepared, served.name))
    return JSONResponse(result.model_dump() if result else {}, status_code=200 if result else 499)


def _add_openai_routes(app: FastAPI, slot: EngineSlot, served: ServedModel) -> None:
    def card() -> ModelCard:
        max_len = slot.engine.max_model_len if slot.engine is not None else None
        return ModelCard(id=served.name, created=served.created, max_model_len=max_len)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return ModelList(data=[card()]).model_dump()

    @app.get("/v1/models/{model_name:path}")
    async def get_model(model_name: str) -> dict[str, Any]:
        served.check(model_name)
        return card().model_dump()

    handlers: dict[str, Callable[..., Awaitable[Response]]] = {
        "/v1/chat/completions": _chat,
        "/v1/completions": _completions,
    }
    for path, handler in handlers.items():
        app.add_api_route(path, _route(handler, slot, served), methods=["POST"])

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        parsed = parse_request(EmbeddingRequest, await _json_body(request))
        served.check(parsed.model)
        raise NotSupported(
            f"The model '{served.name}' is a text-generation model and does not support "
            "embeddings.",
            param="model",
        )


def _route(
    handler: Callable[..., Awaitable[Response]], slot: EngineSlot, served: ServedModel
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(request, await _json_body(request), slot, served)

    return endpoint
