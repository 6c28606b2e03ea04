"""The real CLI as a subprocess, for everything that needs no running platform."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from plinth.spec import load_config
from tests.support.servers import free_port

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_help_lists_commands(run_cli: RunCli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("init", "push", "models", "deployments", "promote", "rollback", "logs"):
        assert command in result.stdout
    for command in ("predict", "environments", "secrets", "api-keys", "up"):
        assert command in result.stdout
    push_help = run_cli("push", "--help")
    assert push_help.returncode == 0
    assert "--promote" in push_help.stdout and "PLINTH_URL" in push_help.stdout


def test_init_writes_a_valid_package(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("init", "my-model")
    assert result.returncode == 0, result.stderr
    package = tmp_path / "my-model"
    config = load_config(package, strict=True)
    assert config.model_name == "my-model"
    assert (package / "model" / "model.py").is_file()
    again = run_cli("init", "my-model")
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr


def test_init_rejects_bad_name(run_cli: RunCli) -> None:
    result = run_cli("init", "../escape")
    assert result.returncode == 1
    assert "invalid package name" in result.stderr


def test_push_bad_config_names_key_and_line(run_cli: RunCli, tmp_path: Path) -> None:
    package = tmp_path / "bad"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text("class Model: ...\n", encoding="utf-8")
    (package / "config.yaml").write_text(
        "model_name: bad\nresources:\n  cpu: 1\n  acelerator: H100\nruntime:\n"
        "  predict_concurrency: lots\n",
        encoding="utf-8",
    )
    # Port 9 has nothing listening: validation must fail before any network call.
    result = run_cli("push", str(package), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "config.yaml line 4: unknown field 'resources.acelerator'" in result.stderr
    assert (
        "config.yaml line 6: field 'runtime.predict_concurrency': value 'lots' "
        "is not a valid integer"
    ) in result.stderr
    assert "cannot reach" not in result.stderr
    assert "Traceback" not in result.stderr


def test_push_without_model_name(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "nameless").mkdir()
    (tmp_path / "nameless" / "config.yaml").write_text("requirements: []\n", encoding="utf-8")
    result = run_cli("push", "nameless")
    assert result.returncode == 1
    assert "field 'model_name' is required to push" in result.stderr


def test_push_missing_dir(run_cli: RunCli) -> None:
    result = run_cli("push", "does-not-exist")
    assert result.returncode == 1
    assert "no config file" in result.stderr


def test_unreachable_control_plane_is_one_clear_line(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("init", "pkg").returncode == 0
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("push", "pkg", "--url", url)
    assert result.returncode == 1
    assert f"cannot reach control plane at {url}: is `plinth up` running?" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_json_from_state_dir_is_used(
    run_cli: RunCli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    state.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    (state / "cli.json").write_text(
        json.dumps({"control_plane_url": url, "gateway_url": url, "api_key": "pl_k"}),
        encoding="utf-8",
    )
    result = run_cli("models")
    assert result.returncode == 1
    assert f"cannot reach control plane at {url}" in result.stderr
    assert "pl_k" not in result.stderr + result.stdout


def test_predict_bad_json_is_reported(run_cli: RunCli) -> None:
    result = run_cli("predict", "abc", "--data", "{x: 1}")
    assert result.returncode == 1
    assert "--data is not valid JSON" in result.stderr and "line 1, column 2" in result.stderr


def test_predict_environment_and_deployment_conflict(run_cli: RunCli) -> None:
    result = run_cli("predict", "abc", "--data", "{}", "-e", "staging", "--deployment", "d1")
    assert result.returncode == 1
    assert "either --environment or --deployment" in result.stderr


def _package(tmp_path: Path, config: str, model: str = "class Model: ...\n") -> Path:
    package = tmp_path / "pkg"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(model, encoding="utf-8")
    (package / "config.yaml").write_text(config, encoding="utf-8")
    return package


def test_push_checks_class_and_name_before_packaging(run_cli: RunCli, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: no network call may happen
    typo = _package(tmp_path, "model_name: ok\nmodel_class_name: Modle\n")
    result = run_cli("push", str(typo), "--url", url)
    assert result.returncode == 1
    assert "model_class_name: model/model.py defines no 'Modle' (did you mean 'Model'?)" in (
        result.stderr
    )
    assert "packaged" not in result.stdout and "cannot reach" not in result.stderr
    (typo / "config.yaml").write_text("model_name: Typo Model!\n", encoding="utf-8")
    bad_name = run_cli("push", str(typo), "--url", url)
    assert bad_name.returncode == 1
    assert "model_name: 'Typo Model!' must be 1-128 letters" in bad_name.stderr
    assert "packaged" not in bad_name.stdout


def test_unknown_key_gets_a_did_you_mean(run_cli: RunCli, tmp_path: Path) -> None:
    package = _package(tmp_path, "model_name: ok\nrequirments: []\n")
    result = run_cli("push", str(package), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "unknown field 'requirments' (did you mean 'requirements'?)" in result.stderr


def test_push_model_name_option_names_a_nameless_package(run_cli: RunCli, tmp_path: Path) -> None:
    package = _package(tmp_path, "requirements: []\n")
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("push", str(package), "--model-name", "named-here", "--url", url)
    # Validation passed (it got as far as the network), so --model-name was taken.
    assert result.returncode == 1
    assert "packaged" in result.stdout and f"cannot reach control plane at {url}" in result.stderr
