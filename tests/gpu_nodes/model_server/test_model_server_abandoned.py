"""Abandoned and overlong predicts (a real model server process, httpx over loopback):
`runtime.predict_timeout` bounds a request, and a client that disconnects cancels an async
predict and frees its predict_concurrency slot for the next caller."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpu_nodes.model_server.testing import ModelServerProcess, write_package

pytestmark = pytest.mark.integration

ASYNC_SLEEPER = """
import asyncio


class Model:
    async def predict(self, model_input):
        await asyncio.sleep(model_input["sleep"])
        return {"slept": model_input["sleep"]}
"""

SYNC_SLEEPER = """
import time


class Model:
    def predict(self, model_input):
        time.sleep(model_input["sleep"])
        return {"slept": model_input["sleep"]}
"""


def serve(tmp_path: Path, name: str, code: str, timeout_s: int) -> Iterator[ModelServerProcess]:
    runtime = {"predict_concurrency": 1, "predict_timeout": timeout_s}
    package = write_package(tmp_path / name, code, {"model_name": name, "runtime": runtime})
    with ModelServerProcess(package, log_path=tmp_path / f"{name}.log") as server:
        server.wait_ready(timeout=60)
        yield server


@pytest.fixture
def async_server(tmp_path: Path) -> Iterator[ModelServerProcess]:
    yield from serve(tmp_path, "async-sleeper", ASYNC_SLEEPER, 3)


@pytest.fixture
def sync_server(tmp_path: Path) -> Iterator[ModelServerProcess]:
    yield from serve(tmp_path, "sync-sleeper", SYNC_SLEEPER, 3)


def predict(server: ModelServerProcess, sleep: float, timeout: float = 30) -> httpx.Response:
    url = f"{server.url}/v1/models/model:predict"
    return httpx.post(url, json={"sleep": sleep}, timeout=timeout)


def test_disconnect_cancels_async_predict_and_frees_the_slot(
    async_server: ModelServerProcess,
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        predict(async_server, 200, timeout=1)  # like `curl -m 1`: the client gives up
    started = time.monotonic()
    answer = predict(async_server, 0)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 2, "the abandoned predict still held the only slot"
    assert "cancelled: the client disconnected" in async_server.log()


def test_async_predict_past_the_timeout_is_504_and_frees_the_slot(
    async_server: ModelServerProcess,
) -> None:
    started = time.monotonic()
    late = predict(async_server, 200)
    assert late.status_code == 504
    assert "runtime.predict_timeout=3s" in late.json()["error"]
    assert 2.5 < time.monotonic() - started < 10
    assert predict(async_server, 0).json() == {"slept": 0}


def test_sync_predict_past_the_timeout_answers_and_keeps_its_slot_until_it_returns(
    sync_server: ModelServerProcess,
) -> None:
    late = predict(sync_server, 5)
    assert late.status_code == 504
    # The thread still runs (it cannot be stopped) and holds the only slot: the next caller
    # waits no longer than its own timeout, then is served once the thread has returned.
    started = time.monotonic()
    waiting = predict(sync_server, 0)
    assert waiting.status_code in (200, 504)
    assert time.monotonic() - started < 3.5 + 1
    time.sleep(2)
    assert predict(sync_server, 0).json() == {"slept": 0}
