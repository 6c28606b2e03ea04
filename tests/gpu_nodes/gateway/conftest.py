"""Fixtures: a control-plane stub serving the routing table, a real gateway subprocess, and real
model server replicas (subprocesses) serving small packages written to tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from gpu_nodes.gateway import hash_api_key
from gpu_nodes.model_server.testing import ModelServerProcess, write_package
from tests.support.servers import UvicornThread, free_port

API_KEY = "pk-test-0123456789abcdef"
INTERNAL_TOKEN = "internal-test-token"

ECHO_MODEL = """
import os
import time
from pathlib import Path

class Model:
    def predict(self, model_input):
        op = model_input.get("op")
        if op == "hold":
            gate = Path(model_input["gate"])
            # Tell the test which replica holds the request.
            Path(f"{gate}.{os.environ['REPLICA_NAME']}.started").touch()
            deadline = time.monotonic() + 20
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        if op == "die":
            os._exit(3)
        if op == "stream":
            return self._stream(Path(model_input["gate"]))
        if op == "stream_then_die":
            return self._stream_then_die()
        return {"replica": os.environ["REPLICA_NAME"], "input": model_input}

    def _stream(self, gate):
        yield "first\\n"
        deadline = time.monotonic() + 20
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "second\\n"

    def _stream_then_die(self):
        yield "partial\\n"
        time.sleep(0.2)
        os._exit(4)
"""


class ControlPlaneStub:
    """Serves ``GET /v1/routing`` (checking the internal token) and records wake calls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.table: dict[str, Any] = {"version": 1, "api_key_hashes": [], "models": {}}
        self.wake_calls: list[tuple[str, str]] = []
        self.async_submits: list[tuple[str, str, bytes]] = []
        self.on_wake: Callable[[str, str], None] | None = None
        self.auth_failures = 0
        self._server: UvicornThread | None = None

    def _app(self) -> FastAPI:
        app = FastAPI()

        def check(request: Request) -> None:
            if request.headers.get("authorization") != f"Bearer {INTERNAL_TOKEN}":
                self.auth_failures += 1
                raise HTTPException(401, "bad internal token")

        @app.get("/v1/routing")
        def routing(request: Request) -> dict[str, Any]:
            check(request)
            return self.table

        @app.post("/v1/models/{model_id}/deployments/{deployment_id}/wake")
        def wake(model_id: str, deployment_id: str, request: Request) -> dict[str, str]:
            check(request)
            self.wake_calls.append((model_id, deployment_id))
            if self.on_wake is not None:
                self.on_wake(model_id, deployment_id)
            return {"status": "waking"}

        @app.post(
            "/v1/models/{model_id}/deployments/{deployment_id}/async_requests", status_code=201
        )
        async def async_submit(model_id: str, deployment_id: str, request: Request) -> dict:
            check(request)
            self.async_submits.append((model_id, deployment_id, await request.body()))
            return {"request_id": f"r{len(self.async_submits)}"}

        return app

    def set_table(self, models: dict[str, Any]) -> int:
        version = int(self.table["version"]) + 1
        self.table = {
            "version": version,
            "api_key_hashes": [hash_api_key(API_KEY)],
            "models": models,
        }
        return version

    def start(self) -> None:
        # A fresh server each time on the same port: tests stop and restart the control plane.
        self._server = UvicornThread(
            self._app(),
            port=self.port,
            start_timeout=10,
            stop_timeout=10,
            name="control plane stub",
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class GatewayProcess:
    def __init__(self, control_plane_url: str, log_path: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "gpu_nodes.gateway", "--control-plane-url"]
        command += [control_plane_url, "--port", str(self.port)]
        command += ["--internal-token", INTERNAL_TOKEN, *extra]
        self._log = log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def wait_version(self, version: int | None = None, timeout: float = 20.0) -> None:
        """Wait until the gateway serves a table (at least ``version`` when given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health["ok"] and (version is None or health["version"] >= version):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"gateway did not load table version {version}:\n{self.log()}")

    def wait_live(self, timeout: float = 20.0) -> int:
        """Wait until the gateway answers at all; returns the /healthz status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.02)
        raise TimeoutError(f"gateway did not start:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def deployment(*replicas: ModelServerProcess | str, status: str = "ACTIVE", engine: bool = False):
    entries = []
    for index, replica in enumerate(replicas):
        url = replica if isinstance(replica, str) else replica.url
        entries.append({"id": f"r-{index}-{url.rsplit(':', 1)[-1]}", "url": url, "ready": True})
    return {"status": status, "engine": engine, "predict_concurrency": 8, "replicas": entries}


class Cluster:
    """Session-wide servers: control plane stub, gateway, echo replicas."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.package = write_package(
            root / "echo",
            ECHO_MODEL,
            {"model_name": "echo", "runtime": {"predict_concurrency": 8}},
        )
        self.replicas: dict[str, ModelServerProcess] = {}
        self.control_plane = ControlPlaneStub()
        self.gateway: GatewayProcess | None = None

    def start_replica(self, name: str) -> ModelServerProcess:
        server = ModelServerProcess(
            self.package, log_path=self.root / f"{name}.log", env={"REPLICA_NAME": name}
        )
        self.replicas[name] = server
        return server

    def baseline_models(self) -> dict[str, Any]:
        r = self.replicas
        return {
            "m-echo": {
                "name": "echo",
                "environments": {
                    "production": "d-prod",
                    "development": "d-dev",
                    "staging": "d-dev",
                    "empty": None,
                },
                "deployments": {
                    "d-prod": deployment(r["prod-a"], r["prod-b"]),
                    "d-dev": deployment(r["dev"]),
                    "d-old": deployment(r["dev"], status="INACTIVE"),
                },
            }
        }

    def publish(self, models: dict[str, Any]) -> None:
        assert self.gateway is not None
        self.gateway.wait_version(self.control_plane.set_table(models))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("gateway-cluster"))
    try:
        for name in ("prod-a", "prod-b", "dev"):
            cluster.start_replica(name)
        cluster.control_plane.start()
        cluster.control_plane.set_table({})
        cluster.gateway = GatewayProcess(
            cluster.control_plane.url,
            cluster.root / "gateway.log",
            "--poll-interval",
            "0.1",
            "--park-timeout",
            "15",
            "--max-body-bytes",
            "4096",
            "--cache-file",
            str(cluster.root / "routing-cache.json"),
        )
        for replica in cluster.replicas.values():
            replica.wait_ready()
        cluster.publish(cluster.baseline_models())
        yield cluster
    finally:
        if cluster.gateway is not None:
            cluster.gateway.stop()
        cluster.control_plane.stop()
        for replica in cluster.replicas.values():
            replica.stop()


@pytest.fixture
def gw(cluster: Cluster) -> Iterator[Cluster]:
    """The session cluster with the baseline table in place (restored after the test)."""
    cluster.control_plane.on_wake = None
    cluster.control_plane.wake_calls.clear()
    cluster.publish(cluster.baseline_models())
    yield cluster
    cluster.control_plane.on_wake = None


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def headers() -> dict[str, str]:
    return {"Authorization": f"Api-Key {API_KEY}"}


@pytest.fixture
def start_gateway(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start extra gateways against the same control plane stub (stopped after the test)."""
    started: list[GatewayProcess] = []

    def start(*extra: str) -> GatewayProcess:
        gateway = GatewayProcess(
            cluster.control_plane.url, tmp_path / f"gateway-{len(started)}.log", *extra
        )
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
