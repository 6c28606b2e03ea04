"""PlinthClient against the real control plane (`python -m control_plane`, workers off)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plinth.client import PlinthClient, environment_path, predict_url
from plinth.exceptions import ApiError, PlatformUnreachableError, WaitTimeoutError
from plinth.spec import create_archive, load_config
from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture
def client(control_plane: Any) -> Iterator[PlinthClient]:
    with PlinthClient(control_plane.url, control_plane.api_key, timeout=15) as api:
        yield api


def pushed_hello(client: PlinthClient, tmp_path: Path, name: str) -> tuple[str, str]:
    package = tmp_path / name
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = load_config(package)
    info = create_archive(package, tmp_path / f"{name}.tar.gz")
    client.upload_archive(info.path, info.sha256)
    created = client.create_deployment(name, info.sha256, config.to_dict())
    return str(created["model_id"]), str(created["deployment"]["id"])


def test_upload_skips_when_archive_present(client: PlinthClient, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    (package / "unique.txt").write_text(str(tmp_path), encoding="utf-8")
    info = create_archive(package, tmp_path / "a.tar.gz")
    seen: list[tuple[int, int]] = []
    assert not client.archive_exists(info.sha256)
    assert client.upload_archive(info.path, info.sha256, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (info.size, info.size)
    assert client.archive_exists(info.sha256)
    assert client.upload_archive(info.path, info.sha256) is False


def test_upload_hash_mismatch_is_an_api_error(client: PlinthClient, tmp_path: Path) -> None:
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"some bytes")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(ApiError) as caught:
        client.upload_archive(archive, wrong)
    assert caught.value.status == 400 and caught.value.code


def test_deployment_lifecycle_calls(client: PlinthClient, tmp_path: Path) -> None:
    model_id, deployment_id = pushed_hello(client, tmp_path, "client-hello")
    assert any(model["id"] == model_id for model in client.list_models())
    assert client.get_model(model_id)["name"] == "client-hello"
    deployments = client.list_deployments(model_id)
    assert [dep["id"] for dep in deployments] == [deployment_id]
    deployment = client.get_deployment(model_id, deployment_id)
    assert deployment["status"] == "BUILDING"
    logs = client.deployment_logs(model_id, deployment_id)
    assert set(logs) == {"build", "replicas"}
    names = {env["name"] for env in client.list_environments(model_id)}
    assert {"production", "development"} <= names
    created = client.create_environment(model_id, "staging")
    assert created["name"] == "staging"
    assert client.get_environment(model_id, "staging")["current_deployment"] is None
    updated = client.update_autoscaling(model_id, deployment_id, max_replica=3)
    assert updated["autoscaling_settings"]["max_replica"] == 3
    with pytest.raises(WaitTimeoutError, match="still BUILDING"):
        client.wait_for_deployment(model_id, deployment_id, timeout=0.5, poll=0.1)


def test_errors_carry_status_and_code(client: PlinthClient) -> None:
    with pytest.raises(ApiError) as caught:
        client.get_model("nosuchmodel")
    assert caught.value.status == 404
    assert caught.value.code and caught.value.code != "HTTP_404"
    with pytest.raises(ApiError) as bad_settings:
        client.update_autoscaling("nosuchmodel", "nosuchdep", max_replica=0)
    assert 400 <= bad_settings.value.status < 500


def test_wrong_api_key_is_401(control_plane: Any) -> None:
    with (
        PlinthClient(control_plane.url, "pl_wrong", timeout=10) as api,
        pytest.raises(ApiError) as caught,
    ):
        api.list_models()
    assert caught.value.status == 401


def test_secrets_and_api_keys(client: PlinthClient, control_plane: Any) -> None:
    client.set_secret("hf_token", "s3cr3t-value")
    listed = client.list_secrets()
    assert [item["name"] for item in listed] == ["hf_token"]
    assert "s3cr3t-value" not in repr(listed)
    client.delete_secret("hf_token")
    assert client.list_secrets() == []
    created = client.create_api_key("ci")
    key = created["api_key"]
    with PlinthClient(control_plane.url, key, timeout=10) as other:
        assert isinstance(other.list_models(), list)
    prefixes = [item["prefix"] for item in client.list_api_keys()]
    assert created["prefix"] in prefixes
    client.delete_api_key(created["prefix"])
    with PlinthClient(control_plane.url, key, timeout=10) as revoked, pytest.raises(ApiError):
        revoked.list_models()


def test_unreachable_control_plane() -> None:
    with (
        PlinthClient(f"http://127.0.0.1:{free_port()}", "k", timeout=2) as api,
        pytest.raises(PlatformUnreachableError) as caught,
    ):
        api.list_models()
    assert caught.value.what == "control plane"


@pytest.mark.parametrize(
    ("environment", "deployment", "expected"),
    [
        ("production", None, "production"),
        ("development", None, "development"),
        ("staging", None, "environments/staging"),
        (None, "abc123", "deployment/abc123"),
        ("a/b", None, "environments/a%2Fb"),
    ],
)
def test_environment_paths(environment: str | None, deployment: str | None, expected: str) -> None:
    assert environment_path(environment, deployment) == expected
    url = predict_url("http://gw/", "m1", environment=environment, deployment_id=deployment)
    assert url == f"http://gw/models/m1/{expected}/predict"
