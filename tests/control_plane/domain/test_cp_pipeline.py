"""Build pipeline with the real adapters and builder: build, redelivery, unsafe archive."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.domain.build_log import read_build_log
from control_plane.domain.deployments import BUILD_QUEUE, PushRequest
from control_plane.domain.records import DeploymentStatus
from control_plane.settings import Settings
from control_plane.wiring import Platform

MODEL_PY = b"class Model:\n    def predict(self, model_input):\n        return model_input\n"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(Settings(state_dir=tmp_path / "state", run_background_workers=False))
    yield platform
    platform.close()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def push(platform: Platform, archive: bytes) -> tuple[str, str]:
    sha256 = hashlib.sha256(archive).hexdigest()
    upload = platform.archives.begin_upload(sha256)
    upload.write(archive)
    upload.commit()
    upload.discard()
    model, dep = platform.deployments.push(
        PushRequest(model_name="piped", archive_sha256=sha256, config={"model_name": "piped"})
    )
    return model.id, dep.id


def test_build_then_redelivery_is_a_no_op(platform: Platform) -> None:
    archive = tar_gz({"config.yaml": b"model_name: piped\n", "model/model.py": MODEL_PY})
    model_id, dep_id = push(platform, archive)
    assert platform.process_builds_once()
    dep = platform.repo.get_deployment(model_id, dep_id)
    assert dep.status == DeploymentStatus.DEPLOYING and dep.desired_replicas == 1
    assert dep.model_dir and (Path(dep.model_dir) / "model" / "model.py").read_bytes() == MODEL_PY
    assert dep.python and Path(dep.python).exists()
    log = read_build_log(platform.blobs, dep_id)
    assert any("build finished" in line for line in log)

    # SQS-style at-least-once: the same job again must not rebuild or change anything.
    platform.queue.send(BUILD_QUEUE, json.dumps({"model_id": model_id, "deployment_id": dep_id}))
    assert platform.process_builds_once()
    assert platform.repo.get_deployment(model_id, dep_id).version == dep.version
    assert read_build_log(platform.blobs, dep_id) == log
    assert not platform.process_builds_once()  # acked: the queue is empty


def test_unsafe_archive_fails_the_build_naming_the_member(platform: Platform) -> None:
    archive = tar_gz({"config.yaml": b"model_name: piped\n", "../../escaped.txt": b"pwned"})
    model_id, dep_id = push(platform, archive)
    assert platform.process_builds_once()
    dep = platform.repo.get_deployment(model_id, dep_id)
    assert dep.status == DeploymentStatus.FAILED and "escaped.txt" in dep.status_message
    assert any("escaped.txt" in line for line in read_build_log(platform.blobs, dep_id))
    state_dir = platform.settings.state_dir
    assert not list(state_dir.parent.rglob("escaped.txt"))


def test_malformed_job_is_dropped(platform: Platform) -> None:
    platform.queue.send(BUILD_QUEUE, "not json")
    assert platform.process_builds_once()
    assert not platform.process_builds_once()
