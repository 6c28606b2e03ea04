"""Gateway-level OpenAI API with the official SDK: model-field routing, /v1/models, streaming.

The replicas here are small OpenAI-shaped upstreams that report what they received (the real
engine server is tested by its own suite, also through this gateway); the gateway is what is
under test: routing by ``model``, passthrough of paths, bodies and SSE streams, error shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.support.servers import UvicornThread

pytestmark = pytest.mark.integration


def _upstream_app(name: str) -> FastAPI:
    app = FastAPI()

    def completion(content: str, model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen = f"{name} {request.url.path} model={body['model']}"
        if request.headers.get("authorization"):
            seen += " LEAKED-AUTH"
        if not body.get("stream"):
            return JSONResponse(completion(seen, body["model"]))

        def events() -> Iterator[str]:
            for piece in seen.split(" "):
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece + " "}}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _upstream(name: str) -> UvicornThread:
    return UvicornThread(
        _upstream_app(name), start_timeout=10, stop_timeout=10, name=f"upstream {name}"
    ).start()


@pytest.fixture
def llm(gw) -> Iterator[Any]:
    upstreams = [_upstream("prod-llm"), _upstream("staging-llm")]
    try:
        models = gw.baseline_models()
        models["m-llm"] = {
            "name": "tiny-llm",
            "environments": {"production": "d-llm", "staging": "d-llm-2"},
            "deployments": {
                name: {
                    "status": "ACTIVE",
                    "engine": True,
                    "replicas": [{"id": "r", "url": upstream.url, "ready": True}],
                }
                for name, upstream in zip(("d-llm", "d-llm-2"), upstreams, strict=True)
            },
        }
        gw.publish(models)
        yield gw
    finally:
        for upstream in upstreams:
            upstream.stop()


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)


def test_models_list_shows_engine_deployments_only(llm, api_key) -> None:
    models = _client(llm.gateway.url + "/v1", api_key).models.list()
    assert [m.id for m in models.data] == ["tiny-llm"]


def test_chat_routed_by_model_name_id_and_environment(llm, api_key) -> None:
    client = _client(llm.gateway.url + "/v1", api_key)
    messages = [{"role": "user", "content": "hi"}]
    by_name = client.chat.completions.create(model="tiny-llm", messages=messages)
    assert by_name.choices[0].message.content == "prod-llm /v1/chat/completions model=tiny-llm"
    by_id = client.chat.completions.create(model="m-llm", messages=messages)
    assert by_id.choices[0].message.content.startswith("prod-llm ")
    staging = client.chat.completions.create(model="tiny-llm@staging", messages=messages)
    assert staging.choices[0].message.content.startswith("staging-llm ")


def test_chat_stream_passes_through(llm, api_key) -> None:
    client = _client(llm.gateway.url + "/v1", api_key)
    stream = client.chat.completions.create(
        model="tiny-llm", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "prod-llm /v1/chat/completions model=tiny-llm "


def test_per_model_openai_path_is_forwarded_verbatim(llm, api_key) -> None:
    client = _client(llm.gateway.url + "/models/m-llm/environments/staging/v1", api_key)
    reply = client.chat.completions.create(
        model="tiny-llm", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "staging-llm /v1/chat/completions model=tiny-llm"


def test_openai_errors_use_openai_shape(llm, api_key) -> None:
    client = _client(llm.gateway.url + "/v1", api_key)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=messages)
    error = unknown.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "no-such-model" in error["message"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="tiny-llm@qa", messages=messages)
    with pytest.raises(openai.AuthenticationError) as bad_key:
        _client(llm.gateway.url + "/v1", "wrong").chat.completions.create(
            model="tiny-llm", messages=messages
        )
    assert bad_key.value.body["code"] == "invalid_api_key"
    missing_model = httpx.post(
        llm.gateway.url + "/v1/chat/completions",
        json={"messages": messages},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert missing_model.status_code == 400
    assert missing_model.json()["error"]["param"] == "model"
