"""Where the CLI finds the platform.

Each value comes from, in order: its flag; its PLINTH_* variable; the remote named by
PLINTH_REMOTE; `<state_dir>/cli.json` written by `plinth up` (PLINTH_STATE_DIR, else ./.plinth);
the current remote of the user config; the local defaults. The user config
(`$PLINTH_CONFIG`, else `$XDG_CONFIG_HOME/plinth/config.json`, else `~/.config/plinth/config.json`)
holds named remotes, as kubectl's contexts and the Truss CLI's remotes do.
"""

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
LOCAL_REMOTE = "local"


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
    return _read_json_object(path) if path.is_file() else {}


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlinthError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PlinthError(f"{path}: expected a JSON object")
    return data


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("PLINTH_CONFIG"):
        return Path(env["PLINTH_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "plinth" / "config.json"


def read_user_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The user config: `{"current_remote": name, "remotes": {name: {...}}}`."""
    path = user_config_path(environ)
    data = _read_json_object(path) if path.is_file() else {}
    remotes = data.get("remotes")
    data["remotes"] = remotes if isinstance(remotes, dict) else {}
    return data


def write_user_config(config: dict[str, Any], environ: Mapping[str, str] | None = None) -> Path:
    """Write the user config atomically (a reader never sees half a file), 0600: it holds keys."""
    path = user_config_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(config, out, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def save_remote(
    name: str,
    target: PlatformTarget,
    *,
    make_current: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Path:
    config = read_user_config(environ)
    config["remotes"][name] = {
        "control_plane_url": target.control_plane_url,
        "gateway_url": target.gateway_url,
        "api_key": target.api_key,
    }
    if make_current or not config.get("current_remote"):
        config["current_remote"] = name
    return write_user_config(config, environ)


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
