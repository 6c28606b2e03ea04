"""Pure pieces of the CLI: rollback target choice, where the platform is found, log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plinth.cli.manage import choose_rollback_target, current_deployment_id
from plinth.cli.push import log_line_text
from plinth.cli.target import (
    DEFAULT_CONTROL_PLANE_URL,
    DEFAULT_GATEWAY_URL,
    resolve_target,
)
from plinth.exceptions import PlinthError


def dep(dep_id: str, status: str, created_at: float) -> dict[str, Any]:
    return {"id": dep_id, "status": status, "created_at": created_at}


ROLLBACK_CASES = [
    # (environment, deployments, expected id, words in the reason)
    (
        {"name": "production", "current_deployment": {"id": "d2"}, "previous_deployment_id": "d1"},
        [],
        "d1",
        "previously in production",
    ),
    (
        {
            "name": "production",
            "current_deployment_id": "d3",
            "history": [{"deployment_id": "d1"}, {"deployment_id": "d2"}, {"deployment_id": "d3"}],
        },
        [],
        "d2",
        "promotion history",
    ),
    (
        {"name": "production", "current_deployment": "d3"},
        [
            dep("d1", "INACTIVE", 1),
            dep("d2", "ACTIVE", 2),
            dep("d3", "ACTIVE", 3),
            dep("d4", "FAILED", 4),
            dep("d5", "BUILDING", 5),
        ],
        "d2",
        "most recent ACTIVE",
    ),
    (
        {"name": "staging", "current_deployment": None, "previous_deployment_id": None},
        [dep("d1", "INACTIVE", 1)],
        "d1",
        "INACTIVE",
    ),
]


@pytest.mark.parametrize(("environment", "deployments", "expected", "reason"), ROLLBACK_CASES)
def test_choose_rollback_target(
    environment: dict[str, Any], deployments: list[dict[str, Any]], expected: str, reason: str
) -> None:
    chosen, why = choose_rollback_target(environment, deployments)
    assert chosen == expected
    assert reason in why


def test_no_rollback_target() -> None:
    environment = {"name": "production", "current_deployment": {"id": "d1"}}
    with pytest.raises(PlinthError, match="no earlier deployment to roll production back to"):
        choose_rollback_target(environment, [dep("d1", "ACTIVE", 1), dep("d2", "FAILED", 2)])


def test_current_deployment_id_forms() -> None:
    assert current_deployment_id({"current_deployment": {"id": "a"}}) == "a"
    assert current_deployment_id({"current_deployment": "b"}) == "b"
    assert current_deployment_id({"current_deployment": None, "current_deployment_id": "c"}) == "c"
    assert current_deployment_id({}) is None


def write_cli_json(state: Path, **values: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "cli.json").write_text(json.dumps(values), encoding="utf-8")


def test_target_precedence_flag_env_file_default(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # No user config either (the machine's own ~/.config/plinth may name a remote).
    env = {"PLINTH_STATE_DIR": str(state), "PLINTH_CONFIG": str(tmp_path / "none.json")}
    assert resolve_target(environ=env).control_plane_url == DEFAULT_CONTROL_PLANE_URL
    assert resolve_target(environ=env).gateway_url == DEFAULT_GATEWAY_URL
    assert resolve_target(environ=env).api_key is None
    write_cli_json(state, control_plane_url="http://file", gateway_url="http://gw", api_key="f")
    from_file = resolve_target(environ=env)
    assert (from_file.control_plane_url, from_file.gateway_url, from_file.api_key) == (
        "http://file",
        "http://gw",
        "f",
    )
    env.update(PLINTH_URL="http://env", PLINTH_API_KEY="e")
    from_env = resolve_target(environ=env)
    assert (from_env.control_plane_url, from_env.gateway_url, from_env.api_key) == (
        "http://env",
        "http://gw",
        "e",
    )
    from_flag = resolve_target("http://flag", None, "k", environ=env)
    assert (from_flag.control_plane_url, from_flag.api_key) == ("http://flag", "k")


def test_broken_cli_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "cli.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PlinthError, match=r"cli\.json"):
        resolve_target(environ={"PLINTH_STATE_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        ("pip install x\n", "pip install x"),
        ({"line": "loaded", "replica_id": "r-1"}, "[r-1] loaded"),
        ({"message": "hi"}, "hi"),
    ],
)
def test_log_line_text(entry: Any, text: str) -> None:
    assert log_line_text(entry) == text
