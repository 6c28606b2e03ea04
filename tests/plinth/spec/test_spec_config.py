"""config.yaml loading: defaults, table-driven invalid configs, unknown keys, line numbers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from plinth.exceptions import ConfigError, ConfigWarning
from plinth.spec import (
    EngineSpec,
    TrussConfig,
    load_config,
    load_config_with_warnings,
    parse_config_text,
    validate_config_dict,
)


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_defaults_match_truss(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "model_name: m\n"))
    assert config.model_class_name == "Model"
    assert config.model_module_dir == "model"
    assert config.model_class_filename == "model.py"
    assert config.data_dir == "data"
    assert config.bundled_packages_dir == "packages"
    assert config.python_version == "py311"
    assert config.requirements == [] and config.requirements_file is None
    assert config.resources.cpu == "1" and config.resources.memory == "2Gi"
    assert config.resources.accelerator is None and config.resources.use_gpu is False
    assert config.runtime.predict_concurrency == 1
    assert config.runtime.streaming_read_timeout == 60
    assert config.runtime.enable_tracing_data is False
    assert config.engine is None and config.trt_llm is None
    assert config.model_class_path == Path("model/model.py")


def test_full_config_parses(tmp_path: Path) -> None:
    text = """\
model_name: llama
description: a model
requirements:
  - humanize==4.9.0
environment_variables:
  PORT: 8080
  DEBUG: true
secrets:
  hf_access_token: null
resources:
  cpu: 4
  memory: 16Gi
  accelerator: H100:2
runtime:
  predict_concurrency: 8
  streaming_read_timeout: 120
model_metadata:
  tags: [llm]
weights:
  - source: hf://org/repo@main
    mount_location: /models/repo
    allow_patterns: ["*.safetensors"]
    auth_secret_name: hf_access_token
trt_llm:
  build:
    max_seq_len: 4096
engine:
  kind: vllm
  model_path: weights/tiny
  max_model_len: 256
  device: cpu
"""
    config = load_config(write_config(tmp_path, text), strict=True)
    assert config.environment_variables == {"PORT": "8080", "DEBUG": "true"}
    assert config.secrets == {"hf_access_token": None}
    assert config.resources.cpu == "4" and config.resources.cpu_cores == 4.0
    assert config.resources.memory_bytes == 16 * 1024**3
    spec = config.resources.accelerator_spec
    assert spec is not None and (spec.type, spec.count) == ("H100", 2)
    assert config.resources.use_gpu is True
    assert config.weights[0].allow_patterns == ["*.safetensors"]
    assert config.trt_llm == {"build": {"max_seq_len": 4096}}
    assert isinstance(config.engine, EngineSpec)
    assert config.engine.kind == "vllm" and config.engine.block_size == 16
    assert config.engine.resolve_model_path(tmp_path) == tmp_path / "weights/tiny"
    # The JSON form round-trips through validation (what push sends, what the server checks).
    assert TrussConfig.model_validate(config.to_dict()) == config


def test_accelerator_without_count_means_one() -> None:
    config = parse_config_text("resources:\n  accelerator: A10G\n").config
    spec = config.resources.accelerator_spec
    assert spec is not None and (spec.type, spec.count) == ("A10G", 1)


INVALID_CASES = [
    (
        "model_name: m\nruntime:\n  predict_concurrency: x\n",
        3,
        "runtime.predict_concurrency",
        "value 'x' is not a valid integer",
    ),
    ("runtime:\n  predict_concurrency: 0\n", 2, "runtime.predict_concurrency", "greater than"),
    ("resources:\n  accelerator: 'H100:0'\n", 2, "resources.accelerator", "TYPE:COUNT"),
    ("resources:\n  memory: lots\n", 2, "resources.memory", "'lots'"),
    ("resources:\n  cpu: two\n", 2, "resources.cpu", "'two'"),
    ("resources:\n  use_gpu: maybe\n", 2, "resources.use_gpu", "not a valid boolean"),
    ("engine:\n  kind: magic\n  model_path: x\n", 2, "engine.kind", "'builtin', 'vllm'"),
    ("model_name: m\nengine:\n  block_size: 4\n", 2, "engine.model_path", "is required"),
    (
        "weights:\n  - source: hf://a/b\n    mount_location: relative/dir\n",
        3,
        "weights[0].mount_location",
        "absolute path",
    ),
    ("weights:\n  - mount_location: /x\n", 2, "weights[0].source", "is required"),
    ("requirements: humanize\n", 1, "requirements", "is not a list"),
    ("requirements: ['a']\nrequirements_file: r.txt\n", 2, "requirements_file", "not both"),
    ("python_version: '3.11'\n", 1, "python_version", "py311"),
    ("secrets:\n  token: [1]\n", 2, "secrets.token", "not a string"),
    ("model_name: m\nruntime: 5\n", 2, "runtime", "not a mapping"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), INVALID_CASES)
def test_invalid_configs_name_field_and_line(
    tmp_path: Path, text: str, line: int, field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    error = caught.value
    assert error.line == line
    assert error.field == field
    message = str(error)
    assert message.startswith(f"config.yaml line {line}: field '{field}'")
    assert fragment in message


def test_all_errors_are_collected(tmp_path: Path) -> None:
    text = "runtime:\n  predict_concurrency: x\nresources:\n  cpu: nope\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    assert {(e.field, e.line) for e in caught.value.errors} == {
        ("runtime.predict_concurrency", 2),
        ("resources.cpu", 4),
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [("model_name: [unclosed\n", 2), ("a: 1\n  b: 2\n", 2), ("model_name: 'x\n", 2)],
)
def test_yaml_syntax_errors_have_lines(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(ConfigError, match="invalid YAML") as caught:
        load_config(write_config(tmp_path, text))
    assert caught.value.line == line


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write_config(tmp_path, "- a\n- b\n"))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path, "")).model_class_name == "Model"


UNKNOWN_KEYS = """\
model_name: m
colour: blue
runtime:
  predict_concurency: 4
weights:
  - source: hf://a/b
    mount_location: /w
    revison: main
"""


def test_unknown_keys_warn_on_load(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = load_config(write_config(tmp_path, UNKNOWN_KEYS))
    messages = [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]
    assert messages == [
        "config.yaml line 2: unknown field 'colour'",
        "config.yaml line 4: unknown field 'runtime.predict_concurency'"
        " (did you mean 'predict_concurrency'?)",
        "config.yaml line 8: unknown field 'weights[0].revison'",
    ]
    assert config.runtime.predict_concurrency == 1


def test_unknown_keys_are_errors_when_strict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, UNKNOWN_KEYS), strict=True)
    assert caught.value.line == 2 and caught.value.field == "colour"
    assert len(caught.value.errors) == 3
    assert "unknown field 'colour'" in str(caught.value)


def test_duplicate_keys_only_warn_even_when_strict(tmp_path: Path) -> None:
    # Truss reads config.yaml with yaml.safe_load: the last duplicate wins, silently.
    write_config(tmp_path, "model_name: a\nruntime:\n  predict_concurrency: 2\nmodel_name: b\n")
    loaded = load_config_with_warnings(tmp_path, strict=True)
    assert loaded.config.model_name == "b"
    assert loaded.warnings == ["config.yaml line 4: duplicate key 'model_name' (the last one wins)"]


def test_duplicate_key_errors_point_at_the_last_one(tmp_path: Path) -> None:
    text = "runtime:\n  predict_concurrency: 2\nruntime:\n  predict_concurrency: lots\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text), strict=True)
    assert caught.value.line == 4 and caught.value.field == "runtime.predict_concurrency"


def test_path_may_be_the_yaml_file(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("model_name: x\n", encoding="utf-8")
    assert load_config(other).model_name == "x"
    loaded = load_config_with_warnings(other)
    assert loaded.path == other and loaded.package_dir == tmp_path


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path)


def test_validate_config_dict_names_field() -> None:
    assert validate_config_dict({"model_name": "x"}).model_name == "x"
    with pytest.raises(ConfigError) as caught:
        validate_config_dict({"runtime": {"predict_concurrency": "many"}})
    assert caught.value.field == "runtime.predict_concurrency" and caught.value.line is None
    assert str(caught.value).startswith("config: field 'runtime.predict_concurrency'")
