"""Sync first and priority order on `plinth up`, with one slow replica (predict_concurrency 1):
async work only takes the slot sync traffic leaves free, and queued work runs 0s first."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plinth.local import LocalPlatform, start_platform
from tests.support.servers import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PREDICT_S = 0.5  # the slow model's default time per call
SLOW_MODEL = f"""
import time

class Model:
    def predict(self, model_input):
        time.sleep(model_input.get("sleep", {PREDICT_S}))
        return {{"tag": model_input["tag"], "finished": time.time()}}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    saved = os.environ.get("PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS")
    os.environ["PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS"] = "true"
    try:
        running = start_platform(
            tmp_path_factory.mktemp("sync-first"), "127.0.0.1", free_port(), free_port()
        )
    finally:
        if saved is None:
            os.environ.pop("PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS", None)
        else:
            os.environ["PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS"] = saved
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def model(cli: Any, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    package = tmp_path_factory.mktemp("slow")
    (package / "model").mkdir()
    config = (EXAMPLES / "hello" / "config.yaml").read_text()
    config = config.replace("model_name: hello", "model_name: slow")
    (package / "config.yaml").write_text(config + "runtime:\n  predict_concurrency: 1\n")
    (package / "model" / "model.py").write_text(SLOW_MODEL)
    cli("push", str(package), "--promote")
    models = api.get("/v1/models").json()["models"]
    return str(next(m["id"] for m in models if m["name"] == "slow"))


def submit(gateway: httpx.Client, model: str, priority: int, **model_input: Any) -> str:
    body = {"model_input": model_input, "priority": priority}
    resp = gateway.post(f"/models/{model}/production/async_predict", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["request_id"])


def all_finished(gateway: httpx.Client, ids: list[str], timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = [gateway.get(f"/async_request/{request_id}").json() for request_id in ids]
        if all(v["status"] not in ("QUEUED", "IN_PROGRESS") for v in views):
            return views
        time.sleep(0.3)
    raise AssertionError("async requests did not finish in time")


def sync_predict_s(gateway: httpx.Client, model: str, tag: str) -> float:
    started = time.monotonic()
    resp = gateway.post(f"/models/{model}/production/predict", json={"tag": tag})
    assert resp.status_code == 200, resp.text
    return time.monotonic() - started


def test_sync_latency_holds_under_an_async_backlog(gateway, model) -> None:
    """Each sync call waits at most for the one call in flight, never for the async backlog
    (the worker's 4 threads would otherwise queue up to 4 calls ahead of it on the replica);
    and every async request still succeeds, with its own answer."""
    sync_predict_s(gateway, model, "warm-up")
    ids = [submit(gateway, model, 1, tag=f"a{n}") for n in range(12)]
    latencies = []
    for n in range(6):
        time.sleep(0.3)  # a gap: async work takes the slot now and then
        latencies.append(sync_predict_s(gateway, model, f"s{n}"))
    status = gateway.get(f"/models/{model}/production/async_queue_status").json()
    assert status["num_queued_requests"] > 0  # the backlog was there all along
    # One in-flight call (0.5 s) + its own (0.5 s); 4 queued async calls would be 2.5 s.
    assert max(latencies) < 2 * PREDICT_S + 0.8, latencies
    views = all_finished(gateway, ids)
    assert [(v["status"], v["data"]["tag"]) for v in views] == [
        ("SUCCEEDED", f"a{n}") for n in range(12)
    ]
    print(f"sync-first: sync latencies {[round(x, 2) for x in latencies]} s")


def test_priority_order_under_a_saturated_replica(gateway, model) -> None:
    """With the slot held by a slow sync call, priority 2, then 1, then 0 requests are queued;
    they complete 0s first, then 1s, then 2s."""
    holder = threading.Thread(
        target=lambda: gateway.post(
            f"/models/{model}/production/predict", json={"tag": "hold", "sleep": 3}
        )
    )
    holder.start()
    time.sleep(0.5)  # the sync call holds the one slot
    submitted = {}
    for priority in (2, 1, 0):
        for n in range(3):
            request_id = submit(gateway, model, priority, tag=f"p{priority}-{n}", sleep=0.2)
            submitted[request_id] = priority
    holder.join()
    views = all_finished(gateway, list(submitted))
    assert all(v["status"] == "SUCCEEDED" for v in views)
    by_completion = sorted(views, key=lambda v: v["finished_at"])
    assert [submitted[v["request_id"]] for v in by_completion] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
