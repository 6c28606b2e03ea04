"""Fixtures for mirror tests: loopback servers standing in for HF Hub, https hosts and S3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cloud import moto_server
from tests.support.servers import serve


@pytest.fixture
def serve_app() -> Any:
    return serve


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint
