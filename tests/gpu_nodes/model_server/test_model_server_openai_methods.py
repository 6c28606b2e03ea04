"""A Model class's OpenAI-style methods at their /v1 routes, called with the OpenAI SDK."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from gpu_nodes.model_server.testing import ModelServerProcess

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "openai-methods"

RAW_SSE_MODEL = """
class Model:
    def predict(self, model_input):
        return model_input

    async def chat_completions(self, body, request):
        # An async generator that frames its own events (a relay of vLLM, say): sent as is.
        assert request.headers.get("x-probe") == "1"
        yield 'data: {"id": "x", "object": "chat.completion.chunk", "created": 0, '
        yield '"model": "m", "choices": [{"index": 0, "delta": {"content": "raw"}}]}\\n\\n'
        yield "data: [DONE]\\n\\n"

    def embeddings(self, body):
        raise ValueError("secret input " + str(body))
"""


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> ModelServerProcess:
    root = tmp_path_factory.mktemp("openai-methods")
    package = root / "echo-chat"
    shutil.copytree(EXAMPLE, package)
    server = ModelServerProcess(package, log_path=root / "server.log")
    server.wait_ready()
    yield server
    server.stop()


def client_for(server: ModelServerProcess) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_chat_completions_answers_and_streams(echo_server: ModelServerProcess) -> None:
    client = client_for(echo_server)
    messages = [{"role": "user", "content": "hello there"}]
    reply = client.chat.completions.create(model="echo-chat", messages=messages)
    assert reply.choices[0].message.content == "echo: hello there"
    stream = client.chat.completions.create(model="echo-chat", messages=messages, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "echo: hello there"
    assert len(chunks) == 4 and chunks[-1].choices[0].finish_reason == "stop"
    with httpx.stream(
        "POST",
        echo_server.url + "/v1/chat/completions",
        json={"messages": messages, "stream": True},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    assert body.endswith("data: [DONE]\n\n") and body.count("data: ") == 5


def test_completions_embeddings_and_messages(echo_server: ModelServerProcess) -> None:
    client = client_for(echo_server)
    completion = client.completions.create(model="echo-chat", prompt="abc")
    assert completion.choices[0].text == "echo: abc"
    vectors = client.embeddings.create(model="echo-chat", input=["a", "b"])
    assert [len(item.embedding) for item in vectors.data] == [8, 8]
    assert vectors.data[0].embedding != vectors.data[1].embedding
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", echo_server.url + "/v1/messages", json=body) as resp:
        events = resp.read().decode()
    # Anthropic style: named events, no [DONE].
    assert events.startswith("event: message_start\ndata: {")
    assert events.endswith('event: message_stop\ndata: {"type": "message_stop"}\n\n')
    assert "[DONE]" not in events
    plain = httpx.post(echo_server.url + "/v1/messages", json={**body, "stream": False})
    assert plain.json()["content"] == [{"type": "text", "text": "echo: hi"}]


def test_missing_method_and_bad_body_are_openai_errors(echo_server: ModelServerProcess) -> None:
    missing = httpx.post(echo_server.url + "/v1/responses", json={"input": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == (
        "this model does not serve /v1/responses: its Model class defines no responses()"
    )
    bad = httpx.post(echo_server.url + "/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]["message"]
    # predict is untouched by the methods.
    assert httpx.post(echo_server.url + "/v1/models/model:predict", json={"a": 1}).json() == {
        "echo": {"a": 1}
    }


def test_self_framed_stream_passes_as_is_and_errors_hide_the_text(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(RAW_SSE_MODEL)
    client = OpenAI(
        base_url=server.url + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"x-probe": "1"},
    )
    stream = client.chat.completions.create(model="m", messages=[], stream=True)
    assert [c.choices[0].delta.content for c in stream] == ["raw"]
    with pytest.raises(openai.InternalServerError) as failed:
        client.embeddings.create(model="m", input="x")
    assert "secret input" not in str(failed.value)
    assert "secret input" in server.log()  # the traceback is in the replica's log
