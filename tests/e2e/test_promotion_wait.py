"""`plinth promote` / `rollback` return once the gateway routes to the target: a predict sent
right after the command already reaches it. A target that is not ACTIVE is "pending until
ACTIVE", and the command waits for that too (unless --no-wait)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
Cli = Callable[..., subprocess.CompletedProcess[str]]


def versioned(tmp_path: Path, version: str) -> Path:
    """examples/hello, answering with an extra field naming ``version``."""
    package = tmp_path / f"waited-{version}"
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = package / "config.yaml"
    config.write_text(
        config.read_text().replace("model_name: hello", "model_name: waited")
        + f"\nenvironment_variables:\n  HELLO_VERSION: {version}\n"
    )
    model_py = package / "model" / "model.py"
    model_py.write_text(
        model_py.read_text()
        + "\n\n_plain_predict = Model.predict\n\n\n"
        + "def _versioned(self, model_input):\n"
        + "    import os\n"
        + "    return {**_plain_predict(self, model_input), 'v': os.environ['HELLO_VERSION']}\n\n\n"
        + "Model.predict = _versioned\n"
    )
    return package


def pushed_ids(api: httpx.Client) -> tuple[str, list[str]]:
    model = next(m for m in api.get("/v1/models").json()["models"] if m["name"] == "waited")
    deps = api.get(f"/v1/models/{model['id']}/deployments").json()["deployments"]
    return model["id"], [d["id"] for d in sorted(deps, key=lambda d: d["created_at"])]


def test_promote_and_rollback_return_once_the_gateway_routes_there(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    cli("push", str(versioned(tmp_path, "v1")), "--promote")
    cli("push", str(versioned(tmp_path, "v2")))  # development only
    mid, (v1, v2) = pushed_ids(api)

    def version_now() -> str:
        resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["v"])

    for _ in range(3):
        promoted = cli("promote", mid, v2)
        assert version_now() == "v2", promoted.stdout
        assert f"production now routes to {v2}" in promoted.stdout
        rolled = cli("rollback", mid)
        assert version_now() == "v1", rolled.stdout
        assert f"production now routes to {v1}" in rolled.stdout


def test_promoting_an_inactive_deployment_says_pending_and_waits(
    cli: Cli, api: httpx.Client, gateway: httpx.Client
) -> None:
    mid, (_v1, v2) = pushed_ids(api)
    api.post(f"/v1/models/{mid}/deployments/{v2}/deactivate").raise_for_status()
    deadline = time.monotonic() + 60
    while api.get(f"/v1/models/{mid}/deployments/{v2}").json()["status"] != "INACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.25)
    promoted = cli("promote", mid, v2)
    assert "pending until ACTIVE" in promoted.stdout
    assert f"production now routes to {v2}" in promoted.stdout
    resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
    assert resp.json()["v"] == "v2"

    quick = cli("rollback", mid, "--no-wait")
    assert "gateways follow within their poll interval" in quick.stdout
