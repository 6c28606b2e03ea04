"""Cluster cache tier: single-flight fill from the origin, Range, verification, CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_nodes.weights.cluster_cache import create_cluster_cache_app

pytestmark = pytest.mark.integration


def test_concurrent_misses_fill_from_origin_once(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    ref = max(manifest.files, key=lambda f: f.size).chunks[1]
    origin.delay_per_piece_s = 0.005
    app = create_cluster_cache_app(tmp_path / "cluster", url)
    with wt.serve(app) as cluster, httpx.Client(timeout=30) as client:
        with ThreadPoolExecutor(6) as pool:
            bodies = list(pool.map(lambda _: client.get(f"{cluster}/chunks/{ref.hash}"), range(6)))
        assert all(r.status_code == 200 for r in bodies)
        assert all(hashlib.sha256(r.content).hexdigest() == ref.hash for r in bodies)
        assert origin.requests_by_chunk[ref.hash] == 1
        part = client.get(f"{cluster}/chunks/{ref.hash}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and len(part.content) == 10
        assert part.headers["content-range"] == f"bytes 10-19/{ref.length}"
        assert client.get(f"{cluster}/chunks/{'0' * 64}").status_code == 404
        assert client.get(f"{cluster}/chunks/not-a-hash").status_code == 400
        bad_range = client.get(f"{cluster}/chunks/{ref.hash}", headers={"Range": "bytes=9999999-"})
        assert bad_range.status_code == 416
        manifest_url = f"{cluster}/manifests/{manifest.manifest_id}.json"
        assert client.get(manifest_url).content == manifest.canonical_json()


def test_corrupt_file_in_cluster_dir_and_bad_origin_bytes_are_refilled(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    ref = manifest.files[0].chunks[0]
    app = create_cluster_cache_app(tmp_path / "cluster", url)
    with wt.serve(app) as cluster, httpx.Client(timeout=30) as client:
        origin.corrupt_next, origin.fail_next = 1, 1
        first = client.get(f"{cluster}/chunks/{ref.hash}")
        assert hashlib.sha256(first.content).hexdigest() == ref.hash
        stored = tmp_path / "cluster" / "chunks" / ref.hash[:2] / ref.hash
        stored.write_bytes(b"garbage")
        again = client.get(f"{cluster}/chunks/{ref.hash}")
        assert hashlib.sha256(again.content).hexdigest() == ref.hash
        assert origin.requests_by_chunk[ref.hash] == 4  # 500, corrupt, good, refill


def test_cluster_cache_cli_serves(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    _, url = faulty_origin
    manifest = platform.mirror(small_model)
    port = wt.free_port()
    cmd = [
        sys.executable,
        "-m",
        "gpu_nodes.weights.cluster_cache",
        "--dir",
        str(tmp_path / "cc"),
        "--origin",
        url,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, env=wt.env(), stderr=subprocess.DEVNULL)
    try:
        ref = manifest.files[0].chunks[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/chunks/{ref.hash}", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert hashlib.sha256(response.content).hexdigest() == ref.hash
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_gs_origin_fills_from_the_bucket_itself(
    tmp_path: Path, wt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gs://BUCKET/PREFIX: the cache reads chunks straight from GCS (the emulator here)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from tests.support import cloud

    with cloud.gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        client = storage.Client(project="plinth", credentials=AnonymousCredentials())
        bucket = client.create_bucket("regional-weights")
        data = b"chunk bytes " * 1000
        digest = hashlib.sha256(data).hexdigest()
        bucket.blob(f"plinth/weights/chunks/{digest}").upload_from_string(data)
        app = create_cluster_cache_app(tmp_path / "cluster", "gs://regional-weights/plinth")
        with wt.serve(app) as cache, httpx.Client(timeout=30) as http:
            assert http.get(f"{cache}/chunks/{digest}").content == data
            assert http.get(f"{cache}/chunks/{'0' * 64}").status_code == 404
        assert app.state.stats.as_dict()["bytes_from_upstream"] == len(data)
