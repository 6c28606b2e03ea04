"""Where the CLI finds the platform: flags, then PLINTH_* env, then `<state_dir>/cli.json`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plinth.exceptions import PlinthError

DEFAULT_STATE_DIR = ".plinth"
DEFAULT_CONTROL_PLANE_URL = "http://127.0.0.1:8800"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8801"
CLI_CONFIG_FILENAME = "cli.json"


@dataclass(frozen=True)
class PlatformTarget:
    """The control plane, gateway and key one CLI invocation talks to."""

    control_plane_url: str
    gateway_url: str
    api_key: str | None


def state_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("PLINTH_STATE_DIR") or DEFAULT_STATE_DIR)


def read_cli_config(state_dir: Path) -> dict[str, Any]:
    """`<state_dir>/cli.json` as written by `plinth up`, or {} when there is none."""
    path = state_dir / CLI_CONFIG_FILENAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlinthError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PlinthError(f"{path}: expected a JSON object")
    return data


def resolve_target(
    url: str | None = None,
    gateway_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PlatformTarget:
    """Each value from its flag, else its env var, else cli.json, else the local default."""
    env = os.environ if environ is None else environ
    saved = read_cli_config(state_dir_from_env(env))

    def pick(flag: str | None, env_name: str, saved_name: str) -> str | None:
        for value in (flag, env.get(env_name), saved.get(saved_name)):
            if value:
                return str(value)
        return None

    return PlatformTarget(
        control_plane_url=pick(url, "PLINTH_URL", "control_plane_url") or DEFAULT_CONTROL_PLANE_URL,
        gateway_url=pick(gateway_url, "PLINTH_GATEWAY_URL", "gateway_url") or DEFAULT_GATEWAY_URL,
        api_key=pick(api_key, "PLINTH_API_KEY", "api_key"),
    )
