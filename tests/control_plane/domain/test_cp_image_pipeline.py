"""Build pipeline with images on (PLINTH_RUNTIME=container): the deployment records its image
by digest, the context is in the blob store, a failing step leaves it FAILED naming the step,
and a config no image can be built for is refused at push. Real buildah and registry."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.domain.build_log import read_build_log
from control_plane.domain.deployments import PushRequest
from control_plane.domain.images import context_key
from control_plane.domain.records import DeploymentStatus
from control_plane.exceptions import ValidationFailed
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.control_plane.domain.test_cp_pipeline import MODEL_PY, tar_gz
from tests.support.images import local_registry, missing_image_tools, shared_image_cache

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_image_tools()), reason="buildah/mmdebstrap/registry missing"),
]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with local_registry(tmp_path / "registry") as registry:
        settings = Settings(
            state_dir=tmp_path / "state",
            run_background_workers=False,
            runtime="container",
            registry=registry,
            image_cache_dir=shared_image_cache(),
        )
        platform = Platform(settings)
        yield platform
        platform.close()


def push(platform: Platform, config: dict[str, object]) -> tuple[str, str]:
    archive = tar_gz({"config.yaml": b"model_name: imaged\n", "model/model.py": MODEL_PY})
    sha256 = hashlib.sha256(archive).hexdigest()
    upload = platform.archives.begin_upload(sha256)
    upload.write(archive)
    upload.commit()
    upload.discard()
    model, dep = platform.deployments.push(
        PushRequest(model_name="imaged", archive_sha256=sha256, config=config)
    )
    return model.id, dep.id


def test_image_build_records_the_digest_and_stores_the_context(platform: Platform) -> None:
    model_id, dep_id = push(platform, {"model_name": "imaged"})
    assert platform.process_builds_once()
    dep = platform.repo.get_deployment(model_id, dep_id)
    assert dep.status == DeploymentStatus.DEPLOYING, dep.status_message
    registry = platform.settings.registry
    assert dep.image and re.fullmatch(
        rf"{registry}/plinth/models/{model_id}@sha256:[0-9a-f]{{64}}", dep.image
    )
    assert dep.python == ""
    assert platform.blobs.head(context_key(dep_id)) is not None
    assert any(line.startswith("image ") for line in read_build_log(platform.blobs, dep_id))
    platform.deletion.delete_deployment(model_id, dep_id, force=True)
    assert platform.blobs.head(context_key(dep_id)) is None


def test_failing_build_command_fails_the_deployment_naming_the_step(platform: Platform) -> None:
    model_id, dep_id = push(platform, {"model_name": "imaged", "build_commands": ["exit 3"]})
    assert platform.process_builds_once()
    dep = platform.repo.get_deployment(model_id, dep_id)
    assert dep.status == DeploymentStatus.FAILED
    assert "STEP 3/" in dep.status_message and "RUN exit 3" in dep.status_message
    assert dep.image is None


def test_python_the_base_cannot_provide_is_refused_at_push(platform: Platform) -> None:
    with pytest.raises(ValidationFailed, match=re.escape("config.python_version: 'py38'")):
        push(platform, {"model_name": "imaged", "python_version": "py38"})
