"""Fixtures of the OpenAI conformance suite: one tiny-model replica (a real
``python -m gpu_nodes.model_server`` process) and one real gateway in front of it, shared by the
whole session; an ``openai.OpenAI`` client for each path to them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from fastapi import FastAPI

from gpu_nodes.engine.tiny_model import TinyModelSpec, make_tiny_model
from gpu_nodes.model_server.testing import ModelServerProcess
from tests.support.servers import UvicornThread, free_port

MODEL_NAME = "tiny-chat"
MODEL_ID = "m-tiny"
DEPLOYMENT_ID = "d-tiny-1"
API_KEY = "pl-test-openai-key"
READY_TIMEOUT_S = 120.0


def write_engine_package(root: Path, model_dir: Path, **engine: Any) -> Path:
    """An engine package: config.yaml whose ``engine:`` section points at ``model_dir``."""
    root.mkdir(parents=True, exist_ok=True)
    section = {"kind": "builtin", "model_path": str(model_dir), "device": "cpu", **engine}
    config = {"model_name": MODEL_NAME, "engine": section}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("openai-tiny-llama"), TinyModelSpec(seed=0))


@pytest.fixture(scope="session")
def engine_package(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    root = tmp_path_factory.mktemp("openai-package")
    return write_engine_package(root, tiny_model, max_model_len=512, max_num_seqs=16)


@pytest.fixture(scope="session")
def replica(
    tmp_path_factory: pytest.TempPathFactory, engine_package: Path
) -> Iterator[ModelServerProcess]:
    log = tmp_path_factory.mktemp("openai-logs") / "replica.log"
    server = ModelServerProcess(engine_package, log_path=log, env={"PLINTH_MODEL_ID": MODEL_ID})
    try:
        server.wait_ready(timeout=READY_TIMEOUT_S)
        yield server
    finally:
        server.stop()


class RoutingTableServer(UvicornThread):
    """A stand-in control plane publishing the routing table (the gateway's only input)."""

    def __init__(self, replica_url: str) -> None:
        table = {
            "version": 1,
            "api_key_hashes": [hashlib.sha256(API_KEY.encode()).hexdigest()],
            "models": {
                MODEL_ID: {
                    "name": MODEL_NAME,
                    "environments": {"production": DEPLOYMENT_ID, "development": None},
                    "deployments": {
                        DEPLOYMENT_ID: {
                            "status": "ACTIVE",
                            "engine": True,
                            "predict_concurrency": 16,
                            "replicas": [{"id": "r-1", "url": replica_url, "ready": True}],
                        }
                    },
                }
            },
        }
        app = FastAPI()
        app.get("/v1/routing")(lambda: table)
        super().__init__(app, start_timeout=20, stop_timeout=10, name="routing table server")


@pytest.fixture(scope="session")
def gateway_url(
    tmp_path_factory: pytest.TempPathFactory, replica: ModelServerProcess
) -> Iterator[str]:
    table = RoutingTableServer(replica.url)
    table.start()
    port = free_port()
    log_path = tmp_path_factory.mktemp("openai-gateway") / "gateway.log"
    command = [sys.executable, "-m", "gpu_nodes.gateway", "--control-plane-url", table.url]
    command += ["--port", str(port), "--poll-interval", "0.2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_gateway(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        table.stop()


def _wait_gateway(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"gateway not ready: {log_path.read_text(errors='replace')}")


@pytest.fixture(scope="session", params=["direct", "gateway", "gateway-model-path"])
def client(request: pytest.FixtureRequest, replica: ModelServerProcess) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the replica, the gateway's ``/v1`` (routing by the ``model``
    field) and the gateway's per-model path ``/models/{id}/production/v1``."""
    if request.param == "direct":
        base_url = replica.url + "/v1"
    else:
        gateway = request.getfixturevalue("gateway_url")
        prefix = "/v1" if request.param == "gateway" else f"/models/{MODEL_ID}/production/v1"
        base_url = gateway + prefix
    sdk = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=60)
    try:
        yield sdk
    finally:
        sdk.close()


@pytest.fixture(scope="session")
def direct_client(replica: ModelServerProcess) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=replica.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        yield sdk
    finally:
        sdk.close()
