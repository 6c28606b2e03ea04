"""Archive uploads that bypass the API: presigned S3 PUTs (one, or parts) against a moto
server, the API verifying size and sha256 afterwards; `plinth push` as a subprocess too."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.adapters.s3_blob import make_s3_client
from plinth.client import PlinthClient
from plinth.exceptions import ApiError
from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    RunningControlPlane,
    write_package,
)
from tests.support import cloud

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[3]
PART = 5 << 20  # S3's smallest part


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with cloud.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return make_s3_client()


@pytest.fixture
def s3_control_plane(
    s3: Any, control_plane_factory: Callable[..., RunningControlPlane]
) -> tuple[RunningControlPlane, str]:
    bucket = f"archives-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    running = control_plane_factory(
        blob_kind="s3",
        blob_bucket=bucket,
        archive_multipart_threshold_bytes=PART,
        archive_part_bytes=PART,
    )
    return running, bucket


def _archive(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / f"archive-{size}.tar.gz"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.parametrize(("size", "mode"), [(200_000, "single"), (2 * PART + 123, "multipart")])
def test_client_uploads_straight_to_s3_and_the_api_stores_only_verified_bytes(
    s3_control_plane: tuple[RunningControlPlane, str],
    s3: Any,
    tmp_path: Path,
    size: int,
    mode: str,
) -> None:
    running, bucket = s3_control_plane
    path, sha = _archive(tmp_path, size)
    plan = running.client.post(f"/v1/archives/{sha}/uploads", json={"size": size}).json()
    assert plan["mode"] == mode
    assert len(plan["parts"]) == (3 if mode == "multipart" else 0)

    seen: list[int] = []
    with PlinthClient(running.url, ADMIN_KEY) as client:
        assert client.upload_archive(path, sha, progress=lambda done, _total: seen.append(done))
        assert not client.upload_archive(path, sha)  # stored: nothing is sent again
    assert seen[-1] == size
    assert _keys(s3, bucket) == [f"archives/{sha}.tar.gz"]  # staging object removed
    stored = s3.get_object(Bucket=bucket, Key=f"archives/{sha}.tar.gz")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == sha


def test_a_wrong_body_is_rejected_naming_the_hash_and_nothing_is_stored(
    s3_control_plane: tuple[RunningControlPlane, str], s3: Any, tmp_path: Path
) -> None:
    running, bucket = s3_control_plane
    _path, sha = _archive(tmp_path, 1000)
    plan = running.client.post(f"/v1/archives/{sha}/uploads", json={"size": 1000}).json()
    assert httpx.put(plan["url"], content=b"x" * 1000).status_code == 200
    done = running.client.post(
        f"/v1/archives/{sha}/uploads/{plan['upload_id']}/complete", json={"size": 1000}
    )
    assert done.status_code == 400
    assert done.json()["error"]["code"] == "HASH_MISMATCH"
    assert "sha256" in done.json()["error"]["message"] and sha in done.json()["error"]["message"]
    assert _keys(s3, bucket) == []
    assert running.client.head(f"/v1/archives/{sha}").status_code == 404


def test_a_truncated_body_is_rejected_naming_the_size(
    s3_control_plane: tuple[RunningControlPlane, str], s3: Any, tmp_path: Path
) -> None:
    running, bucket = s3_control_plane
    path, sha = _archive(tmp_path, 1000)
    plan = running.client.post(f"/v1/archives/{sha}/uploads", json={"size": 1000}).json()
    httpx.put(plan["url"], content=path.read_bytes()[:999])
    done = running.client.post(
        f"/v1/archives/{sha}/uploads/{plan['upload_id']}/complete", json={"size": 1000}
    )
    assert done.status_code == 400
    assert "size: the upload stored 999 bytes, not 1000" in done.json()["error"]["message"]
    assert _keys(s3, bucket) == []


def test_a_wrong_body_does_not_replace_a_stored_archive(
    s3_control_plane: tuple[RunningControlPlane, str], s3: Any, tmp_path: Path
) -> None:
    running, bucket = s3_control_plane
    path, sha = _archive(tmp_path, 1000)
    with PlinthClient(running.url, ADMIN_KEY) as client:
        client.upload_archive(path, sha)
    # A client that skips the plan's "stored" answer and completes a bogus upload id.
    done = running.client.post(
        f"/v1/archives/{sha}/uploads/{'0' * 16}/complete", json={"size": 1000}
    )
    assert done.status_code == 400
    assert "upload_id" in done.json()["error"]["message"]
    stored = s3.get_object(Bucket=bucket, Key=f"archives/{sha}.tar.gz")["Body"].read()
    assert stored == path.read_bytes()


def test_plan_rejects_an_archive_over_the_limit(
    s3_control_plane: tuple[RunningControlPlane, str],
) -> None:
    running, _bucket = s3_control_plane
    sha = "a" * 64
    too_big = running.platform.settings.max_archive_bytes + 1
    response = running.client.post(f"/v1/archives/{sha}/uploads", json={"size": too_big})
    assert response.status_code == 413
    assert "size" in response.json()["error"]["message"]


def test_directory_store_plans_the_api_put_and_the_client_uses_it(
    control_plane_factory: Callable[..., RunningControlPlane], tmp_path: Path
) -> None:
    running = control_plane_factory()
    path, sha = _archive(tmp_path, 5000)
    plan = running.client.post(f"/v1/archives/{sha}/uploads", json={"size": 5000}).json()
    assert plan == {
        "sha256": sha,
        "size": 5000,
        "mode": "api",
        "url": f"/v1/archives/{sha}",
        "upload_id": None,
        "multipart_id": None,
        "parts": [],
    }
    with PlinthClient(running.url, ADMIN_KEY) as client:
        assert client.upload_archive(path, sha)
    assert running.client.head(f"/v1/archives/{sha}").headers["content-length"] == "5000"


def test_a_store_refusing_the_upload_is_named_without_the_signed_url(
    s3_control_plane: tuple[RunningControlPlane, str], s3: Any, tmp_path: Path
) -> None:
    running, bucket = s3_control_plane
    path, sha = _archive(tmp_path, 1000)
    s3.delete_bucket(Bucket=bucket)  # the store now answers NoSuchBucket
    with PlinthClient(running.url, ADMIN_KEY) as client, pytest.raises(ApiError) as caught:
        client.upload_archive(path, sha)
    assert caught.value.code == "UPLOAD_FAILED"
    assert "Signature" not in str(caught.value) and "X-Amz" not in str(caught.value)


def test_cli_push_uploads_through_presigned_parts(
    s3_control_plane: tuple[RunningControlPlane, str], s3: Any, tmp_path: Path
) -> None:
    running, bucket = s3_control_plane
    package = write_package(tmp_path / "pkg", "bigpush")
    (package / "data").mkdir(exist_ok=True)
    (package / "data" / "noise.bin").write_bytes(os.urandom(PART + 4096))  # gzip keeps it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLINTH_")}
    env.update(
        PLINTH_URL=running.url,
        PLINTH_API_KEY=ADMIN_KEY,
        PLINTH_STATE_DIR=str(tmp_path / "cli-state"),
        PLINTH_CONFIG=str(tmp_path / "cli-config.json"),
        PYTHONPATH=str(REPO_ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-m", "plinth.cli.main", "push", str(package), "--no-wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    archives = [key for key in _keys(s3, bucket) if key.startswith("archives/")]
    assert len(archives) == 1 and not [k for k in _keys(s3, bucket) if k.startswith("uploads/")]
