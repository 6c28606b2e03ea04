"""The user-level Plinth config: named remotes, as kubectl's contexts and Truss's remotes.

`$PLINTH_CONFIG`, else `$XDG_CONFIG_HOME/plinth/config.json`, else `~/.config/plinth/config.json`:
`{"current_remote": name, "remotes": {name: {control_plane_url, gateway_url, api_key}}}`.
Outside `plinth.cli` because `plinth up` (plinth.local) writes it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plinth.exceptions import PlinthError

LOCAL_REMOTE = "local"
"""The remote `plinth up` registers (and selects) once its platform answers."""


def read_json_object(path: Path) -> dict[str, Any]:
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
    data = read_json_object(path) if path.is_file() else {}
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
    control_plane_url: str,
    gateway_url: str,
    api_key: str | None,
    *,
    make_current: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Path:
    config = read_user_config(environ)
    config["remotes"][name] = {
        "control_plane_url": control_plane_url,
        "gateway_url": gateway_url,
        "api_key": api_key,
    }
    if make_current or not config.get("current_remote"):
        config["current_remote"] = name
    return write_user_config(config, environ)
