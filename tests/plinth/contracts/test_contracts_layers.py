"""The layer contracts (pyproject.toml ``[tool.importlinter]``) hold, and they do catch a
wrong-way import: a copy of the packages with one added import fails ``lint-imports``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("control_plane", "gpu_nodes", "lambdas", "infra", "plinth")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def copy_of_the_packages(target: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(
            REPO_ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_the_contracts_hold_and_a_gpu_node_module_importing_the_control_plane_breaks_them(
    tmp_path: Path,
) -> None:
    root = copy_of_the_packages(tmp_path)
    kept = lint_imports(root)
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-3000:]

    wrong_way = root / "gpu_nodes" / "gateway" / "paths.py"
    wrong_way.write_text(wrong_way.read_text() + "\nimport control_plane.settings  # noqa\n")
    broken = lint_imports(root)
    assert broken.returncode != 0
    assert "The control plane and the GPU-node packages are independent" in broken.stdout
    assert "gpu_nodes.gateway.paths -> control_plane.settings" in broken.stdout
