"""The real CLI as a subprocess against the real control plane (background workers off)."""

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

pytestmark = pytest.mark.integration


@pytest.fixture
def cp_env(cli_env: dict[str, str], control_plane: Any) -> dict[str, str]:
    cli_env["PLINTH_URL"] = control_plane.url
    cli_env["PLINTH_API_KEY"] = control_plane.api_key
    cli_env["PLINTH_GATEWAY_URL"] = "http://127.0.0.1:1"
    return cli_env


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def copy_hello(tmp_path: Path, name: str) -> Path:
    package = tmp_path / name
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = package / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("model_name: hello", f"model_name: {name}"),
        encoding="utf-8",
    )
    return package


def test_push_no_wait_then_unchanged_push_skips_upload(
    cp_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    package = copy_hello(tmp_path, "cli-hello")
    first = ok(run_cli("push", str(package), "--no-wait"))
    assert "uploaded archive" in first
    model_id = re.search(r"model id:\s+(\S+)", first)
    deployment_id = re.search(r"deployment id:\s+(\S+)", first)
    assert model_id and deployment_id
    assert f"/models/{model_id.group(1)}/development/predict" in first
    assert f"/models/{model_id.group(1)}/deployment/{deployment_id.group(1)}/predict" in first
    second = ok(run_cli("push", str(package), "--no-wait", "--promote"))
    assert "upload skipped" in second and "uploaded archive" not in second
    assert f"/models/{model_id.group(1)}/production/predict" in second

    models = ok(run_cli("models"))
    assert model_id.group(1) in models and "cli-hello" in models
    deployments = ok(run_cli("deployments", model_id.group(1)))
    assert deployment_id.group(1) in deployments and "BUILDING" in deployments
    environments = ok(run_cli("environments", "list", model_id.group(1)))
    assert "production" in environments and "development" in environments
    ok(run_cli("logs", model_id.group(1), deployment_id.group(1)))


def test_push_wait_times_out_with_clear_error(
    cp_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    package = copy_hello(tmp_path, "cli-timeout")
    result = run_cli("push", str(package), "--timeout", "1")
    assert result.returncode == 1
    assert "BUILDING" in result.stdout
    assert "is still BUILDING after 1 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_errors_are_one_red_line(cp_env: dict[str, str], run_cli: RunCli) -> None:
    result = run_cli("deployments", "nosuchmodel")
    assert result.returncode == 1
    assert result.stderr.startswith("error: 404 NOT_FOUND: ")
    assert "error: error" not in result.stderr
    assert "`plinth models` lists them" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    rollback = run_cli("rollback", "nosuchmodel")
    assert rollback.returncode == 1 and "404" in rollback.stderr


def test_rollback_without_history_says_so(
    cp_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    first = ok(run_cli("push", str(copy_hello(tmp_path, "cli-rollback")), "--no-wait"))
    match = re.search(r"model id:\s+(\S+)", first)
    assert match
    result = run_cli("rollback", match.group(1))
    assert result.returncode == 1
    assert "no earlier deployment to roll production back to" in result.stderr


def test_wrong_api_key(cp_env: dict[str, str], run_cli: RunCli) -> None:
    result = run_cli("models", "--api-key", "pl_wrong")
    assert result.returncode == 1
    assert "401" in result.stderr and "--api-key" in result.stderr
    assert "pl_wrong" not in result.stderr


def test_secrets_commands(cp_env: dict[str, str], run_cli: RunCli) -> None:
    ok(run_cli("secrets", "set", "cli_secret", input_text="value-from-stdin\n"))
    listed = ok(run_cli("secrets", "list"))
    assert "cli_secret" in listed and "value-from-stdin" not in listed
    ok(run_cli("secrets", "delete", "cli_secret"))
    assert "cli_secret" not in ok(run_cli("secrets", "list"))


def test_empty_secret_is_refused(cp_env: dict[str, str], run_cli: RunCli) -> None:
    for given in ({"input_text": "\n"}, {"input_text": ""}):
        refused = run_cli("secrets", "set", "cli_empty", **given)
        assert refused.returncode == 1
        assert "secret value is empty" in refused.stderr
    assert run_cli("secrets", "set", "cli_empty", "--value", "").returncode == 1
    assert "cli_empty" not in ok(run_cli("secrets", "list"))


def test_api_key_commands(cp_env: dict[str, str], run_cli: RunCli) -> None:
    created = ok(run_cli("api-keys", "create", "cli-made"))
    prefix = re.search(r"prefix (\S+)\)", created)
    assert prefix, created
    new_key = created.splitlines()[1].strip()
    assert "cli-made" in ok(run_cli("api-keys", "list"))
    assert ok(run_cli("models", "--api-key", new_key)) is not None
    ok(run_cli("api-keys", "delete", prefix.group(1)))
    assert run_cli("models", "--api-key", new_key).returncode == 1


def test_models_by_name_json_and_environments(
    cp_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    import json

    first = ok(run_cli("push", str(copy_hello(tmp_path, "cli-named")), "--no-wait"))
    model_id = re.search(r"model id:\s+(\S+)", first)
    deployment_id = re.search(r"deployment id:\s+(\S+)", first)
    assert model_id and deployment_id
    listed = json.loads(ok(run_cli("deployments", "cli-named", "--json")))
    assert [item["id"] for item in listed["deployments"]] == [deployment_id.group(1)]
    one = json.loads(ok(run_cli("deployment", "cli-named", deployment_id.group(1), "--json")))
    assert one["model_id"] == model_id.group(1) and one["status"] == "BUILDING"
    models = json.loads(ok(run_cli("models", "--json")))["models"]
    assert {"id": model_id.group(1), "name": "cli-named"}.items() <= next(
        item for item in models if item["name"] == "cli-named"
    ).items()
    created = ok(run_cli("environments", "create", "cli-named", "staging", "--max-replica", "3"))
    assert "created environment staging" in created
    staging = json.loads(ok(run_cli("environments", "get", "cli-named", "staging", "--json")))
    assert staging["autoscaling_settings"]["max_replica"] == 3
    names = {
        env["name"]
        for env in json.loads(ok(run_cli("environments", "list", model_id.group(1), "--json")))[
            "environments"
        ]
    }
    assert names == {"production", "development", "staging"}
    table = ok(run_cli("deployments", "cli-named"))
    assert "replicas (ready/desired)" in table and "drains at" in table


def test_remotes_in_the_user_config(
    cp_env: dict[str, str], run_cli: RunCli, control_plane: Any, tmp_path: Path
) -> None:
    import json
    import os
    import stat

    user_config = Path(cp_env["PLINTH_CONFIG"])
    for name in ("PLINTH_URL", "PLINTH_API_KEY"):
        cp_env.pop(name)
    bad = run_cli("remote", "add", "lab", "--url", control_plane.url, "--api-key", "pl_nope")
    assert bad.returncode == 1 and "401" in bad.stderr and not user_config.exists()
    args = ("--url", control_plane.url, "--api-key", control_plane.api_key)
    ok(run_cli("remote", "add", "lab", *args))
    assert stat.S_IMODE(os.stat(user_config).st_mode) == 0o600
    listed = ok(run_cli("remote", "list", "--json"))
    assert control_plane.api_key not in listed
    assert json.loads(listed)["current_remote"] == "lab"
    # No flag, no PLINTH_URL, no cli.json: the current remote is used, from any directory.
    ok(run_cli("models", cwd=tmp_path))
    cp_env["PLINTH_REMOTE"] = "elsewhere"
    unknown = run_cli("models")
    assert unknown.returncode == 1 and "PLINTH_REMOTE=elsewhere: no such remote" in unknown.stderr
    del cp_env["PLINTH_REMOTE"]
    ok(run_cli("remote", "remove", "lab"))
    assert json.loads(ok(run_cli("remote", "list", "--json"))) == {
        "current_remote": None,
        "remotes": {},
    }
