"""`plinth push` / `rollback` / `logs` against a control plane that really builds and deploys
(build worker and reconciler on, replicas as local model server processes)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plinth.cli.manage import current_deployment_id
from plinth.client import PlinthClient

RunCli = Callable[..., subprocess.CompletedProcess[str]]
REPO_ROOT = Path(__file__).resolve().parents[3]
PUSH_TIMEOUT = "120"

pytestmark = pytest.mark.integration

BROKEN_MODEL = """\
class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        raise RuntimeError("weights are missing: boom")

    def predict(self, model_input):
        return model_input
"""


@pytest.fixture
def live_env(cli_env: dict[str, str], live_control_plane: Any) -> dict[str, str]:
    cli_env["PLINTH_URL"] = live_control_plane.url
    cli_env["PLINTH_API_KEY"] = live_control_plane.api_key
    return cli_env


def hello_package(tmp_path: Path, name: str, marker: str) -> Path:
    package = tmp_path / f"{name}-{marker}"
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = package / "config.yaml"
    text = config.read_text(encoding="utf-8").replace("model_name: hello", f"model_name: {name}")
    config.write_text(text + f"environment_variables:\n  MARKER: {marker}\n", encoding="utf-8")
    return package


def ids(stdout: str) -> tuple[str, str]:
    model = re.search(r"model id:\s+(\S+)", stdout)
    deployment = re.search(r"deployment id:\s+(\S+)", stdout)
    assert model and deployment, stdout
    return model.group(1), deployment.group(1)


def production_of(control_plane: Any, model_id: str) -> str | None:
    with PlinthClient(control_plane.url, control_plane.api_key, timeout=10) as client:
        return current_deployment_id(client.get_environment(model_id, "production"))


def wait_for_production(control_plane: Any, model_id: str, expected: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if production_of(control_plane, model_id) == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"production of {model_id} never became {expected}")


def test_push_wait_promote_rollback(
    live_env: dict[str, str], live_control_plane: Any, run_cli: RunCli, tmp_path: Path
) -> None:
    first = run_cli("push", str(hello_package(tmp_path, "live", "v1")), "--promote",
                    "--timeout", PUSH_TIMEOUT)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ACTIVE" in first.stdout
    model_id, v1 = ids(first.stdout)
    assert f"/models/{model_id}/production/predict" in first.stdout
    wait_for_production(live_control_plane, model_id, v1)

    second = run_cli("push", str(hello_package(tmp_path, "live", "v2")), "--promote",
                     "--timeout", PUSH_TIMEOUT)  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    _, v2 = ids(second.stdout)
    wait_for_production(live_control_plane, model_id, v2)

    rollback = run_cli("rollback", model_id)
    assert rollback.returncode == 0, rollback.stderr
    assert f"back to {v1}" in rollback.stdout
    wait_for_production(live_control_plane, model_id, v1)

    listed = run_cli("deployments", model_id)
    assert v1 in listed.stdout and v2 in listed.stdout and "ACTIVE" in listed.stdout
    by_name = run_cli("deployments", "live")  # the model's name works wherever its id does
    assert by_name.returncode == 0, by_name.stderr
    assert v1 in by_name.stdout and f"deployments of {model_id}" in by_name.stdout
    v1_row = next(line for line in by_name.stdout.splitlines() if v1 in line)
    assert "production" in v1_row and "1/1" in v1_row
    envs = run_cli("environments", "list", "live")
    assert envs.returncode == 0, envs.stderr
    production_row = next(line for line in envs.stdout.splitlines() if "production" in line)
    assert v1 in production_row and "1/1" in production_row
    logs = run_cli("logs", model_id, v1)
    assert logs.returncode == 0 and "build" in logs.stdout


def test_failed_deployment_prints_log_tail(
    live_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    package = hello_package(tmp_path, "live-broken", "v1")
    (package / "model" / "model.py").write_text(BROKEN_MODEL, encoding="utf-8")
    result = run_cli("push", str(package), "--timeout", PUSH_TIMEOUT)
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "FAILED" in result.stderr and "log lines" in result.stderr
    assert "weights are missing: boom" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr  # the replica's, from its log


def test_logs_follow_streams_until_interrupted(
    live_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    pushed = run_cli("push", str(hello_package(tmp_path, "live-logs", "v1")), "--no-wait")
    assert pushed.returncode == 0, pushed.stderr
    model_id, deployment_id = ids(pushed.stdout)
    command = [sys.executable, "-m", "plinth.cli.main", "logs", model_id, deployment_id, "-f"]
    out_path = tmp_path / "follow.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(command, env=live_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Lines written after `logs -f` started must show up: the build finishing, then the
        # replica's own output.
        deadline = time.monotonic() + 90
        while "replicas" not in out_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    text = out_path.read_text()
    assert "build" in text and "interrupted" in text and "Traceback" not in text
    assert proc.returncode == 130
