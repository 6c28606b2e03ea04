"""A model's environment holds its requirements plus the model server's runtime, nothing else
of the platform: a forgotten requirement fails locally as it would on a cluster, while the
examples (one with a requirement, one served by the built-in engine) still deploy."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gpu_nodes.engine.tiny_model import TinyModelSpec, ensure_tiny_model
from plinth.local import LocalPlatform

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
Cli = Callable[..., subprocess.CompletedProcess[str]]

NUMPY_MODEL = """
import numpy


class Model:
    def predict(self, model_input):
        return {"sum": float(numpy.sum(model_input["values"]))}
"""


def only_deployment(api: httpx.Client, name: str) -> dict:
    models = api.get("/v1/models").json()["models"]
    mid = next(m["id"] for m in models if m["name"] == name)
    deployments = api.get(f"/v1/models/{mid}/deployments").json()["deployments"]
    assert len(deployments) == 1, deployments
    return dict(deployments[0])


def test_unlisted_import_fails_with_module_not_found(
    cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    package = tmp_path / "forgot-numpy"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(NUMPY_MODEL)
    (package / "config.yaml").write_text("model_name: forgot-numpy\nrequirements: []\n")
    pushed = cli("push", str(package), "--timeout", "120", check=False)
    assert pushed.returncode != 0, pushed.stdout
    dep = only_deployment(api, "forgot-numpy")
    assert dep["status"] == "FAILED"
    logs = api.get(f"/v1/models/{dep['model_id']}/deployments/{dep['id']}/logs").json()
    text = "\n".join(map(str, logs["build"] + logs["replicas"])) + (dep["status_message"] or "")
    assert "ModuleNotFoundError: No module named 'numpy'" in text


def test_example_with_a_requirement_serves(
    cli: Cli, api: httpx.Client, gateway: httpx.Client
) -> None:
    cli("push", str(EXAMPLES / "with-requirements"), "--promote")
    dep = only_deployment(api, "with-requirements")
    body = {"headers": ["name"], "rows": [["ada"]]}
    resp = gateway.post(f"/models/{dep['model_id']}/production/predict", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["tabulate_version"] == "0.10.0"


def test_engine_example_serves(
    cli: Cli, platform: LocalPlatform, gateway: httpx.Client, tmp_path: Path
) -> None:
    package = tmp_path / "tiny-llm"
    shutil.copytree(EXAMPLES / "tiny-llm", package, ignore=shutil.ignore_patterns("weights"))
    ensure_tiny_model(package / "weights", TinyModelSpec(train_steps=0))
    cli("push", str(package), "--promote")
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": "tiny-llm", "messages": messages, "max_tokens": 4}
    resp = gateway.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"
