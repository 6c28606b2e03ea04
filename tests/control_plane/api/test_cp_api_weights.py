"""Weights through the real platform: push a package with ``weights:`` (a local directory and an
``hf://`` repo served by a loopback imitation of the HF Hub), watch the control plane mirror them
into its blob store and the replicas fetch them from its ``/weights`` origin before ``load()``.

Uses examples/with-weights (its model reports the sha256 of every weight file it loaded).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from safetensors.numpy import save as save_safetensors

from control_plane.app import create_app
from control_plane.wiring import Platform
from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    make_settings,
    upload_and_push,
    wait_for,
)
from tests.support.servers import UvicornThread, free_port

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "with-weights"
DEPLOY_TIMEOUT_S = 120.0
HF_REPO = "acme/tiny"
HF_REVISION = "v1"


@dataclass
class RunningControlPlane:
    platform: Platform
    url: str
    client: httpx.Client  # authenticated with the admin key


def fake_hf_hub(repos: dict[str, dict[str, bytes]], revision: str) -> FastAPI:
    """The two HF Hub routes the mirror uses: the recursive tree listing and resolve."""
    app = FastAPI()

    @app.get("/api/models/{org}/{name}/tree/{rev}")
    def tree(org: str, name: str, rev: str) -> Response:
        files = repos.get(f"{org}/{name}")
        if files is None or rev != revision:
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        listing = [{"type": "file", "path": p, "size": len(d)} for p, d in files.items()]
        return JSONResponse([{"type": "directory", "path": "sub"}, *listing])

    @app.get("/{org}/{name}/resolve/{rev}/{path:path}")
    def resolve(org: str, name: str, rev: str, path: str) -> Response:
        data = repos.get(f"{org}/{name}", {}).get(path)
        if data is None or rev != revision:
            return JSONResponse({"error": "Entry not found"}, status_code=404)
        return Response(data, media_type="application/octet-stream")

    return app


def safetensors_bytes() -> bytes:
    rng = np.random.default_rng(7)
    tensors = {
        f"layer{i}.weight": rng.standard_normal((64, 64), dtype=np.float32) for i in range(4)
    }
    return save_safetensors(tensors)


@pytest.fixture(scope="module")
def hf_files() -> dict[str, bytes]:
    return {
        "config.json": b'{"hidden_size": 64, "layers": 4}\n',
        "model.safetensors": safetensors_bytes(),
    }


@pytest.fixture(scope="module")
def hf_endpoint(hf_files: dict[str, bytes]) -> Iterator[str]:
    server = UvicornThread(fake_hf_hub({HF_REPO: hf_files}, HF_REVISION)).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory, hf_endpoint: str) -> Iterator[RunningControlPlane]:
    """A control plane whose settings know its own port (replicas fetch from its /weights)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PLINTH_HF_ENDPOINT", hf_endpoint)  # read by the mirror in the build worker
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("state"), port=port, run_background_workers=True
    )
    platform = Platform(settings)
    server = UvicornThread(create_app(settings, platform=platform), port=port).start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Api-Key {ADMIN_KEY}"}, timeout=30
    )
    yield RunningControlPlane(platform, server.url, client)
    client.close()
    server.stop()
    platform.close()
    mp.undo()


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("local-weights")
    (root / "notes.txt").write_text("hello from the weights\n")
    (root / "sub").mkdir()
    (root / "sub" / "blob.bin").write_bytes(np.random.default_rng(1).bytes(2_500_000))
    (root / "scratch.tmp").write_text("ignored by ignore_patterns")
    return root


def package_with(tmp: Path, name: str, weights: list[dict[str, Any]]) -> Path:
    package = tmp / name
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((package / "config.yaml").read_text())
    config["model_name"] = name
    config["weights"] = weights
    (package / "config.yaml").write_text(yaml.safe_dump(config))
    return package


def weights_entries(local_weights: Path) -> list[dict[str, Any]]:
    return [
        {
            "source": f"file://{local_weights}",
            "mount_location": "/app/model_cache/local",
            "ignore_patterns": ["*.tmp"],
        },
        {"source": f"hf://{HF_REPO}@{HF_REVISION}", "mount_location": "/app/model_cache/hf"},
    ]


def deployment(cp: RunningControlPlane, model_id: str, dep_id: str) -> dict[str, Any]:
    response = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_status(cp: RunningControlPlane, model_id: str, dep_id: str, status: str) -> dict:
    def probe() -> dict[str, Any] | None:
        current = deployment(cp, model_id, dep_id)
        if current["status"] == "FAILED" and status != "FAILED":
            logs = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}/logs").json()
            raise AssertionError(f"deployment FAILED: {current['status_message']}\n{logs}")
        return current if current["status"] == status else None

    result: dict[str, Any] = wait_for(probe, timeout_s=DEPLOY_TIMEOUT_S, what=f"{dep_id} {status}")
    return result


def predict(cp: RunningControlPlane, model_id: str, dep_id: str, body: dict[str, Any]) -> dict:
    def ready_replica() -> str | None:
        table = cp.client.get("/v1/routing").json()["models"][model_id]
        replicas = table["deployments"][dep_id]["replicas"]
        return next((r["url"] for r in replicas if r["ready"]), None)

    url = wait_for(ready_replica, timeout_s=30, what=f"a ready replica of {dep_id}")
    response = httpx.post(f"{url}/v1/models/model:predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weight_keys(cp: RunningControlPlane) -> dict[str, int]:
    return {info.key: info.size for info in cp.platform.blobs.list("weights/")}


def origin_stats(cp: RunningControlPlane) -> dict[str, int]:
    response = httpx.get(f"{cp.url}/weights/stats", timeout=10)  # no credentials needed
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()
    return result


def expected_files(local_weights: Path, hf_files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    local = {
        "/app/model_cache/local/notes.txt": (local_weights / "notes.txt").read_bytes(),
        "/app/model_cache/local/sub/blob.bin": (local_weights / "sub" / "blob.bin").read_bytes(),
    }
    remote = {f"/app/model_cache/hf/{p}": d for p, d in hf_files.items()}
    return {
        name: {"size": len(data), "sha256": sha(data)} for name, data in {**local, **remote}.items()
    }


def test_weights_mirrored_fetched_and_deduplicated(
    cp: RunningControlPlane,
    tmp_path: Path,
    local_weights: Path,
    hf_files: dict[str, bytes],
) -> None:
    package = package_with(tmp_path, "weighty", weights_entries(local_weights))
    pushed = upload_and_push(cp.client, package, tmp_path / "a1")
    model_id, d1 = pushed["model_id"], pushed["deployment"]["id"]
    wait_status(cp, model_id, d1, "ACTIVE")

    # The model read every mirrored file (not the ignored one) at root + mount_location.
    found = predict(cp, model_id, d1, {})["files"]
    assert {n: {"size": f["size"], "sha256": f["sha256"]} for n, f in found.items()} == (
        expected_files(local_weights, hf_files)
    )
    notes = predict(cp, model_id, d1, {"file": "notes.txt"})["files"]
    assert notes["/app/model_cache/local/notes.txt"]["head"] == "hello from the weights\n"

    # The blob store holds the chunks and one manifest per weights entry, named on the record.
    manifests = cp.platform.repo.get_deployment(model_id, d1).weights_manifests
    assert len(manifests) == 2
    stored = weight_keys(cp)
    assert {k for k in stored if k.startswith("weights/manifests/")} == {
        f"weights/manifests/{m}.json" for m in manifests
    }
    chunk_bytes = sum(size for key, size in stored.items() if key.startswith("weights/chunks/"))
    total = sum(f["size"] for f in expected_files(local_weights, hf_files).values())
    assert total <= chunk_bytes <= total + 1024  # every byte once, split into chunks
    build_log = cp.client.get(f"/v1/models/{model_id}/deployments/{d1}/logs").json()["build"]
    assert any("weights[1]: 2 file(s)" in line and "uploaded" in line for line in build_log)
    served = origin_stats(cp)
    assert served["bytes_served"] >= chunk_bytes  # the replica pulled them from the origin

    # Same weights again (another model): nothing new stored, the node cache serves the replica.
    again = package_with(tmp_path, "weighty-again", weights_entries(local_weights))
    pushed2 = upload_and_push(cp.client, again, tmp_path / "a2")
    model2, d2 = pushed2["model_id"], pushed2["deployment"]["id"]
    wait_status(cp, model2, d2, "ACTIVE")
    assert cp.platform.repo.get_deployment(model2, d2).weights_manifests == manifests
    assert weight_keys(cp) == stored
    log2 = cp.client.get(f"/v1/models/{model2}/deployments/{d2}/logs").json()["build"]
    assert any("0/" in line and "0 bytes uploaded" in line for line in log2), log2
    assert predict(cp, model2, d2, {})["files"] == found
    assert origin_stats(cp) == served


def test_bad_weights_source_fails_the_deployment(cp: RunningControlPlane, tmp_path: Path) -> None:
    bad = [{"source": "hf://acme/no-such-repo@v1", "mount_location": "/app/model_cache/x"}]
    package = package_with(tmp_path, "weightless", bad)
    pushed = upload_and_push(cp.client, package, tmp_path / "a")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    failed = wait_status(cp, model_id, dep_id, "FAILED")
    message = failed["status_message"]
    assert "weights[0].source hf://acme/no-such-repo@v1" in message, message
    assert "HTTP 404" in message, message
    build_log = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}/logs").json()["build"]
    assert any("BUILD FAILED" in line and "no-such-repo" in line for line in build_log)


def test_missing_local_source_names_the_path(cp: RunningControlPlane, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    bad = [{"source": f"file://{missing}", "mount_location": "/app/model_cache/x"}]
    pushed = upload_and_push(cp.client, package_with(tmp_path, "pathless", bad), tmp_path / "a")
    failed = wait_status(cp, pushed["model_id"], pushed["deployment"]["id"], "FAILED")
    assert f"does not exist: {missing}" in failed["status_message"]


def test_origin_serves_manifests_without_credentials(cp: RunningControlPlane) -> None:
    response = httpx.get(f"{cp.url}/weights/manifests/{'0' * 64}.json", timeout=10)
    assert response.status_code == 404
    assert "not found" in response.json()["error"]["message"]
    assert httpx.get(f"{cp.url}/weights/chunks/nothex", timeout=10).status_code in (400, 422)
    # Management routes still need a key.
    assert httpx.get(f"{cp.url}/v1/secrets", timeout=10).status_code == 401
