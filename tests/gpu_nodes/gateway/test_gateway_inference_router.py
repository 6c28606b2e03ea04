"""Which requests the plain ASGI router hands to FastAPI: exactly those FastAPI's fixed routes
match (a GET route answers HEAD too); every other request is an inference request."""

from __future__ import annotations

import pytest

from gpu_nodes.gateway.inference import is_fixed_route


@pytest.mark.parametrize(
    ("method", "path", "fixed"),
    [
        ("GET", "/healthz", True),
        ("HEAD", "/healthz", True),
        ("POST", "/healthz", False),
        ("GET", "/metrics", True),
        ("GET", "/openapi.json", True),
        ("GET", "/async_request/r1", True),
        ("DELETE", "/async_request/r1", True),
        ("POST", "/async_request/r1", False),
        ("POST", "/async_request/r1/replay_webhook", True),
        ("GET", "/async_request/r1/replay_webhook", False),
        ("GET", "/async_request/", False),
        ("GET", "/async_request/r1/", False),
        ("GET", "/async_request/r1/other", False),
        ("POST", "/models/m1/production/predict", False),
        ("GET", "/v1/models", False),
        ("GET", "/healthz/", False),
    ],
)
def test_fixed_routes_are_exactly_fastapis(method: str, path: str, fixed: bool) -> None:
    assert is_fixed_route(method, path) is fixed
