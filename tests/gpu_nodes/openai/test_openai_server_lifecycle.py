"""The OpenAI app in-process (uvicorn in a thread) so the engine can be inspected: client
disconnects abort engine requests; a failed load answers 503; the Truss routes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_nodes.openai.server import create_openai_app
from plinth.spec import load_config
from tests.support.servers import UvicornThread

pytestmark = pytest.mark.integration

MODEL = "tiny-chat"
HELLO = [{"role": "user", "content": "hi"}]
LONG = {"model": MODEL, "messages": HELLO, "max_tokens": 3000, "ignore_eos": True}


def wait_until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _package(root: Path, model_path: str, max_model_len: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    engine = f"  kind: builtin\n  model_path: {model_path}\n  device: cpu\n"
    engine += f"  max_model_len: {max_model_len}\n"
    (root / "config.yaml").write_text(f"model_name: {MODEL}\nengine:\n{engine}")
    return root


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Any]:
    package = _package(tmp_path_factory.mktemp("openai-live"), str(tiny_model), 4096)
    with UvicornThread(
        create_openai_app(package, load_config(package)), start_timeout=20
    ) as server:
        wait_until(
            lambda: httpx.get(server.url + "/v1/models/model").status_code == 200,
            timeout=120,
            what="engine ready",
        )
        yield server


def _engine_idle(server: UvicornThread) -> bool:
    return not server.app.state.engine_slot.engine.core.has_unfinished_requests()


def _aborts(server: UvicornThread) -> int:
    return len(server.app.state.engine_slot.engine.recent_aborts)


def test_truss_routes(live_server: UvicornThread) -> None:
    assert httpx.get(live_server.url + "/").status_code == 200
    ready = httpx.get(live_server.url + "/v1/models/model")
    assert ready.json() == {"model_name": MODEL, "ready": True}
    predict = live_server.url + "/v1/models/model:predict"
    chat = httpx.post(predict, json={"model": MODEL, "messages": HELLO, "max_tokens": 3})
    assert chat.status_code == 200 and chat.json()["object"] == "chat.completion"
    text = httpx.post(predict, json={"model": MODEL, "prompt": "Hi", "max_tokens": 3})
    assert text.status_code == 200 and text.json()["object"] == "text_completion"
    neither = httpx.post(predict, json={"x": 1})
    assert neither.status_code == 400 and "messages" in neither.json()["error"]["message"]
    not_json = httpx.post(predict, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]


def test_stream_disconnect_aborts_engine_request(live_server: UvicornThread) -> None:
    aborts_before = _aborts(live_server)
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST", live_server.url + "/v1/chat/completions", json={**LONG, "stream": True}
        ) as response,
    ):
        lines = response.iter_lines()
        received = [line for _, line in zip(range(6), lines, strict=False) if line]
        assert len(received) >= 2
        assert not _engine_idle(live_server)  # 3000 tokens: still generating
    # 3000 tokens take longer than this bound on CPU: only an abort frees the engine this soon.
    wait_until(lambda: _engine_idle(live_server), timeout=10, what="abort after disconnect")
    assert _aborts(live_server) == aborts_before + 1


def test_non_stream_disconnect_aborts_engine_request(live_server: UvicornThread) -> None:
    aborts_before = _aborts(live_server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(live_server.url + "/v1/chat/completions", json={**LONG, "n": 2}, timeout=1.5)
    wait_until(lambda: _engine_idle(live_server), timeout=10, what="abort after disconnect")
    assert _aborts(live_server) == aborts_before + 2  # both choices


def test_prompt_longer_than_context_is_400(live_server: UvicornThread) -> None:
    long_prompt = [{"role": "user", "content": "word " * 5000}]
    response = httpx.post(
        live_server.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": long_prompt},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    assert "4096" in response.json()["error"]["message"]


def test_failed_load_answers_503(tmp_path: Path) -> None:
    package = _package(tmp_path / "broken", str(tmp_path / "no-such-weights"), 512)
    with UvicornThread(
        create_openai_app(package, load_config(package)), start_timeout=20
    ) as server:
        wait_until(
            lambda: httpx.get(server.url + "/v1/models/model").json().get("status") == "FAILED",
            timeout=20,
            what="load failure reported",
        )
        ready = httpx.get(server.url + "/v1/models/model")
        assert ready.status_code == 503
        assert "no-such-weights" in ready.json()["error"]
        chat = httpx.post(
            server.url + "/v1/chat/completions", json={"model": MODEL, "messages": HELLO}
        )
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "engine_not_ready"
        assert httpx.get(server.url + "/").status_code == 200
