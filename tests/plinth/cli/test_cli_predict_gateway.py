"""`plinth predict` through the real gateway to real model servers running the examples.

The gateway serves from a routing-table cache file (its documented behaviour while the
control plane is unreachable), so this needs no control plane: model server processes for
examples/hello and examples/streaming, one gateway process, the CLI as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

RunCli = Callable[..., subprocess.CompletedProcess[str]]
REPO_ROOT = Path(__file__).resolve().parents[3]
API_KEY = "pl_gateway_test_key"
STARTUP_TIMEOUT_S = 60.0

pytestmark = pytest.mark.integration


def routing_table(replicas: dict[str, str]) -> dict[str, object]:
    models = {
        model_id: {
            "name": model_id,
            "environments": {"production": f"dep-{model_id}", "development": None},
            "deployments": {
                f"dep-{model_id}": {
                    "status": "ACTIVE",
                    "predict_concurrency": 2,
                    "replicas": [{"id": f"r-{model_id}", "url": url, "ready": True}],
                }
            },
        }
        for model_id, url in replicas.items()
    }
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    return {"version": 1, "api_key_hashes": [key_hash], "models": models}


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    testing = pytest.importorskip("gpu_nodes.model_server.testing")
    pytest.importorskip("gpu_nodes.gateway.app")
    work = tmp_path_factory.mktemp("gateway")
    examples = REPO_ROOT / "examples"
    servers = {
        name: testing.ModelServerProcess(examples / name, log_path=work / f"{name}.log")
        for name in ("hello", "streaming")
    }
    gateway: subprocess.Popen[bytes] | None = None
    try:
        for server in servers.values():
            server.wait_ready(timeout=STARTUP_TIMEOUT_S)
        cache = work / "routing.json"
        cache.write_text(json.dumps(routing_table({n: s.url for n, s in servers.items()})))
        port = free_port()
        command = [sys.executable, "-m", "gpu_nodes.gateway", "--port", str(port)]
        command += ["--control-plane-url", f"http://127.0.0.1:{free_port()}"]
        command += ["--cache-file", str(cache)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        with (work / "gateway.log").open("wb") as log:
            gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        wait_serving(url, gateway)
        yield url
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait(timeout=5)
        for server in servers.values():
            server.stop()


def wait_serving(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    headers = {"Authorization": f"Api-Key {API_KEY}"}
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gateway exited at startup"
        try:
            probe = httpx.post(
                f"{url}/models/hello/production/predict", json={"x": 1}, headers=headers, timeout=5
            )
            if probe.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"gateway at {url} did not serve hello within {STARTUP_TIMEOUT_S} s")


@pytest.fixture
def gw_env(cli_env: dict[str, str], gateway_url: str) -> dict[str, str]:
    cli_env["PLINTH_GATEWAY_URL"] = gateway_url
    cli_env["PLINTH_API_KEY"] = API_KEY
    # No control plane: `predict` takes the model argument as an id then.
    cli_env["PLINTH_URL"] = f"http://127.0.0.1:{free_port()}"
    return cli_env


def test_predict_json(gw_env: dict[str, str], run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("predict", "hello", "--data", '{"x": 4}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"x": 4, "doubled": 8, "squared": 16, "loaded": True}
    (tmp_path / "input.json").write_text('{"x": 2}', encoding="utf-8")
    from_file = run_cli("predict", "hello", "--deployment", "dep-hello", "--data", "@input.json")
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["squared"] == 4


def test_predict_stream(gw_env: dict[str, str], run_cli: RunCli) -> None:
    result = run_cli("predict", "streaming", "--stream", "--data", '{"n": 3, "delay_s": 0.05}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "chunk 0 chunk 1 chunk 2"


def test_predict_errors(gw_env: dict[str, str], run_cli: RunCli) -> None:
    unknown = run_cli("predict", "nosuchmodel", "--data", "{}")
    assert unknown.returncode == 1 and "error: 404 " in unknown.stderr
    assert "(request id " in unknown.stderr
    bad_key = run_cli("predict", "hello", "--data", '{"x": 1}', "--api-key", "wrong")
    assert bad_key.returncode == 1 and "401" in bad_key.stderr


def test_predict_timeout_says_the_gateway_was_reached(
    gw_env: dict[str, str], run_cli: RunCli
) -> None:
    slow = '{"n": 4, "delay_s": 1}'  # 1 s between chunks: longer than the read timeout
    result = run_cli("predict", "streaming", "--data", slow, "--timeout", "0.3")
    assert result.returncode == 1
    assert "no answer from" in result.stderr and "within 0.3 s" in result.stderr
    assert "cannot reach" not in result.stderr
