"""A session-wide stack tree: referenced stacks are run (under mocks) once per worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.preflight import StackTree

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture(scope="session")
def stacks_dir() -> Path:
    return STACKS_DIR


@pytest.fixture(scope="session")
def tree() -> StackTree:
    return StackTree(STACKS_DIR)
