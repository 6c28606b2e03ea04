"""`plinth delete` as a subprocess against a control plane that really builds and deploys."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]
REPO_ROOT = Path(__file__).resolve().parents[3]
PUSH_TIMEOUT = "120"

pytestmark = pytest.mark.integration


@pytest.fixture
def live_env(cli_env: dict[str, str], live_control_plane: Any) -> dict[str, str]:
    cli_env["PLINTH_URL"] = live_control_plane.url
    cli_env["PLINTH_API_KEY"] = live_control_plane.api_key
    return cli_env


def push(run_cli: RunCli, tmp_path: Path, name: str, marker: str, *flags: str) -> tuple[str, str]:
    """Push a copy of examples/hello named ``name``; (model id, deployment id) once ACTIVE."""
    package = tmp_path / f"{name}-{marker}"
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = package / "config.yaml"
    text = config.read_text(encoding="utf-8").replace("model_name: hello", f"model_name: {name}")
    config.write_text(text + f"environment_variables:\n  MARKER: {marker}\n", encoding="utf-8")
    result = run_cli("push", str(package), "--timeout", PUSH_TIMEOUT, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    model = re.search(r"model id:\s+(\S+)", result.stdout)
    deployment = re.search(r"deployment id:\s+(\S+)", result.stdout)
    assert model and deployment, result.stdout
    return model.group(1), deployment.group(1)


def test_delete_a_served_deployment_then_the_model(
    live_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    model_id, served = push(run_cli, tmp_path, "gone", "v1", "--promote")

    refused = run_cli("delete", "gone", served)  # the model by name
    assert refused.returncode != 0
    assert "CONFLICT" in refused.stderr and "production" in refused.stderr, refused.stderr
    assert served in run_cli("deployments", model_id).stdout  # nothing changed

    forced = run_cli("delete", "gone", served, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"deleted deployment {served} of model {model_id}" in forced.stdout
    assert "production now serve nothing" in forced.stdout
    listed = run_cli("deployments", model_id)
    assert listed.returncode == 0 and served not in listed.stdout

    _, developed = push(run_cli, tmp_path, "gone", "v2")  # development serves it
    refused = run_cli("delete", model_id)
    assert refused.returncode != 0 and "development" in refused.stderr, refused.stderr

    forced = run_cli("delete", model_id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"deleted model gone ({model_id})" in forced.stdout
    assert f"deleted deployment {developed}" in forced.stdout
    assert "deleted environment(s) development, production" in forced.stdout
    assert run_cli("models", "gone", "-q").stdout == ""
    missing = run_cli("delete", "gone")
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr
