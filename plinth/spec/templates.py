"""`plinth init NAME`: a minimal Truss-layout package that works when pushed."""

from __future__ import annotations

import re
from pathlib import Path

from plinth.exceptions import PlinthError

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

CONFIG_TEMPLATE = """\
# Truss-compatible package config: https://docs.baseten.co/reference/truss-configuration
model_name: {name}
model_class_name: Model
model_module_dir: model
python_version: py311
requirements: []
environment_variables: {{}}
secrets: {{}}
resources:
  cpu: "1"
  memory: 2Gi
  use_gpu: false
runtime:
  predict_concurrency: 1
model_metadata:
  example_model_input: {{"text": "hello"}}
"""

MODEL_TEMPLATE = '''\
"""The model served by this package (Truss Model class)."""

from typing import Any


class Model:
    def __init__(self, **kwargs: Any) -> None:
        # Truss passes config, data_dir and secrets as keyword arguments.
        self._config = kwargs.get("config")
        self._data_dir = kwargs.get("data_dir")
        self._prefix = ""

    def load(self) -> None:
        # Load weights here; it runs once before the replica reports ready.
        self._prefix = "echo: "

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        text = str(model_input.get("text", ""))
        return {{"output": self._prefix + text, "length": len(text)}}
'''


def write_package_template(parent_dir: Path | str, name: str) -> Path:
    """Create `parent_dir/name` with config.yaml and model/model.py; returns the package dir."""
    if not _NAME_PATTERN.match(name):
        raise PlinthError(
            f"invalid package name {name!r}: use letters, digits, '.', '_' or '-' (max 63)"
        )
    package_dir = Path(parent_dir) / name
    if package_dir.exists() and any(package_dir.iterdir()):
        raise PlinthError(f"{package_dir} already exists and is not empty")
    (package_dir / "model").mkdir(parents=True, exist_ok=True)
    (package_dir / "config.yaml").write_text(CONFIG_TEMPLATE.format(name=name), encoding="utf-8")
    (package_dir / "model" / "model.py").write_text(MODEL_TEMPLATE.format(), encoding="utf-8")
    (package_dir / "data").mkdir(exist_ok=True)
    return package_dir
