"""Truss's OpenAI-style Model methods, each at its own route.

A Model class that defines ``chat_completions``, ``completions``, ``embeddings``, ``messages``
or ``responses`` is served at ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/messages`` or ``/v1/responses``. The method gets the JSON body (and
the request when it names ``request``), as in Truss. What it returns is the response: a
JSON-able value, a Starlette ``Response``, or a (sync or async) generator, streamed as
server-sent events (``responses.SseFramer``). Errors use OpenAI's body, since OpenAI clients
are who call these routes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gpu_nodes.disconnect import CLIENT_CLOSED_STATUS, cancel_on_disconnect
from gpu_nodes.exceptions import openai_error_body
from gpu_nodes.model_server.exceptions import (
    InputError,
    PredictTimeoutError,
    ResultNotSerializableError,
)
from gpu_nodes.model_server.responses import (
    GuardedStreamingResponse,
    SseFramer,
    encode_json,
    encoded_chunks,
    parse_json_body,
)
from gpu_nodes.model_server.runner import (
    OPENAI_METHODS,
    ModelStatus,
    PredictionStream,
    TrussModelHost,
)
from gpu_nodes.model_server.tracebacks import format_user_traceback
from gpu_nodes.serving.request_id import REQUEST_ID_HEADER

log = logging.getLogger("plinth.model_server")

OPENAI_METHOD_PATHS = {
    "chat_completions": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}
# Anthropic messages and OpenAI responses streams name each event and end without [DONE].
NAMED_EVENT_METHODS = frozenset({"messages", "responses"})
SSE_MEDIA_TYPE = "text/event-stream"


def add_openai_method_routes(app: FastAPI, runner: TrussModelHost) -> None:
    for method in OPENAI_METHODS:
        path = OPENAI_METHOD_PATHS[method]
        app.add_api_route(path, _endpoint(runner, method), methods=["POST"], name=method)


def _error(status_code: int, message: str, error_type: str, code: str | None = None) -> Response:
    body = openai_error_body(message, error_type=error_type, code=code)
    return JSONResponse(body, status_code=status_code)


def _endpoint(runner: TrussModelHost, method: str) -> Callable[[Request], Awaitable[Response]]:
    path = OPENAI_METHOD_PATHS[method]

    async def endpoint(request: Request) -> Response:
        state = runner.state
        if state.status is not ModelStatus.READY:
            detail = f"model is not ready (status {state.status.value})"
            return _error(503, detail, "service_unavailable", state.status.value.lower())
        if not runner.has_method(method):
            return _error(
                404,
                f"this model does not serve {path}: its Model class defines no {method}()",
                "invalid_request_error",
                "not_found",
            )
        request_id = request.headers.get(REQUEST_ID_HEADER, "-")
        try:
            return await _answer(runner, method, request, request_id)
        except InputError as exc:
            return _error(exc.status_code, exc.message, "invalid_request_error")
        except PredictTimeoutError as exc:
            log.error("%s request_id=%s: %s", method, request_id, exc)
            return _error(504, str(exc), "timeout")
        except HTTPException as exc:
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            return _error(exc.status_code, detail, "invalid_request_error")
        except ResultNotSerializableError as exc:
            log.error("%s failed request_id=%s: %s", method, request_id, exc)
            return _error(500, str(exc), "server_error")
        except Exception as exc:
            # As predict: the model's exception text stays in the log (it may hold inputs).
            trace = format_user_traceback(exc, runner.user_roots)
            log.error("%s failed request_id=%s\n%s", method, request_id, trace)
            return _error(500, "Internal Server Error", "server_error")

    return endpoint


async def _answer(
    runner: TrussModelHost, method: str, request: Request, request_id: str
) -> Response:
    payload = await parse_json_body(request)
    outcome = await cancel_on_disconnect(
        request, lambda: runner.run_method(method, payload, request)
    )
    if outcome.disconnected:
        log.info("%s request_id=%s cancelled: the client disconnected", method, request_id)
        return Response(status_code=CLIENT_CLOSED_STATUS)
    result: Any = outcome.value
    if isinstance(result, PredictionStream):
        framer = SseFramer(named_events=method in NAMED_EVENT_METHODS)
        return GuardedStreamingResponse(
            encoded_chunks(result, runner, request_id, framer),
            on_close=result.close,
            media_type=SSE_MEDIA_TYPE,
        )
    if isinstance(result, Response):
        return result
    return Response(encode_json(result), media_type="application/json")
