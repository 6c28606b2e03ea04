"""JSON schema of `config.yaml`, generated from the pydantic model.

`python -m plinth.spec.schema` rewrites `plinth/spec/config.schema.json` (checked in, so editors
and other tools can validate config.yaml without importing Plinth); a test checks it is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from plinth.spec.config import TrussConfig

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")
SCHEMA_ID = "https://plinth.dev/schemas/config.schema.json"


def generate_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of TrussConfig."""
    schema = TrussConfig.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def render_schema() -> str:
    """The schema file's exact text (stable key order, trailing newline)."""
    return json.dumps(generate_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SCHEMA_PATH
    target.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
