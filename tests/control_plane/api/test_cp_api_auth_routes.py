"""Every /v1 route of the app's route table refuses requests without a valid credential.

The routes are read from the running app, so a route added later (or one whose auth
dependency was dropped) is covered without editing this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from control_plane.domain.api_keys import hash_api_key
from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    INTERNAL_TOKEN,
    RunningControlPlane,
    start_control_plane,
)

pytestmark = pytest.mark.integration

# Routes the gateways call with the internal token instead of an API key.
INTERNAL_TOKEN_ROUTES = {
    ("GET", "/v1/routing"),
    ("POST", "/v1/models/{model_id}/deployments/{deployment_id}/wake"),
    ("POST", "/v1/clusters/{cluster_id}/heartbeat"),
    ("POST", "/v1/load_reports"),
    # Async inference: the gateway relays its public async routes with the internal token.
    ("POST", "/v1/models/{model_id}/deployments/{deployment_id}/async_requests"),
    ("GET", "/v1/models/{model_id}/deployments/{deployment_id}/async_queue_status"),
    ("GET", "/v1/async_requests/{request_id}"),
    ("DELETE", "/v1/async_requests/{request_id}"),
    ("POST", "/v1/async_requests/{request_id}/replay_webhook"),
}


def v1_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every /v1 route the app serves."""
    routes: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if path == "/v1" or path.startswith("/v1/"):
            routes.update((method, path) for method in route.methods or ())
    return sorted(routes, key=lambda r: (r[1], r[0]))


def concrete(path: str) -> str:
    """The template with every ``{param}`` filled (the values need not exist)."""
    return re.sub(r"\{[^}]+\}", "x1", path)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    running, stop = start_control_plane(tmp_path_factory.mktemp("auth-state"))
    yield running
    stop()


def refused(cp: RunningControlPlane, authorization: str | None) -> list[str]:
    """The routes that did NOT answer 401 UNAUTHORIZED with this Authorization header."""
    headers = {"Authorization": authorization} if authorization else {}
    wrong = []
    for method, path in v1_routes(cp.server.app):
        response = httpx.request(method, cp.url + concrete(path), headers=headers, timeout=30)
        ok = response.status_code == 401 and (
            method == "HEAD" or response.json()["error"]["code"] == "UNAUTHORIZED"
        )
        if not ok:
            wrong.append(f"{method} {path} -> {response.status_code}")
    return wrong


def test_route_table_has_the_v1_routes(cp: RunningControlPlane) -> None:
    routes = v1_routes(cp.server.app)
    assert len(routes) >= 25
    assert set(routes) >= INTERNAL_TOKEN_ROUTES


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Api-Key wrong-key",
        "Bearer wrong-key",
        f"Basic {ADMIN_KEY}",
        "Bearer",
        f"Api-Key {hash_api_key(ADMIN_KEY)}",  # the stored hash is not the key
    ],
    ids=["none", "wrong-api-key", "wrong-bearer", "basic-scheme", "no-key", "key-hash"],
)
def test_every_v1_route_answers_401_without_a_valid_key(
    cp: RunningControlPlane, authorization: str | None
) -> None:
    assert refused(cp, authorization) == []


def test_internal_token_is_valid_only_where_gateways_use_it(cp: RunningControlPlane) -> None:
    headers = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    for method, path in v1_routes(cp.server.app):
        response = httpx.request(method, cp.url + concrete(path), headers=headers, timeout=30)
        if (method, path) in INTERNAL_TOKEN_ROUTES:
            assert response.status_code != 401, f"{method} {path}"
        else:
            assert response.status_code == 401, f"{method} {path}"


def test_the_admin_key_passes_auth_on_every_route(cp: RunningControlPlane) -> None:
    headers = {"Authorization": f"Api-Key {ADMIN_KEY}"}
    for method, path in v1_routes(cp.server.app):
        response = httpx.request(method, cp.url + concrete(path), headers=headers, timeout=30)
        assert response.status_code != 401, f"{method} {path}"
