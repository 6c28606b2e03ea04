"""Where the CLI finds the platform.

Each value comes from, in order: its flag; its PLINTH_* variable; the remote named by
PLINTH_REMOTE; `<state_dir>/cli.json` written by `plinth up` (PLINTH_STATE_DIR, else ./.plinth);
the current remote of the user config; the local defaults. The user config
(`$PLINTH_CONFIG`, else `$XDG_CONFIG_HOME/plinth/config.json`, else `~/.config/plinth/config.json`)
holds named remotes, as kubectl's contexts and the Truss CLI's remotes do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plinth.exceptions import PlinthError
from plinth.user_config import read_json_object, read_user_config

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
    return read_json_object(path) if path.is_file() else {}


def _remote(config: dict[str, Any], name: str | None, required: bool) -> dict[str, Any]:
    if not name:
        return {}
    remote = config["remotes"].get(name)
    if isinstance(remote, dict):
        return remote
    if required:
        known = ", ".join(sorted(config["remotes"])) or "none"
        raise PlinthError(f"PLINTH_REMOTE={name}: no such remote (known: {known})")
    return {}


def resolve_target(
    url: str | None = None,
    gateway_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> PlatformTarget:
    """Each value from the first source that has it (see the module docstring)."""
    env = os.environ if environ is None else environ
    user = read_user_config(env)
    sources = [
        _remote(user, env.get("PLINTH_REMOTE"), required=True),
        read_cli_config(state_dir_from_env(env)),
        _remote(user, user.get("current_remote"), required=False),
    ]

    def pick(flag: str | None, env_name: str, saved_name: str) -> str | None:
        values = [flag, env.get(env_name), *(source.get(saved_name) for source in sources)]
        for value in values:
            if value:
                return str(value)
        return None

    return PlatformTarget(
        control_plane_url=pick(url, "PLINTH_URL", "control_plane_url") or DEFAULT_CONTROL_PLANE_URL,
        gateway_url=pick(gateway_url, "PLINTH_GATEWAY_URL", "gateway_url") or DEFAULT_GATEWAY_URL,
        api_key=pick(api_key, "PLINTH_API_KEY", "api_key"),
    )
