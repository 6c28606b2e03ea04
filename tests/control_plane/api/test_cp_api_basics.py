"""Management API over real HTTP: auth, errors, archives, push validation, secrets, keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from control_plane.app import create_app
from control_plane.domain.api_keys import hash_api_key
from control_plane.settings import Settings
from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    INTERNAL_TOKEN,
    RunningControlPlane,
    build_archive,
    config_of,
    upload_and_push,
    write_package,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cp(control_plane_factory: Callable[..., RunningControlPlane]) -> RunningControlPlane:
    return control_plane_factory()


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_health_and_docs_need_no_key(cp: RunningControlPlane) -> None:
    assert httpx.get(f"{cp.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{cp.url}/docs").status_code == 200
    paths = httpx.get(f"{cp.url}/openapi.json").json()["paths"]
    assert "/v1/deployments" in paths and "/v1/routing" in paths


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 401),
        ("Api-Key wrong", 401),
        ("Basic abc", 401),
        (f"Api-Key {ADMIN_KEY}", 200),
        (f"Bearer {ADMIN_KEY}", 200),
        (f"Bearer {INTERNAL_TOKEN}", 401),  # the gateway token is not a management key
    ],
)
def test_auth_on_management_routes(
    cp: RunningControlPlane, header: str | None, expected: int
) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{cp.url}/v1/models", headers=headers)
    assert response.status_code == expected
    if expected == 401:
        assert error_of(response)[1] == "UNAUTHORIZED"


def test_routing_accepts_internal_token_or_key(cp: RunningControlPlane) -> None:
    for credential in (INTERNAL_TOKEN, ADMIN_KEY):
        response = httpx.get(
            f"{cp.url}/v1/routing", headers={"Authorization": f"Bearer {credential}"}
        )
        assert response.status_code == 200
    assert httpx.get(f"{cp.url}/v1/routing").status_code == 401


def test_archive_upload_verifies_hash(cp: RunningControlPlane, tmp_path: Path) -> None:
    info = build_archive(write_package(tmp_path), tmp_path / "out")
    body = info.path.read_bytes()
    url = f"/v1/archives/{info.sha256}"
    assert cp.client.head(url).status_code == 404

    status, code, message = error_of(cp.client.put(url, content=body + b"tampered"))
    assert (status, code) == (400, "HASH_MISMATCH") and info.sha256 in message
    assert cp.client.head(url).status_code == 404  # nothing stored

    response = cp.client.put(url, content=body)
    assert response.status_code == 201 and response.json()["size"] == len(body)
    assert cp.client.head(url).status_code == 200
    # The path's pattern is in the OpenAPI schema: a bad hash is a 422 naming it.
    status, code, message = error_of(cp.client.put("/v1/archives/not-a-hash", content=b"x"))
    assert (status, code) == (422, "VALIDATION") and "sha256" in message and "not-a-hash" in message


def test_push_creates_model_environments_and_building_deployment(
    cp: RunningControlPlane, tmp_path: Path
) -> None:
    package = write_package(tmp_path)
    first = upload_and_push(cp.client, package, tmp_path / "a")
    model_id = first["model_id"]
    assert len(model_id) == 8 and model_id.isalnum() and model_id.islower()
    dep = first["deployment"]
    assert dep["status"] == "BUILDING" and dep["environment"] == "development"
    assert first["predict_url"].endswith(f"/models/{model_id}/development/predict")
    assert first["warnings"] == []  # nothing set that this platform cannot honour

    second = upload_and_push(cp.client, package, tmp_path / "b", promote=True)
    assert second["model_id"] == model_id
    assert second["deployment"]["name"] == "deployment-2"
    assert second["deployment"]["environment"] == "production"

    model = cp.client.get(f"/v1/models/{model_id}").json()
    assert model["name"] == "doubler" and model["deployments_count"] == 2
    assert model["production_deployment_id"] is None  # nothing is ACTIVE yet
    environments = cp.client.get(f"/v1/models/{model_id}/environments").json()["environments"]
    names = [env["name"] for env in environments]
    assert names == ["development", "production"]
    listed = cp.client.get(f"/v1/models/{model_id}/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == [dep["id"], second["deployment"]["id"]]
    logs = cp.client.get(f"/v1/models/{model_id}/deployments/{dep['id']}/logs").json()
    assert logs == {"build": [], "replicas": []}


def test_push_warns_about_fields_it_cannot_honour(cp: RunningControlPlane, tmp_path: Path) -> None:
    package = write_package(tmp_path, "needs-apt")
    with (package / "config.yaml").open("a") as config:
        config.write("system_packages: [ffmpeg]\nbuild_commands: ['echo hi']\n")
    pushed = upload_and_push(cp.client, package, tmp_path / "out")
    assert pushed["warnings"] == [
        "config field 'system_packages' (['ffmpeg']) is recorded but not honoured by the process"
        " runtime: apt packages are not installed",
        "config field 'build_commands' (['echo hi']) is recorded but not honoured by the process"
        " runtime: build commands are not run",
    ]


def test_push_validation_errors(cp: RunningControlPlane, tmp_path: Path) -> None:
    package = write_package(tmp_path)
    info = build_archive(package, tmp_path / "out")
    cp.client.put(f"/v1/archives/{info.sha256}", content=info.path.read_bytes())
    base = {"model_name": "doubler", "archive_sha256": info.sha256, "config": config_of(package)}

    bad_config = {**base, "config": {"runtime": {"predict_concurrency": "lots"}}}
    status, code, message = error_of(cp.client.post("/v1/deployments", json=bad_config))
    assert (status, code) == (422, "VALIDATION")
    assert "runtime.predict_concurrency" in message and "lots" in message

    missing = {**base, "archive_sha256": hashlib.sha256(b"other").hexdigest()}
    status, code, message = error_of(cp.client.post("/v1/deployments", json=missing))
    assert (status, code) == (404, "NOT_FOUND") and "has not been uploaded" in message
    unknown_env = {**base, "environment": "staging"}
    status, code, message = error_of(cp.client.post("/v1/deployments", json=unknown_env))
    assert (status, code) == (404, "NOT_FOUND") and "staging" in message
    both = {**base, "environment": "staging", "promote": True}
    assert error_of(cp.client.post("/v1/deployments", json=both))[:2] == (422, "VALIDATION")
    no_name = {key: value for key, value in base.items() if key != "model_name"}
    status, code, message = error_of(cp.client.post("/v1/deployments", json=no_name))
    assert (status, code) == (422, "VALIDATION") and "model_name" in message
    assert error_of(cp.client.get("/v1/models/nosuchid"))[:2] == (404, "NOT_FOUND")


def test_secrets_are_never_returned(cp: RunningControlPlane) -> None:
    value = "s3cr3t-value-xyz"
    created = cp.client.post("/v1/secrets", json={"name": "greeting", "value": value})
    assert created.status_code == 200 and value not in created.text
    updated = cp.client.post("/v1/secrets", json={"name": "greeting", "value": "v2"}).json()
    assert updated["created_at"] == created.json()["created_at"]
    listing = cp.client.get("/v1/secrets")
    names = [s["name"] for s in listing.json()["secrets"]]
    assert names == ["greeting"] and "v2" not in listing.text
    assert error_of(cp.client.post("/v1/secrets", json={"name": "../x", "value": "v"}))[:2] == (
        422,
        "VALIDATION",
    )
    empty = cp.client.post("/v1/secrets", json={"name": "greeting", "value": ""})
    assert error_of(empty)[:2] == (422, "VALIDATION") and "value" in empty.text
    assert cp.client.delete("/v1/secrets/greeting").status_code == 204
    assert error_of(cp.client.delete("/v1/secrets/greeting"))[:2] == (404, "NOT_FOUND")


def test_api_keys_lifecycle(cp: RunningControlPlane) -> None:
    created = cp.client.post("/v1/api_keys", json={"name": "ci"})
    assert created.status_code == 201
    key, prefix = created.json()["api_key"], created.json()["prefix"]
    assert key.startswith(prefix)
    with_new_key = {"Authorization": f"Api-Key {key}"}
    assert httpx.get(f"{cp.url}/v1/models", headers=with_new_key).status_code == 200

    listing = cp.client.get("/v1/api_keys")
    assert key not in listing.text
    assert {"ci", "admin"} <= {k["name"] for k in listing.json()["api_keys"]}
    table = cp.client.get("/v1/routing").json()
    assert hash_api_key(key) in table["api_key_hashes"]

    assert cp.client.delete(f"/v1/api_keys/{prefix}").status_code == 204
    assert httpx.get(f"{cp.url}/v1/models", headers=with_new_key).status_code == 401
    assert hash_api_key(key) not in cp.client.get("/v1/routing").json()["api_key_hashes"]


def test_environments_and_autoscaling_validation(cp: RunningControlPlane, tmp_path: Path) -> None:
    model_id = upload_and_push(cp.client, write_package(tmp_path), tmp_path / "a")["model_id"]
    url = f"/v1/models/{model_id}/environments"
    created = cp.client.post(
        url, json={"name": "staging", "autoscaling_settings": {"min_replica": 1, "max_replica": 3}}
    )
    assert created.status_code == 201, created.text
    settings = created.json()["autoscaling_settings"]
    assert settings == {
        "min_replica": 1,
        "max_replica": 3,
        "autoscaling_window": 60,
        "scale_down_delay": 900,
        "concurrency_target": 1,
        "target_utilization_percentage": 70,
    }
    assert error_of(cp.client.post(url, json={"name": "staging"}))[:2] == (409, "CONFLICT")
    assert error_of(cp.client.post(url, json={"name": "Bad Name"}))[:2] == (422, "VALIDATION")
    bad = {"autoscaling_settings": {"min_replica": 5}}
    status, code, message = error_of(cp.client.patch(f"{url}/staging", json=bad))
    # Each value is valid alone; merged with max_replica 1 they conflict.
    assert (status, code) == (409, "CONFLICT") and "max_replica" in message
    unknown = {"autoscaling_settings": {"replicas": 5}}
    assert error_of(cp.client.patch(f"{url}/staging", json=unknown))[:2] == (422, "VALIDATION")
    patched = cp.client.patch(f"{url}/staging", json={"autoscaling_settings": {"max_replica": 4}})
    assert patched.json()["autoscaling_settings"]["max_replica"] == 4
    assert len(cp.client.get(url).json()["environments"]) == 3
    assert error_of(cp.client.get(f"{url}/nope"))[:2] == (404, "NOT_FOUND")


def test_routing_version_changes_only_with_content(cp: RunningControlPlane, tmp_path: Path) -> None:
    first = cp.client.get("/v1/routing").json()
    assert cp.client.get("/v1/routing").json()["version"] == first["version"]
    model_id = upload_and_push(cp.client, write_package(tmp_path), tmp_path / "a")["model_id"]
    second = cp.client.get("/v1/routing").json()
    assert second["version"] > first["version"]
    model = second["models"][model_id]
    assert model["environments"] == {"development": None, "production": None}
    (entry,) = model["deployments"].values()
    assert entry == {
        "status": "BUILDING",
        "engine": False,
        "predict_concurrency": 1,
        "openai": False,  # set by the build
        "predict_path": "/v1/models/model:predict",
        "replicas": [],
    }


def test_app_works_without_lifespan(tmp_path: Path) -> None:
    """The Lambda handler runs the app with lifespan off: wiring must be lazy."""
    settings = Settings(
        state_dir=tmp_path, bootstrap_api_key=ADMIN_KEY, run_background_workers=False
    )
    app = create_app(settings)
    client = TestClient(app)  # no `with`: the lifespan never runs
    assert client.get("/healthz").status_code == 200
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200 and response.json() == {"models": []}
    app.state.platform.close()
