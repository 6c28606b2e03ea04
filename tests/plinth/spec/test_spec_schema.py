"""The checked-in JSON schema is current and validates real configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from plinth.spec.schema import SCHEMA_PATH, render_schema

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), (
        "plinth/spec/config.schema.json is stale: run `python -m plinth.spec.schema`"
    )


def test_schema_module_writes_file(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    subprocess.run(
        [sys.executable, "-m", "plinth.spec.schema", str(target)],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    assert target.read_text(encoding="utf-8") == render_schema()


def test_every_field_has_a_description() -> None:
    schema = json.loads(render_schema())
    sections = [schema, *schema["$defs"].values()]
    for section in sections:
        for name, prop in section.get("properties", {}).items():
            assert prop.get("description"), f"field {name} has no description"


def test_schema_validates_examples_and_rejects_bad_types() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for example in ("hello", "with-requirements", "streaming"):
        config_file = REPO_ROOT / "examples" / example / "config.yaml"
        jsonschema.validate(yaml.safe_load(config_file.read_text(encoding="utf-8")), schema)
    bad = {"runtime": {"predict_concurrency": "x"}}
    validator = jsonschema.Draft202012Validator(schema)
    assert any(error.path[-1] == "predict_concurrency" for error in validator.iter_errors(bad))
