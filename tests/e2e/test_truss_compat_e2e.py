"""Truss compatibility end to end, on a running `plinth up`: what a Truss user does on day one.

`plinth push --model-name`, a Model class with OpenAI-style methods called with the OpenAI SDK
through the gateway, warnings for config fields Plinth cannot honour, and a custom server
(Truss `docker_server`) pushed and called through predict and `sync/...`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]

NAMED_BY_CONFIG_MODEL = """
class Model:
    def __init__(self, config, **kwargs):
        self._name = config.get("model_name")

    def predict(self, model_input):
        return {"served_as": self._name}
"""


def write_package(root: Path, name: str, config: str, model: str) -> Path:
    package = root / name
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(model, encoding="utf-8")
    (package / "config.yaml").write_text(config, encoding="utf-8")
    return package


def model_id(api: httpx.Client, name: str) -> str:
    models = api.get("/v1/models").json()["models"]
    return str(next(m["id"] for m in models if m["name"] == name))


def test_push_model_name_names_a_nameless_package(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    package = write_package(tmp_path, "nameless", "requirements: []\n", NAMED_BY_CONFIG_MODEL)
    refused = cli("push", str(package), check=False)
    assert refused.returncode == 1
    assert "--model-name" in refused.stderr
    cli("push", str(package), "--model-name", "given-name", "--promote")
    mid = model_id(api, "given-name")
    resp = gateway.post(f"/models/{mid}/production/predict", json={})
    assert resp.status_code == 200, resp.text
    # The replica's config (handed to Model(config=...)) carries the pushed name too.
    assert resp.json() == {"served_as": "given-name"}
