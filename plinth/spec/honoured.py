"""Config fields Plinth accepts (so every Truss package loads) but cannot honour, per runtime.

A push whose config sets one of these to anything but its default gets a warning naming the
field (the control plane returns them as ``warnings``; ``plinth push`` prints them). When a
runtime learns to honour a field, remove it from that runtime's table below: nothing else
changes.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel

from plinth.spec.config import TrussConfig

PROCESS_RUNTIME = "process"  # the local driver: one venv process per replica
KUBERNETES_RUNTIME = "kubernetes"

_IMAGE_FIELDS = {
    "base_image": "replicas do not run in an image built from it",
    "system_packages": "apt packages are not installed",
    "build_commands": "build commands are not run",
}
_EVERYWHERE = {
    "model_cache": "the legacy Truss model cache is not fetched; use 'weights' instead",
    "live_reload": "there is no live reload; push again",
    "resources.instance_type": "instance types are not chosen from it; use resources.accelerator",
    "resources.node_count": "a replica runs on one node",
    "runtime.enable_tracing_data": "there is no request tracing",
    "runtime.enable_debug_logs": "the replica logs at PLINTH_LOG_LEVEL",
}

# runtime -> {field path: what is not done}
UNHONOURED_FIELDS: dict[str, dict[str, str]] = {
    PROCESS_RUNTIME: {
        **_IMAGE_FIELDS,
        "python_version": "replicas run the platform's Python",
        **_EVERYWHERE,
    },
    KUBERNETES_RUNTIME: {
        **_IMAGE_FIELDS,
        "python_version": "replicas run the model-server image's Python",
        **_EVERYWHERE,
    },
}


def _field_value(config: BaseModel, path: str) -> tuple[Any, Any]:
    """The value at a dotted path and that field's default."""
    owner: Any = config
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    field = type(owner).model_fields[name]
    return getattr(owner, name), field.get_default(call_default_factory=True)


def _platform_python() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def unhonoured_fields(config: TrussConfig, runtime: str) -> list[str]:
    """The fields this config sets that ``runtime`` cannot honour, in table order."""
    found = []
    for path in UNHONOURED_FIELDS.get(runtime, {}):
        value, default = _field_value(config, path)
        if value == default:
            continue
        # Honoured in effect when it names the Python local replicas run anyway.
        if path == "python_version" and runtime == PROCESS_RUNTIME and value == _platform_python():
            continue
        found.append(path)
    return found


def unhonoured_warnings(config: TrussConfig, runtime: str) -> list[str]:
    """One sentence per unhonoured field: the field, its value and what is not done."""
    reasons = UNHONOURED_FIELDS.get(runtime, {})
    warnings = []
    for path in unhonoured_fields(config, runtime):
        value, _ = _field_value(config, path)
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        warnings.append(
            f"config field '{path}' ({shown}) is recorded but not honoured by the {runtime} "
            f"runtime: {reasons[path]}"
        )
    return warnings
