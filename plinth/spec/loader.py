"""Load `config.yaml` with line numbers in every error.

PyYAML's compose step keeps each node's position; we record the line of every key path, then
translate pydantic's error locations back to those lines, so an error reads
`config.yaml line 7: field 'runtime.predict_concurrency': value 'x' is not a valid integer`.
"""

from __future__ import annotations

import difflib
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from plinth.exceptions import ConfigError, ConfigWarning
from plinth.spec.config import TrussConfig

CONFIG_FILENAME = "config.yaml"

KeyPath = tuple[str | int, ...]

# Plain-words endings for the pydantic error types users hit most often.
_PROBLEM_BY_ERROR_TYPE: dict[str, str] = {
    "int_parsing": "is not a valid integer",
    "int_type": "is not a valid integer",
    "int_from_float": "is not a valid integer",
    "float_parsing": "is not a valid number",
    "float_type": "is not a valid number",
    "bool_parsing": "is not a valid boolean",
    "bool_type": "is not a valid boolean",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "dict_type": "is not a mapping",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
}


@dataclass
class LoadedConfig:
    """A validated config plus where it came from and the tolerated problems found."""

    config: TrussConfig
    path: Path | None
    warnings: list[str] = field(default_factory=list)

    @property
    def package_dir(self) -> Path | None:
        return self.path.parent if self.path is not None else None


@dataclass
class _ParsedYaml:
    data: Any
    lines: dict[KeyPath, int]
    duplicates: list[tuple[KeyPath, int]]


def resolve_config_path(path: Path | str) -> Path:
    """`path` is a package dir (its config.yaml) or the YAML file itself."""
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / CONFIG_FILENAME
    if not candidate.is_file():
        raise ConfigError(f"no config file at {candidate}")
    return candidate


def load_config(path: Path | str, *, strict: bool = False) -> TrussConfig:
    """Load and validate a package's config.yaml (`path`: package dir or the YAML file).

    Unknown keys emit a `ConfigWarning`, or raise `ConfigError` when `strict`; duplicate keys
    always only warn (the last one wins, as in Truss).
    """
    loaded = load_config_with_warnings(path, strict=strict)
    for message in loaded.warnings:
        warnings.warn(message, ConfigWarning, stacklevel=2)
    return loaded.config


def load_config_with_warnings(path: Path | str, *, strict: bool = False) -> LoadedConfig:
    """Like `load_config` but returns the warnings instead of emitting them."""
    config_path = resolve_config_path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {config_path}: {exc}") from exc
    loaded = parse_config_text(text, source=config_path.name, strict=strict)
    loaded.path = config_path
    return loaded


def parse_config_text(
    text: str, *, source: str = CONFIG_FILENAME, strict: bool = False
) -> LoadedConfig:
    """Validate config YAML given as text; `source` names it in error messages."""
    parsed = _parse_yaml(text, source)
    data = {} if parsed.data is None else parsed.data
    if not isinstance(data, dict):
        raise ConfigError(f"{source} line 1: the top level must be a mapping of fields", line=1)
    unknown = _unknown_key_problems(data, parsed, source)
    # Duplicate keys stay warnings even when strict: Truss (yaml.safe_load) lets the last win,
    # and appending a section to override one is a common edit.
    duplicates = _duplicate_key_warnings(parsed, source)
    if not (strict and unknown):
        config = _validate(data, parsed.lines, source)
        found = [message for message, _, _ in unknown] + duplicates
        return LoadedConfig(config=config, path=None, warnings=found)
    # Strict: report unknown keys and invalid values together, in file order.
    errors = [ConfigError(message, line=line, field=name) for message, line, name in unknown]
    try:
        _validate(data, parsed.lines, source)
    except ConfigError as invalid:
        errors.extend(invalid.errors)
    errors.sort(key=lambda error: error.line or 0)
    first = errors[0]
    raise ConfigError(first.message, line=first.line, field=first.field, errors=errors)


def validate_config_dict(data: Any, *, source: str = "config") -> TrussConfig:
    """Validate an already-parsed config (e.g. the `config` of POST /v1/deployments).

    Raises `ConfigError` naming the field; unknown keys are ignored.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of fields")
    return _validate(data, {}, source)


def _parse_yaml(text: str, source: str) -> _ParsedYaml:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        duplicates: list[tuple[KeyPath, int]] = []
        if node is not None:
            _record_lines(node, (), lines, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" line {line}" if line is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}", line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return _ParsedYaml(data=data, lines=lines, duplicates=duplicates)


def _record_lines(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    duplicates: list[tuple[KeyPath, int]],
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _record_lines(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _record_lines(item, child, lines, duplicates)


def format_field_path(path: KeyPath) -> str:
    """('weights', 0, 'source') -> 'weights[0].source'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _line_for(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    """Line of the deepest part of `path` present in the file (a missing key: its parent's)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _prefix(source: str, line: int | None) -> str:
    return f"{source} line {line}" if line is not None else source


def _unknown_key_problems(
    data: dict[str, Any], parsed: _ParsedYaml, source: str
) -> list[tuple[str, int | None, str]]:
    """(message, line, field) for each key the schema does not know."""
    problems: list[tuple[str, int | None, str]] = []
    for path, known in _unknown_keys(TrussConfig, data, ()):
        line = parsed.lines.get(path)
        name = format_field_path(path)
        message = f"{_prefix(source, line)}: unknown field '{name}'{_did_you_mean(path, known)}"
        problems.append((message, line, name))
    return problems


def _did_you_mean(path: KeyPath, known: list[str]) -> str:
    close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_names(model: type[BaseModel]) -> list[str]:
    """Every key a section accepts: field names and their YAML aliases."""
    names = list(model.model_fields)
    names += [info.alias for info in model.model_fields.values() if info.alias]
    return names


def _duplicate_key_warnings(parsed: _ParsedYaml, source: str) -> list[str]:
    return [
        f"{source} line {line}: duplicate key '{format_field_path(path)}' (the last one wins)"
        for path, line in parsed.duplicates
    ]


def _unknown_keys(
    model: type[BaseModel], data: Any, path: KeyPath
) -> list[tuple[KeyPath, list[str]]]:
    """(path, the keys its section accepts) of each key the schema does not know."""
    if not isinstance(data, dict):
        return []
    found: list[tuple[KeyPath, list[str]]] = []
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            found.append(((*path, str(key)), _field_names(model)))
            continue
        nested = _nested_model(fields[key].annotation)
        if nested is None:
            continue
        model_type, is_list = nested
        if is_list and isinstance(value, list):
            for index, item in enumerate(value):
                found.extend(_unknown_keys(model_type, item, (*path, key, index)))
        elif not is_list:
            found.extend(_unknown_keys(model_type, value, (*path, key)))
    return found


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The section model inside `X`, `X | None` or `list[X]`, and whether it is a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, origin is list
    return None


def _validate(data: dict[str, Any], lines: dict[KeyPath, int], source: str) -> TrussConfig:
    try:
        return TrussConfig.model_validate(data)
    except ValidationError as exc:
        errors = [_config_error(error, lines, source) for error in exc.errors()]
        first = errors[0]
        raise ConfigError(
            first.message, line=first.line, field=first.field, errors=errors
        ) from None


def _config_error(error: Any, lines: dict[KeyPath, int], source: str) -> ConfigError:
    path: KeyPath = tuple(error["loc"])
    name = format_field_path(path) or "(top level)"
    line = _line_for(path, lines)
    error_type = error["type"]
    if error_type == "missing":
        return ConfigError(
            f"{_prefix(source, line)}: field '{name}' is required", line=line, field=name
        )
    problem = _PROBLEM_BY_ERROR_TYPE.get(error_type)
    if problem is None:
        message = str(error["msg"]).removeprefix("Value error, ")
        problem = message[0].lower() + message[1:] if message else "is invalid"
        problem = problem.replace("input should be", "must be")
        if not problem.startswith(("must", "is ")):
            problem = f"is invalid: {problem}"
    shown = _short_repr(error.get("input"))
    return ConfigError(
        f"{_prefix(source, line)}: field '{name}': value {shown} {problem}", line=line, field=name
    )


def _short_repr(value: Any) -> str:
    if isinstance(value, dict):
        return "(mapping)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
