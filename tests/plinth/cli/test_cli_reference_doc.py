"""docs/cli.md is the CLI reference generated from the code (`make docs` rewrites it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_cli_reference_matches_the_code(tmp_path: Path) -> None:
    generated = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    command = [str(typer), "plinth.cli.main", "utils", "docs", "--name", "plinth"]
    subprocess.run([*command, "--output", str(generated)], check=True, cwd=REPO_ROOT)
    committed = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert generated.read_text(encoding="utf-8") == committed, (
        "docs/cli.md is stale: run `make docs` and commit it"
    )
