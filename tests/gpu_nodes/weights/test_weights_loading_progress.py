"""Weights before ``load()`` in the model server, and how its progress reaches the deployment.

A real model server (examples/with-weights) on loopback with ``PLINTH_WEIGHTS_*`` set fetches
from a real origin over a directory blob store; the origin holds chunk responses until the test
releases them, so the readiness body's progress and the local driver's probe can be observed.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import numpy as np
import pytest
import yaml
from fastapi import FastAPI, Request, Response

from control_plane.adapters._local_replica import probe
from control_plane.adapters.dir_blob import DirectoryBlobStore
from control_plane.domain.reconcile_policy import (
    DeploymentObservation,
    Observation,
    ReconcilerPolicy,
    ReconcilerState,
    SetStatus,
)
from control_plane.domain.records import DeploymentStatus
from control_plane.ports.cluster import ReplicaPhase
from control_plane.weights import mirror_source, open_source
from control_plane.weights.origin import create_origin_app
from gpu_nodes.model_server.app import create_model_server_app
from tests.support.servers import serve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "with-weights"
MOUNT = "/app/model_cache/example"


def gated_origin(store: DirectoryBlobStore, gate: threading.Event) -> FastAPI:
    """The real origin app; chunk requests wait for ``gate`` (manifests pass)."""
    app = FastAPI()

    @app.middleware("http")
    async def hold_chunks(request: Request, call_next: Callable[..., Any]) -> Response:
        if request.url.path.startswith("/chunks/"):
            await anyio.to_thread.run_sync(gate.wait, 30.0)
        response: Response = await call_next(request)
        return response

    app.mount("/", create_origin_app(store))
    return app


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def weights_source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    (root / "notes.txt").write_text("weights say hi\n")
    (root / "blob.bin").write_bytes(np.random.default_rng(3).bytes(3_000_000))
    return root


@pytest.fixture
def package(tmp_path: Path) -> Path:
    dest = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((dest / "config.yaml").read_text())
    config["weights"] = [{"source": "file:///unused-here", "mount_location": MOUNT}]
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    return dest


def readiness(url: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/models/model", timeout=5)


def test_model_server_fetches_weights_before_load_and_reports_progress(
    tmp_path: Path, weights_source: Path, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    manifest = mirror_source(open_source(str(weights_source)), store, mount_location=MOUNT)
    gate = threading.Event()
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    monkeypatch.chdir(replica_dir)  # the local driver runs each replica in its own directory
    with serve(gated_origin(store, gate)) as origin_url:
        monkeypatch.setenv("PLINTH_WEIGHTS_MANIFESTS", manifest.manifest_id)
        monkeypatch.setenv("PLINTH_WEIGHTS_ORIGIN_URL", origin_url)
        monkeypatch.setenv("PLINTH_WEIGHTS_CACHE_DIR", str(tmp_path / "node-cache"))
        monkeypatch.setenv("PLINTH_WEIGHTS_MOUNT_ROOT", "weights")  # relative, as on a laptop
        with serve(create_model_server_app(package)) as url:
            loading = wait_for(
                lambda: (r := readiness(url)).json().get("weights", {}).get("bytes_total") and r,
                "weights progress in the readiness body",
            )
            assert loading.status_code == 503
            body = loading.json()
            assert body["status"] == "LOADING"
            assert body["weights"] == {
                "bytes_done": 0,
                "bytes_total": manifest.total_bytes,
                "files_done": 0,
                "files_total": 2,
            }
            with httpx.Client(timeout=5) as client:
                seen = probe(client, url)
            assert seen.phase is ReplicaPhase.LOADING
            assert seen.message == "fetching weights 0/3 MB (0/2 files)"

            gate.set()
            wait_for(lambda: readiness(url).status_code == 200, "the model to load")
            assert "weights" not in readiness(url).json()
            found = httpx.post(f"{url}/v1/models/model:predict", json={}, timeout=10).json()
    blob = (weights_source / "blob.bin").read_bytes()
    assert found["files"][f"{MOUNT}/blob.bin"]["sha256"] == hashlib.sha256(blob).hexdigest()
    # The model server exported the absolute root the files were placed under.
    placed = replica_dir / "weights" / MOUNT.lstrip("/") / "notes.txt"
    assert placed.read_text() == "weights say hi\n"


def test_weights_failure_fails_the_replica_with_the_reason(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    with serve(create_origin_app(store)) as origin_url:
        monkeypatch.setenv("PLINTH_WEIGHTS_MANIFESTS", "ab" * 32)  # never mirrored
        monkeypatch.setenv("PLINTH_WEIGHTS_ORIGIN_URL", origin_url)
        monkeypatch.setenv("PLINTH_WEIGHTS_CACHE_DIR", str(tmp_path / "node-cache"))
        monkeypatch.setenv("PLINTH_WEIGHTS_MOUNT_ROOT", str(tmp_path / "mnt"))
        with serve(create_model_server_app(package)) as url:
            failed = wait_for(
                lambda: (r := readiness(url)).json()["status"] == "FAILED" and r, "FAILED"
            )
            with httpx.Client(timeout=5) as client:
                seen = probe(client, url)
    assert failed.status_code == 503
    assert failed.json()["error"].startswith("fetching weights failed: manifest abab")
    assert seen.phase is ReplicaPhase.FAILED
    assert "fetching weights failed" in seen.message and "HTTP 404" in seen.message


def observation(status: DeploymentStatus, message: str, replica_message: str) -> Observation:
    dep = DeploymentObservation(
        model_id="m1",
        deployment_id="d1",
        status=status,
        desired_replicas=1,
        status_changed_at=0.0,
        target_environment=None,
        replica_phases=(ReplicaPhase.STARTING, ReplicaPhase.LOADING),
        replica_messages=("", replica_message),
        status_message=message,
    )
    return Observation((dep,))


def test_reconciler_carries_weights_progress_into_status_message() -> None:
    policy = ReconcilerPolicy()
    state = ReconcilerState(applied={"m1/d1": 1})
    progress = "fetching weights 120/512 MB (1/4 files)"

    decisions, _ = policy.decide(
        state, observation(DeploymentStatus.DEPLOYING, "", progress), now=1.0
    )
    assert SetStatus("m1", "d1", DeploymentStatus.LOADING_MODEL, progress) in decisions

    newer = "fetching weights 300/512 MB (2/4 files)"
    decisions, _ = policy.decide(
        state, observation(DeploymentStatus.LOADING_MODEL, progress, newer), now=2.0
    )
    assert decisions == [SetStatus("m1", "d1", DeploymentStatus.LOADING_MODEL, newer)]

    unchanged, _ = policy.decide(
        state, observation(DeploymentStatus.LOADING_MODEL, newer, newer), now=3.0
    )
    assert unchanged == []
