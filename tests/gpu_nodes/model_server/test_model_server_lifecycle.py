"""Loading states (LOADING -> READY, FAILED), user errors with trimmed tracebacks, bad packages."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gpu_nodes.model_server.testing import write_package

pytestmark = pytest.mark.integration

SLOW_LOAD_MODEL = """
import time
from pathlib import Path

class Model:
    def __init__(self, config):
        self._gate = Path(config["model_metadata"]["gate_file"])

    def load(self):
        deadline = time.monotonic() + 20
        while not self._gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def predict(self, model_input):
        return {"loaded": True}
"""


def test_not_ready_503_during_a_slow_load(serve, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    config = {"model_name": "slow", "model_metadata": {"gate_file": str(gate)}}
    server = serve(SLOW_LOAD_MODEL, config, wait="live")
    assert httpx.get(f"{server.url}/").status_code == 200  # liveness while loading

    readiness = httpx.get(f"{server.url}/v1/models/model")
    assert readiness.status_code == 503
    body = readiness.json()
    phases = body.pop("cold_start")
    assert body == {"model_name": "slow", "ready": False, "status": "LOADING"}
    # No weights to fetch: weights are ready at once; load() is still running.
    assert set(phases) == {"environment_ready_at", "weights_ready_at"}
    early = httpx.post(f"{server.url}/v1/models/model:predict", json={})
    assert early.status_code == 503
    assert "not ready" in early.json()["error"]

    gate.touch()
    server.wait_ready(timeout=15)
    assert httpx.post(f"{server.url}/v1/models/model:predict", json={}).json() == {"loaded": True}
    done = httpx.get(f"{server.url}/v1/models/model").json()["cold_start"]
    assert done["environment_ready_at"] <= done["weights_ready_at"] <= done["model_loaded_at"]
    assert done["model_loaded_at"] - done["environment_ready_at"] < 30


FAILING_LOAD_MODEL = """
def _read_weights(path):
    raise FileNotFoundError(f"weights missing at {path}")

class Model:
    def load(self):
        _read_weights("/nowhere/model.safetensors")

    def predict(self, model_input):
        return {}
"""


def test_load_failure_reports_failed_with_the_error(serve) -> None:
    server = serve(FAILING_LOAD_MODEL, wait="live")
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/v1/models/model").json()["status"] == "LOADING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    readiness = httpx.get(f"{server.url}/v1/models/model")
    assert readiness.status_code == 503
    body = readiness.json()
    assert body["status"] == "FAILED" and body["ready"] is False
    assert "FileNotFoundError: weights missing at /nowhere/model.safetensors" in body["error"]
    predict = httpx.post(f"{server.url}/v1/models/model:predict", json={})
    assert predict.status_code == 503
    assert "FAILED" in predict.json()["error"]
    log = server.log()
    assert "_read_weights" in log and "model/model.py" in log
    assert "gpu_nodes/model_server" not in log


def test_missing_declared_secret_fails_load_naming_it(serve) -> None:
    model = """
    class Model:
        def __init__(self, secrets):
            self._token = secrets["hf_access_token"]

        def predict(self, model_input):
            return {}
    """
    server = serve(
        model, {"model_name": "needs-secret", "secrets": {"hf_access_token": None}}, wait="live"
    )
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/v1/models/model").json()["status"] == "LOADING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    error = httpx.get(f"{server.url}/v1/models/model").json()["error"]
    assert "hf_access_token" in error and "not provided" in error


ERRORING_MODEL = """
from model.util import divide

class Model:
    def predict(self, model_input):
        return {"ratio": divide(model_input["a"], model_input["b"])}
"""


def test_user_exception_is_500_with_trimmed_traceback_in_log(serve) -> None:
    server = serve(ERRORING_MODEL, files={"model/util.py": "def divide(a, b):\n    return a / b\n"})
    response = httpx.post(
        f"{server.url}/v1/models/model:predict",
        json={"a": 1, "b": 0},
        headers={"X-Request-Id": "r-42"},
    )
    assert response.status_code == 500
    # As Truss: the exception's text stays in the log, found by the request id.
    assert response.json() == {"error": "Internal Server Error"}
    assert response.headers["x-request-id"] == "r-42"
    log = server.log()
    trace = log[log.index("predict failed request_id=r-42") :]
    assert 'model/model.py", line 6, in predict' in trace
    assert 'model/util.py", line 2, in divide' in trace
    assert "ZeroDivisionError: division by zero" in trace
    for server_frame in ("gpu_nodes/model_server", "anyio", "starlette", "fastapi"):
        assert server_frame not in trace
    assert httpx.post(f"{server.url}/v1/models/model:predict", json={"a": 4, "b": 2}).json() == {
        "ratio": 2.0
    }


def test_missing_model_class_fails_naming_the_class(serve) -> None:
    server = serve(
        "class Other:\n    pass\n", {"model_name": "x", "model_class_name": "Missing"}, wait="live"
    )
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/v1/models/model").json()["status"] == "LOADING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    error = httpx.get(f"{server.url}/v1/models/model").json()["error"]
    assert "'Missing'" in error and "model_class_name" in error


def test_missing_config_exits_with_a_clear_error(tmp_path: Path) -> None:
    package = write_package(
        tmp_path / "pkg", "class Model:\n    def predict(self, x):\n        return x\n"
    )
    (package / "config.yaml").unlink()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpu_nodes.model_server",
            "--model-dir",
            str(package),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no config.yaml" in result.stdout + result.stderr
