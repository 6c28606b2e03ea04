"""`/docs` works on an air-gapped host: Swagger UI's assets come from the control plane itself,
and the OpenAPI document declares how to authenticate so "Try it out" can send a key."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.control_plane.api.cp_api_helpers import ADMIN_KEY, RunningControlPlane

pytestmark = pytest.mark.integration


@pytest.fixture
def cp(control_plane_factory: Callable[..., RunningControlPlane]) -> RunningControlPlane:
    return control_plane_factory()


def test_docs_page_loads_every_asset_from_the_control_plane(cp: RunningControlPlane) -> None:
    page = httpx.get(f"{cp.url}/docs")
    assert page.status_code == 200
    referenced = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert referenced, page.text
    assert not [url for url in referenced if "//" in url], "the page loads from another host"
    kinds = set()
    for url in referenced:
        asset = httpx.get(f"{cp.url}{url}")
        assert asset.status_code == 200, url
        assert asset.content, url
        kinds.add(asset.headers["content-type"].split(";")[0])
    assert {"text/javascript", "text/css", "application/json"} <= kinds, kinds
    assert httpx.get(f"{cp.url}/redoc").status_code == 404  # redoc would need a CDN


def test_openapi_declares_api_key_and_bearer_auth(cp: RunningControlPlane) -> None:
    spec = httpx.get(f"{cp.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The whole header value: `Api-Key <key>`.",
    }
    assert schemes["Bearer"]["type"] == "http" and schemes["Bearer"]["scheme"] == "bearer"
    either = [{"ApiKey": []}, {"Bearer": []}]
    assert spec["paths"]["/v1/models"]["get"]["security"] == either
    assert spec["paths"]["/v1/routing"]["get"]["security"] == either
    assert "security" not in spec["paths"]["/healthz"]["get"]
    # What Swagger UI sends for each scheme is accepted.
    for header in (f"Api-Key {ADMIN_KEY}", f"Bearer {ADMIN_KEY}"):
        listed = httpx.get(f"{cp.url}/v1/models", headers={"Authorization": header})
        assert listed.status_code == 200
