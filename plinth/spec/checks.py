"""What `plinth push` can check on the user's machine before packaging anything.

The control plane checks the same rules again (it trusts no client); checking here saves the
user a package-and-upload round trip for a typo.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

from plinth.exceptions import ConfigError
from plinth.spec.config import TrussConfig

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,127}$")
MODEL_NAME_RULE = "1-128 letters, digits, spaces or _.- (starting with a letter or digit)"


def check_model_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.match(name):
        raise ConfigError(f"model_name: {name!r} must be {MODEL_NAME_RULE}", field="model_name")


def top_level_names(source: str) -> set[str]:
    """Names a module binds at top level: classes, assignments and imports (a Model class may
    be defined elsewhere and imported, or aliased)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def check_model_class(package_dir: Path, config: TrussConfig) -> None:
    """The model file exists, parses, and binds `model_class_name` (read, never imported:
    importing would run the user's code and need its requirements)."""
    if config.engine is not None or config.docker_server is not None:
        return  # served by the LLM engine or the user's own server: there is no Model class
    path = package_dir / config.model_class_path
    if not path.is_file():
        raise ConfigError(
            f"model file {config.model_class_path} not found in {package_dir} "
            "(model_module_dir / model_class_filename)",
            field="model_class_filename",
        )
    try:
        names = top_level_names(path.read_text(encoding="utf-8"))
    except SyntaxError as exc:
        raise ConfigError(
            f"{config.model_class_path} line {exc.lineno}: {exc.msg}", field="model_class_name"
        ) from exc
    wanted = config.model_class_name
    if wanted not in names:
        close = difflib.get_close_matches(wanted, sorted(names), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"model_class_name: {config.model_class_path} defines no {wanted!r}{hint}",
            field="model_class_name",
        )


# Truss's OpenAI-style Model methods: each is served at its own /v1 route by the model server.
OPENAI_METHOD_NAMES = frozenset(
    {"chat_completions", "completions", "embeddings", "messages", "responses"}
)


def model_class_methods(package_dir: Path, config: TrussConfig) -> frozenset[str] | None:
    """Names of the methods the model class defines, read statically (never imported).

    None when reading cannot tell: the class is imported or aliased rather than defined in the
    model file, or it has base classes that may add methods.
    """
    path = package_dir / config.model_class_path
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == config.model_class_name:
            if node.bases:
                return None
            return frozenset(
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return None
