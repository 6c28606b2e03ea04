"""Import the user's Model class and build it with the kwargs its ``__init__`` names."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from pathlib import Path
from typing import Any

from gpu_nodes.model_server.exceptions import PackageError
from gpu_nodes.model_server.package_config import ServingConfig

INIT_KWARGS = ("config", "data_dir", "secrets", "environment")


def package_roots(model_dir: Path, cfg: ServingConfig) -> list[Path]:
    """Directories holding the package's own code (for sys.path and traceback trimming)."""
    roots = [model_dir]
    bundled = model_dir / cfg.bundled_packages_dir
    if bundled.is_dir():
        roots.append(bundled)
    for entry in cfg.external_package_dirs:
        path = Path(entry)
        roots.append(path if path.is_absolute() else (model_dir / path))
    return [root.resolve() for root in roots]


def extend_sys_path(model_dir: Path, cfg: ServingConfig) -> None:
    for root in package_roots(model_dir, cfg):
        if str(root) not in sys.path:
            sys.path.append(str(root))


def _package_module_name(module_dir: Path) -> str:
    # A unique name per package directory, so two packages served in one process (tests) don't
    # share sys.modules entries; `from model.x import y` still works through sys.path.
    digest = hashlib.sha256(str(module_dir).encode()).hexdigest()[:12]
    return f"plinth_user_model_{digest}"


def _ensure_package(module_dir: Path) -> str:
    name = _package_module_name(module_dir)
    if name in sys.modules:
        return name
    init_file = module_dir / "__init__.py"
    if init_file.is_file():
        spec = importlib.util.spec_from_file_location(
            name, init_file, submodule_search_locations=[str(module_dir)]
        )
        if spec is None or spec.loader is None:
            raise PackageError(f"cannot import package {module_dir}")
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    else:
        package = types.ModuleType(name)
        package.__path__ = [str(module_dir)]
        sys.modules[name] = package
    return name


def import_model_class(model_dir: Path, cfg: ServingConfig) -> type:
    module_dir = (model_dir / cfg.model_module_dir).resolve()
    model_file = module_dir / cfg.model_class_filename
    if not model_file.is_file():
        raise PackageError(
            f"model file not found: {model_file} (config: model_module_dir="
            f"'{cfg.model_module_dir}', model_class_filename='{cfg.model_class_filename}')"
        )
    extend_sys_path(model_dir, cfg)
    package_name = _ensure_package(module_dir)
    module = importlib.import_module(f"{package_name}.{Path(cfg.model_class_filename).stem}")
    model_class = getattr(module, cfg.model_class_name, None)
    if not inspect.isclass(model_class):
        raise PackageError(
            f"{model_file} has no class '{cfg.model_class_name}' (config: model_class_name)"
        )
    if not callable(getattr(model_class, "predict", None)):
        raise PackageError(f"class '{cfg.model_class_name}' in {model_file} has no predict method")
    return model_class


def instantiate_model(model_class: type, available: dict[str, Any]) -> Any:
    """Call ``model_class(**kwargs)`` with only the kwargs its ``__init__`` accepts."""
    try:
        params = inspect.signature(model_class).parameters
    except (TypeError, ValueError):
        return model_class()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in available.items() if takes_any or k in params}
    return model_class(**kwargs)
