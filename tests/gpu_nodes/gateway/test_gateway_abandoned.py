"""A client that gives up on a request through the gateway: the gateway closes the upstream
request (the replica cancels its async predict and frees its only slot) and stops counting
it as in flight, so the next requests spread over both replicas again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_nodes.model_server.testing import ModelServerProcess, write_package

pytestmark = pytest.mark.integration

SLEEPER = """
import asyncio
import os


class Model:
    async def predict(self, model_input):
        await asyncio.sleep(model_input["sleep"])
        return {"replica": os.environ["REPLICA_NAME"]}
"""


@pytest.fixture(scope="module")
def sleepers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ModelServerProcess]]:
    root = tmp_path_factory.mktemp("sleepers")
    config = {"model_name": "sleeper", "runtime": {"predict_concurrency": 1}}
    package = write_package(root / "sleeper", SLEEPER, config)
    servers = [
        ModelServerProcess(package, log_path=root / f"{name}.log", env={"REPLICA_NAME": name})
        for name in ("sleep-a", "sleep-b")
    ]
    try:
        for server in servers:
            server.wait_ready(timeout=60)
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_client_disconnect_cancels_upstream_and_stops_counting_it(
    gw: Any, sleepers: list[ModelServerProcess], headers: dict[str, str], tmp_path: Path
) -> None:
    models = gw.baseline_models()
    models["m-sleep"] = {
        "name": "sleeper",
        "environments": {"production": "d-sleep"},
        "deployments": {
            "d-sleep": {
                "status": "ACTIVE",
                "predict_concurrency": 1,
                "replicas": [
                    {"id": f"r-sleep-{i}", "url": s.url, "ready": True}
                    for i, s in enumerate(sleepers)
                ],
            }
        },
    }
    gw.publish(models)
    url = gw.gateway.url + "/models/m-sleep/production/predict"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"sleep": 200}, headers=headers, timeout=1)

    deadline = time.monotonic() + 10
    while not any("cancelled: the client disconnected" in s.log() for s in sleepers):
        assert time.monotonic() < deadline, "no replica saw the abandoned predict cancelled"
        time.sleep(0.1)
    answered = [
        httpx.post(url, json={"sleep": 0}, headers=headers, timeout=5).json()["replica"]
        for _ in range(6)
    ]
    assert sorted(set(answered)) == ["sleep-a", "sleep-b"], answered
