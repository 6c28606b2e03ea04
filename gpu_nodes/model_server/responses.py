"""HTTP in and out of the model server: the JSON request body, JSON results, stream chunks
(raw or server-sent events), and a streaming response that always releases what the stream
holds (also on disconnect or error)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from gpu_nodes.model_server.exceptions import InputError, ResultNotSerializableError
from gpu_nodes.model_server.runner import PredictionStream, TrussModelHost
from gpu_nodes.model_server.tracebacks import format_user_traceback

log = logging.getLogger("plinth.model_server")


async def parse_json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise InputError("request body is empty: send a JSON document")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON: {exc}") from exc


def json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if callable(getattr(value, "tolist", None)):  # numpy arrays / torch tensors
        return value.tolist()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def encode_json(result: Any) -> bytes:
    try:
        return json.dumps(result, default=json_default, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ResultNotSerializableError(
            f"the model returned a {type(result).__name__} that cannot be sent as JSON: {exc}"
        ) from exc


def encode_chunk(chunk: Any) -> bytes:
    """Stream chunks: bytes and str as they are, anything else as one JSON line."""
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode()
    return encode_json(chunk) + b"\n"


class ChunkFramer(Protocol):
    """Turns each chunk a model yields into bytes, and ends the stream."""

    def frame(self, chunk: Any) -> bytes: ...

    def trailer(self) -> bytes: ...


class RawFramer:
    """Truss predict streams: chunks as they are (see ``encode_chunk``), nothing appended."""

    def frame(self, chunk: Any) -> bytes:
        return encode_chunk(chunk)

    def trailer(self) -> bytes:
        return b""


class SseFramer:
    """Server-sent events for OpenAI-style methods.

    A str or bytes chunk passes as it is (the model frames its own events, as Truss users
    relaying vLLM do). Any other chunk is one event: ``data: <json>`` (OpenAI chat and
    completions; the stream then ends with ``data: [DONE]``), or with ``named_events``
    ``event: <chunk type>`` + ``data: <json>`` (Anthropic messages, OpenAI responses, whose
    streams end with their last event and no [DONE]).
    """

    def __init__(self, *, named_events: bool) -> None:
        self._named_events = named_events
        self._framed_any = False

    def frame(self, chunk: Any) -> bytes:
        if isinstance(chunk, bytes | bytearray | memoryview | str):
            return encode_chunk(chunk)
        self._framed_any = True
        data = encode_json(chunk)
        event_type = _event_type(chunk) if self._named_events else None
        if event_type:
            return f"event: {event_type}\n".encode() + b"data: " + data + b"\n\n"
        return b"data: " + data + b"\n\n"

    def trailer(self) -> bytes:
        # A model that framed its own events wrote its own ending too.
        if self._framed_any and not self._named_events:
            return b"data: [DONE]\n\n"
        return b""


def _event_type(chunk: Any) -> str | None:
    value = chunk.get("type") if isinstance(chunk, dict) else getattr(chunk, "type", None)
    return value if isinstance(value, str) and value.isprintable() else None


async def encoded_chunks(
    stream: PredictionStream,
    runner: TrussModelHost,
    request_id: str,
    framer: ChunkFramer | None = None,
) -> AsyncGenerator[bytes, None]:
    framer = framer or RawFramer()
    try:
        async for chunk in stream.chunks():
            yield framer.frame(chunk)
        trailer = framer.trailer()
        if trailer:
            yield trailer
    except TimeoutError:
        log.error(
            "stream aborted request_id=%s: no chunk within streaming_read_timeout=%ss",
            request_id,
            runner.cfg.streaming_read_timeout,
        )
        raise StreamAborted from None
    except Exception as exc:
        trace = format_user_traceback(exc, runner.user_roots)
        log.error("stream failed request_id=%s\n%s", request_id, trace)
        raise StreamAborted from exc


class StreamAborted(Exception):
    """The stream failed after the response started (already logged): drop the connection."""


class GuardedStreamingResponse(StreamingResponse):
    """Streams and then always runs ``on_close`` (also on disconnect or error)."""

    def __init__(self, content: Any, *, on_close: Any, media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except StreamAborted:
            # Returning without the final body message makes the server close the connection,
            # so the client sees a broken stream rather than a short, "complete" one.
            pass
        finally:
            await self._on_close()
