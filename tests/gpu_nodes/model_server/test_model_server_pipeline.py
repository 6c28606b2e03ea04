"""preprocess -> predict -> postprocess, sync and async, and streaming generators."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

ASYNC_PIPELINE_MODEL = """
import asyncio
import threading

class Model:
    async def preprocess(self, model_input):
        await asyncio.sleep(0)
        return {"values": model_input["values"], "trail": ["pre"]}

    async def predict(self, model_input):
        return {"values": [v * 10 for v in model_input["values"]],
                "trail": model_input["trail"] + ["predict"]}

    async def postprocess(self, model_output):
        return {"result": model_output["values"], "trail": model_output["trail"] + ["post"]}
"""

MIXED_PIPELINE_MODEL = """
import threading

class Model:
    def preprocess(self, model_input):
        # Sync steps run in a worker thread, not on the event loop thread.
        return {"n": model_input["n"] + 1, "pre_thread": threading.current_thread().name}

    async def predict(self, model_input):
        return {"n": model_input["n"] * 2, "pre_thread": model_input["pre_thread"],
                "predict_thread": threading.current_thread().name}

    def postprocess(self, model_output):
        return {**model_output, "n": model_output["n"] - 1}
"""


def test_async_preprocess_predict_postprocess(serve) -> None:
    server = serve(ASYNC_PIPELINE_MODEL)
    response = httpx.post(f"{server.url}/v1/models/model:predict", json={"values": [1, 2]})
    assert response.status_code == 200, response.text
    assert response.json() == {"result": [10, 20], "trail": ["pre", "predict", "post"]}


def test_sync_and_async_steps_mix(serve) -> None:
    server = serve(MIXED_PIPELINE_MODEL)
    body = httpx.post(f"{server.url}/v1/models/model:predict", json={"n": 3}).json()
    assert body["n"] == 7  # ((3 + 1) * 2) - 1
    assert body["pre_thread"] != body["predict_thread"]
    assert body["predict_thread"] == "MainThread"


STREAMING_MODEL = """
import asyncio
import json
import time
from pathlib import Path

class Model:
    def __init__(self, config):
        self._gate = Path(config["model_metadata"]["gate_file"])

    def preprocess(self, model_input):
        return {**model_input, "preprocessed": True}

    def predict(self, model_input):
        kind = model_input["kind"]
        if kind == "sync":
            return self._sync_chunks(model_input)
        if kind == "async":
            return self._async_chunks()
        if kind == "dicts":
            return ({"i": i, "pre": model_input["preprocessed"]} for i in range(3))
        if kind == "gated":
            return self._gated()
        if kind == "fails_midway":
            return self._fails_midway()
        raise ValueError(kind)

    def postprocess(self, model_output):
        raise AssertionError("postprocess must not be applied to a stream")

    def _sync_chunks(self, model_input):
        for i in range(model_input["count"]):
            yield f"tok{i} "

    async def _async_chunks(self):
        for i in range(4):
            await asyncio.sleep(0)
            yield f"a{i}".encode()

    async def _gated(self):
        yield "first\\n"
        deadline = time.monotonic() + 20
        while not self._gate.exists():  # the test opens the gate after it received "first"
            if time.monotonic() > deadline:
                yield "gate-timeout\\n"
                return
            await asyncio.sleep(0.02)
        yield "second\\n"

    def _fails_midway(self):
        yield "partial "
        raise RuntimeError("generator broke after one chunk")
"""


@pytest.fixture
def streaming_server(serve, tmp_path: Path):
    gate = tmp_path / "gate"
    server = serve(
        STREAMING_MODEL, {"model_name": "stream", "model_metadata": {"gate_file": str(gate)}}
    )
    return server, gate


def test_sync_generator_streams_text(streaming_server) -> None:
    server, _ = streaming_server
    url = f"{server.url}/v1/models/model:predict"
    response = httpx.post(url, json={"kind": "sync", "count": 5})
    assert response.status_code == 200
    assert response.headers.get("transfer-encoding") == "chunked"
    assert response.text == "tok0 tok1 tok2 tok3 tok4 "


def test_async_generator_streams_bytes(streaming_server) -> None:
    server, _ = streaming_server
    response = httpx.post(f"{server.url}/v1/models/model:predict", json={"kind": "async"})
    assert response.content == b"a0a1a2a3"


def test_dict_chunks_are_json_lines_and_postprocess_is_skipped(streaming_server) -> None:
    server, _ = streaming_server
    response = httpx.post(f"{server.url}/v1/models/model:predict", json={"kind": "dicts"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == [{"i": 0, "pre": True}, {"i": 1, "pre": True}, {"i": 2, "pre": True}]


def test_stream_chunks_arrive_before_the_generator_finishes(streaming_server) -> None:
    server, gate = streaming_server
    received: list[str] = []
    with httpx.stream(
        "POST", f"{server.url}/v1/models/model:predict", json={"kind": "gated"}, timeout=30
    ) as response:
        for line in response.iter_lines():
            received.append(line)
            if line == "first":
                gate.touch()  # only possible if "first" reached us while the model waits
    assert received == ["first", "second"]


def test_stream_failing_midway_aborts_the_response(streaming_server) -> None:
    server, _ = streaming_server
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{server.url}/v1/models/model:predict", json={"kind": "fails_midway"})
    deadline = time.monotonic() + 5
    while "generator broke" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert "RuntimeError: generator broke after one chunk" in log
    assert "gpu_nodes/model_server" not in log


TYPED_MODEL = """
from pydantic import BaseModel


class Question(BaseModel):
    text: str
    max_words: int = 3


class Answer(BaseModel):
    words: list[str]


class Model:
    def predict(self, question: Question) -> Answer:
        return Answer(words=question.text.split()[: question.max_words])
"""


def test_pydantic_typed_input_and_output(serve) -> None:
    server = serve(TYPED_MODEL)
    url = f"{server.url}/v1/models/model:predict"
    ok = httpx.post(url, json={"text": "one two three four", "max_words": 2})
    assert ok.status_code == 200
    assert ok.json() == {"words": ["one", "two"]}
    bad = httpx.post(url, json={"max_words": "many"})
    assert bad.status_code == 400
    message = bad.json()["error"]
    assert "Question" in message and "text: Field required" in message and "max_words" in message
