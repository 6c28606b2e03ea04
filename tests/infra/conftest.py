"""Fixtures for the Pulumi component tests: standard tags and a mock-run helper."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from infra.offline import OfflineRun, run_offline
from infra.tags import StandardTags

Program = Callable[[], Mapping[str, Any] | None]


@pytest.fixture
def tags() -> StandardTags:
    return StandardTags(project="plinth", stack="test", region="us-east-1")


@pytest.fixture
def run() -> Callable[[Program], OfflineRun]:
    """Run a program (a callable creating components) under Pulumi mocks."""

    def _run(program: Program) -> OfflineRun:
        return run_offline(program, project="plinth-test", stack="test", region="us-east-1")

    return _run
