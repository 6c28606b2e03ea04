"""Fixtures for the control-plane API tests: a real app on loopback, real adapters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.control_plane.api.cp_api_helpers import RunningControlPlane, start_control_plane


@pytest.fixture
def control_plane_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningControlPlane]]:
    """Start control planes (real SQLite, blob dir, queue) served by uvicorn on loopback."""
    stops: list[Callable[[], None]] = []

    def start(**overrides: Any) -> RunningControlPlane:
        running, stop = start_control_plane(tmp_path_factory.mktemp("state"), **overrides)
        stops.append(stop)
        return running

    yield start
    for stop in stops:
        stop()
