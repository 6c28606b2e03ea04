"""Read a package's config.yaml into what the model server needs.

The schema is owned by ``plinth.spec`` (``load_config`` -> ``TrussConfig``). This module only
adapts it: it asks ``plinth.spec`` when that is importable and otherwise reads the YAML with
Truss's defaults, so replicas keep working while the spec package is being written. The raw
YAML mapping is kept too because Truss hands exactly that dict to ``Model.__init__(config=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpu_nodes.model_server.exceptions import PackageError

CONFIG_FILENAME = "config.yaml"


@dataclass(frozen=True)
class ServingConfig:
    """The parts of a package config that serving uses."""

    raw: dict[str, Any]
    model_name: str
    model_class_name: str = "Model"
    model_module_dir: str = "model"
    model_class_filename: str = "model.py"
    data_dir: str = "data"
    bundled_packages_dir: str = "packages"
    external_package_dirs: list[str] = field(default_factory=list)
    secrets: dict[str, str | None] = field(default_factory=dict)
    environment_variables: dict[str, str] = field(default_factory=dict)
    predict_concurrency: int = 1
    streaming_read_timeout: float = 60.0
    predict_timeout: float = 600.0
    model_metadata: dict[str, Any] = field(default_factory=dict)
    # The validated ``TrussConfig`` when plinth.spec is available (engine apps need it).
    spec: Any = None

    @property
    def has_engine(self) -> bool:
        if self.spec is not None:
            return getattr(self.spec, "engine", None) is not None
        return self.raw.get("engine") is not None


def read_raw_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CONFIG_FILENAME
    if not path.is_file():
        raise PackageError(f"{path}: no {CONFIG_FILENAME} in the package directory")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PackageError(f"{path}: invalid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PackageError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def load_serving_config(model_dir: Path) -> ServingConfig:
    """Load ``<model_dir>/config.yaml``; raises ``PackageError`` naming what is wrong."""
    raw = read_raw_config(model_dir)
    spec = _load_spec(model_dir)
    if spec is not None:
        return _from_spec(raw, spec, model_dir)
    return _from_raw(raw, model_dir)


def _load_spec(model_dir: Path) -> Any:
    try:
        from plinth.spec import load_config
    except ImportError:
        return None
    try:
        return load_config(model_dir)
    except ValueError as exc:  # plinth.exceptions.ConfigError is a ValueError
        raise PackageError(str(exc)) from exc


def _from_spec(raw: dict[str, Any], spec: Any, model_dir: Path) -> ServingConfig:
    runtime = spec.runtime
    return ServingConfig(
        raw=raw,
        model_name=spec.model_name or model_dir.name,
        model_class_name=spec.model_class_name,
        model_module_dir=spec.model_module_dir,
        model_class_filename=spec.model_class_filename,
        data_dir=spec.data_dir,
        bundled_packages_dir=spec.bundled_packages_dir,
        external_package_dirs=list(spec.external_package_dirs or []),
        secrets=dict(spec.secrets or {}),
        environment_variables={k: str(v) for k, v in (spec.environment_variables or {}).items()},
        predict_concurrency=int(runtime.predict_concurrency),
        streaming_read_timeout=float(runtime.streaming_read_timeout),
        predict_timeout=float(runtime.predict_timeout),
        model_metadata=dict(spec.model_metadata or {}),
        spec=spec,
    )


def _from_raw(raw: dict[str, Any], model_dir: Path) -> ServingConfig:
    runtime = raw.get("runtime") or {}
    try:
        concurrency = int(runtime.get("predict_concurrency", 1))
        read_timeout = float(runtime.get("streaming_read_timeout", 60))
        predict_timeout = float(runtime.get("predict_timeout", 600))
    except (TypeError, ValueError) as exc:
        raise PackageError(f"config.yaml: field 'runtime': {exc}") from exc
    if concurrency < 1:
        raise PackageError(
            f"config.yaml: field 'runtime.predict_concurrency': must be >= 1, got {concurrency}"
        )
    return ServingConfig(
        raw=raw,
        model_name=str(raw.get("model_name") or model_dir.name),
        model_class_name=str(raw.get("model_class_name") or "Model"),
        model_module_dir=str(raw.get("model_module_dir") or "model"),
        model_class_filename=str(raw.get("model_class_filename") or "model.py"),
        data_dir=str(raw.get("data_dir") or "data"),
        bundled_packages_dir=str(raw.get("bundled_packages_dir") or "packages"),
        external_package_dirs=[str(p) for p in raw.get("external_package_dirs") or []],
        secrets=dict(raw.get("secrets") or {}),
        environment_variables={
            str(k): str(v) for k, v in (raw.get("environment_variables") or {}).items()
        },
        predict_concurrency=concurrency,
        streaming_read_timeout=read_timeout,
        predict_timeout=predict_timeout,
        model_metadata=dict(raw.get("model_metadata") or {}),
    )
