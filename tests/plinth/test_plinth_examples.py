"""The example packages: valid strict configs, and their Model classes behave as documented.

The models are loaded straight from their files, as the model server does; serving them over
HTTP through a deployment is the end-to-end suite's job.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plinth.spec import load_config_with_warnings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OWN_EXAMPLES = ("hello", "with-requirements", "streaming")


@pytest.fixture(autouse=True)
def no_bytecode_in_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing the model files must not leave __pycache__ inside examples/.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


def load_model(example: str) -> Any:
    config = load_config_with_warnings(EXAMPLES / example, strict=True).config
    path = EXAMPLES / example / config.model_class_path
    spec = importlib.util.spec_from_file_location(f"example_{example.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model_class = getattr(module, config.model_class_name)
    model = model_class(config=config.to_dict(), data_dir=EXAMPLES / example / "data", secrets={})
    model.load()
    return model


@pytest.mark.parametrize("example", OWN_EXAMPLES)
def test_example_configs_load_strictly_without_warnings(example: str) -> None:
    loaded = load_config_with_warnings(EXAMPLES / example, strict=True)
    assert loaded.warnings == []
    assert loaded.config.model_name == example


def test_hello_predicts() -> None:
    model = load_model("hello")
    assert model.predict({"x": 3}) == {"x": 3, "doubled": 6, "squared": 9, "loaded": True}
    with pytest.raises(ValueError, match='"x"'):
        model.predict({"y": 1})
    with pytest.raises(ValueError, match="must be a number"):
        model.predict({"x": "three"})


def test_streaming_yields_chunks() -> None:
    model = load_model("streaming")
    chunks = model.predict({"text": "one two", "repeat": 2, "delay_s": 0})
    assert isinstance(chunks, Iterator)
    assert list(chunks) == ["one ", "two ", "one ", "two "]
    assert list(model.predict({"n": 3, "delay_s": 0})) == ["chunk 0 ", "chunk 1 ", "chunk 2 "]
    with pytest.raises(ValueError, match="too many chunks"):
        model.predict({"n": 20_000})


@pytest.fixture
def requirements_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the example's pinned requirement into a temp dir (the local pip mirror), as the
    platform's build does into the deployment's venv; .venv itself must not have it."""
    config = load_config_with_warnings(EXAMPLES / "with-requirements", strict=True).config
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            *config.requirements,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, "tabulate", raising=False)


def test_with_requirements_uses_its_requirement(requirements_on_path: None) -> None:
    model = load_model("with-requirements")
    result = model.predict({"headers": ["name", "score"], "rows": [["ada", 3]]})
    assert result["tabulate_version"] == "0.10.0"
    assert result["table"].splitlines()[0].split() == ["name", "score"]
    assert "ada" in result["table"]
    with pytest.raises(ValueError, match="rows"):
        model.predict({"rows": "nope"})
