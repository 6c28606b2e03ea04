"""Node agent end to end: mirror -> origin over HTTP -> node cache -> mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.weights.origin import create_origin_app
from gpu_nodes.weights.agent import EnsureOptions, ensure_weights, observe_node, release_weights
from gpu_nodes.weights.cluster_cache import create_cluster_cache_app
from gpu_nodes.weights.node_cache import NodeCache
from gpu_nodes.weights.plan import FileAction, Tier, plan_fill
from gpu_nodes.weights.progress import Progress, read_status
from plinth.contracts.exceptions import ManifestError, WeightsError

pytestmark = pytest.mark.integration


def test_cold_then_warm_mount_is_exact_and_hard_linked(
    platform: Any, small_model: Path, tmp_path: Path, wt: Any
) -> None:
    manifest = platform.mirror(small_model, "/app/model_cache/tiny")
    seen: list[Progress] = []
    app = create_origin_app(platform.store)
    with wt.serve(app) as origin:
        result = ensure_weights(
            manifest.manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "root", cache_dir=tmp_path / "cache", origin_url=origin
            ),
            progress=seen.append,
        )
        served_cold = app.state.stats.bytes_served
        again = ensure_weights(
            manifest.manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "root2", cache_dir=tmp_path / "cache", origin_url=origin
            ),
        )
        assert app.state.stats.bytes_served == served_cold  # warm: nothing from the network
    mount = tmp_path / "root" / "app" / "model_cache" / "tiny"
    assert result.mount_dir == mount
    assert wt.tree(mount) == wt.tree(small_model)
    assert wt.tree(again.mount_dir) == wt.tree(small_model)
    assert result.bytes_fetched == manifest.total_bytes - 0  # every chunk exactly once
    assert again.bytes_fetched == 0
    # Both mounts share the node cache's bytes.
    for entry in manifest.files:
        blob = tmp_path / "cache" / "files" / entry.sha256
        assert os.path.samefile(blob, mount / entry.path)
        assert os.path.samefile(blob, again.mount_dir / entry.path)
    assert seen[-1].state == "ready" and seen[-1].files_done == len(manifest.files)
    assert seen[-1].bytes_done == seen[-1].bytes_total
    status = read_status(tmp_path / "cache" / "status" / f"{manifest.manifest_id}.json")
    assert status is not None and status.state == "ready"


def test_cli_with_cluster_tier_and_hf_layout(platform: Any, tmp_path: Path, wt: Any) -> None:
    repo = tmp_path / "repo"
    wt.write_model(repo, shards=1, tensors=3, mib=0.5)
    from control_plane.weights import mirror_source

    class HfLike:  # a source reporting an hf:// uri, backed by local files
        uri, revision = "hf://acme/tiny@abc123", "abc123"

        def __init__(self) -> None:
            from control_plane.weights.sources import LocalSource

            self._local = LocalSource(repo)

        def list_files(self) -> Any:
            return self._local.list_files()

        def read_range(self, path: str, start: int, end: int) -> bytes:
            return self._local.read_range(path, start, end)

        def download(self, path: str, dest: Path) -> None:
            self._local.download(path, dest)

    manifest = mirror_source(HfLike(), platform.store, mount_location="/hf")
    origin_app = create_origin_app(platform.store)
    with wt.serve(origin_app) as origin:
        cluster_app = create_cluster_cache_app(tmp_path / "cluster", origin)
        with wt.serve(cluster_app) as cluster:
            status_file = tmp_path / "status.json"
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "gpu_nodes.weights.agent",
                    "--manifest",
                    manifest.manifest_id,
                    "--mount-root",
                    str(tmp_path / "root"),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--cluster-url",
                    cluster,
                    "--origin-url",
                    origin,
                    "--status-file",
                    str(status_file),
                    "--layout",
                    "hf",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=wt.env(),
            )
            assert proc.returncode == 0, proc.stderr
            summary = json.loads(proc.stdout.strip().splitlines()[-1])
            assert summary["bytes_fetched"] == manifest.total_bytes
            # The origin was only reached through the cluster tier.
            assert cluster_app.state.stats.bytes_from_upstream >= manifest.total_bytes
            assert json.loads(status_file.read_text())["state"] == "ready"
            # A second node behind the same cluster cache adds nothing at the origin.
            before = origin_app.state.stats.bytes_served
            ensure_weights(
                manifest.manifest_id,
                EnsureOptions(
                    mount_root=tmp_path / "r2",
                    cache_dir=tmp_path / "cache2",
                    cluster_url=cluster,
                    origin_url=origin,
                ),
            )
            assert origin_app.state.stats.bytes_served == before
    snapshot = tmp_path / "root" / "hf" / "models--acme--tiny" / "snapshots" / "abc123"
    assert wt.tree(snapshot) == wt.tree(repo)
    assert (snapshot / "config.json").is_symlink()
    refs = tmp_path / "root" / "hf" / "models--acme--tiny" / "refs" / "main"
    assert refs.read_text() == "abc123"


def test_fine_tune_fetches_only_changed_tensors(platform: Any, tmp_path: Path, wt: Any) -> None:
    base = wt.write_model(tmp_path / "base", shards=2, tensors=10, mib=1.0)
    wt.fine_tune(base, tmp_path / "tuned", fraction=0.1)
    base_manifest = platform.mirror(tmp_path / "base", "/base")
    tuned_manifest = platform.mirror(tmp_path / "tuned", "/tuned")
    app = create_origin_app(platform.store)
    with wt.serve(app) as origin:
        ensure_weights(
            base_manifest.manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "root", cache_dir=tmp_path / "c", origin_url=origin
            ),
        )
        before = app.state.stats.bytes_served
        result = ensure_weights(
            tuned_manifest.manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "root", cache_dir=tmp_path / "c", origin_url=origin
            ),
        )
        tuned_bytes = app.state.stats.bytes_served - before
    assert wt.tree(result.mount_dir) == wt.tree(tmp_path / "tuned")
    manifest_json = len(tuned_manifest.canonical_json())
    assert (tuned_bytes - manifest_json) / tuned_manifest.total_bytes <= 0.15


def test_node_observed_after_a_base_mount_plans_only_the_fine_tunes_new_chunks(
    platform: Any, tmp_path: Path, wt: Any
) -> None:
    base = wt.write_model(tmp_path / "base", shards=2, tensors=6, mib=0.5)
    wt.fine_tune(base, tmp_path / "tuned", fraction=0.2)
    base_manifest = platform.mirror(tmp_path / "base", "/base")
    tuned_manifest = platform.mirror(tmp_path / "tuned", "/tuned")
    with wt.serve(create_origin_app(platform.store)) as origin:
        ensure_weights(
            base_manifest.manifest_id,
            EnsureOptions(mount_root=tmp_path / "r", cache_dir=tmp_path / "c", origin_url=origin),
        )
    cache = NodeCache(tmp_path / "c")
    try:
        view = observe_node(cache, tuned_manifest)
    finally:
        cache.close()
    plan = plan_fill(tuned_manifest, view, tiers={Tier.ORIGIN}, keep_chunks=False)
    base_chunks = {ref.hash for f in base_manifest.files for ref in f.chunks}
    pending = [f for f in tuned_manifest.files if f.sha256 not in view.files]
    pending_chunks = {ref.hash for f in pending for ref in f.chunks}
    assert "config.json" not in [f.path for f in pending]  # same bytes as the base: no work
    # The base's chunks were assembled into blobs and deleted; they are found inside the blobs.
    assert view.chunks == pending_chunks & base_chunks
    assert {h for step in plan.files for h in step.fetched} == pending_chunks - base_chunks
    assert [step.entry.path for step in plan.files] == [f.path for f in pending]
    assert all(step.action is FileAction.ASSEMBLE for step in plan.files)


def test_release_and_bad_manifest_references(
    platform: Any, small_model: Path, tmp_path: Path, wt: Any
) -> None:
    manifest = platform.mirror(small_model)
    with wt.serve(create_origin_app(platform.store)) as origin:
        with pytest.raises(ManifestError, match="not an id, URL or existing file"):
            ensure_weights(
                "nope",
                EnsureOptions(
                    mount_root=tmp_path / "r", cache_dir=tmp_path / "c", origin_url=origin
                ),
            )
        with pytest.raises(ManifestError, match="not found"):
            ensure_weights(
                "0" * 64,
                EnsureOptions(
                    mount_root=tmp_path / "r", cache_dir=tmp_path / "c", origin_url=origin
                ),
            )
        with pytest.raises(WeightsError, match="layout"):
            ensure_weights(
                manifest.manifest_id,
                EnsureOptions(
                    mount_root=tmp_path / "r",
                    cache_dir=tmp_path / "c",
                    origin_url=origin,
                    layout="bogus",
                ),
            )
        url = f"{origin}/manifests/{manifest.manifest_id}.json"
        result = ensure_weights(
            url,
            EnsureOptions(mount_root=tmp_path / "r", cache_dir=tmp_path / "c", origin_url=origin),
        )
        assert httpx.get(f"{origin}/chunks/xyz").status_code == 400
    release_weights(tmp_path / "c", result.lease)
    manifest_file = tmp_path / "m.json"
    manifest_file.write_bytes(manifest.canonical_json())
    local = ensure_weights(
        str(manifest_file), EnsureOptions(mount_root=tmp_path / "r3", cache_dir=tmp_path / "c")
    )
    assert local.bytes_fetched == 0  # everything came from the node cache, no network at all


def test_deployment_hook_reads_settings_from_env(
    platform: Any, small_model: Path, tmp_path: Path, wt: Any
) -> None:
    from gpu_nodes.weights.hooks import WeightsSettings, ensure_deployment_weights

    manifest = platform.mirror(small_model, "/app/model_cache/tiny")
    assert ensure_deployment_weights(WeightsSettings.from_env({})) == []
    with pytest.raises(WeightsError, match="ORIGIN_URL"):
        ensure_deployment_weights(
            WeightsSettings.from_env({"PLINTH_WEIGHTS_MANIFESTS": manifest.manifest_id})
        )
    with pytest.raises(WeightsError, match="BUDGET_BYTES"):
        WeightsSettings.from_env({"PLINTH_WEIGHTS_CACHE_BUDGET_BYTES": "lots"})
    with wt.serve(create_origin_app(platform.store)) as origin:
        settings = WeightsSettings.from_env(
            {
                "PLINTH_WEIGHTS_MANIFESTS": f" {manifest.manifest_id}, ",
                "PLINTH_WEIGHTS_MOUNT_ROOT": str(tmp_path / "replica"),
                "PLINTH_WEIGHTS_CACHE_DIR": str(tmp_path / "node-cache"),
                "PLINTH_WEIGHTS_ORIGIN_URL": origin,
                "PLINTH_WEIGHTS_STATUS_DIR": str(tmp_path / "status"),
            }
        )
        (result,) = ensure_deployment_weights(settings)
    assert wt.tree(tmp_path / "replica" / "app" / "model_cache" / "tiny") == wt.tree(small_model)
    status = read_status(tmp_path / "status" / f"{manifest.manifest_id}.json")
    assert status is not None and status.state == "ready"
    assert result.bytes_fetched == manifest.total_bytes


def test_empty_duplicate_and_cdc_files(platform: Any, tmp_path: Path, wt: Any) -> None:
    source = tmp_path / "odd"
    (source / "nested" / "deeper").mkdir(parents=True)
    (source / "empty.txt").write_bytes(b"")
    blob = os.urandom(3 << 20)
    (source / "tokenizer.bin").write_bytes(blob)
    (source / "nested" / "deeper" / "copy.bin").write_bytes(blob)  # same sha: one blob
    manifest = platform.mirror(source, "/odd")
    with wt.serve(create_origin_app(platform.store)) as origin:
        result = ensure_weights(
            manifest.manifest_id,
            EnsureOptions(mount_root=tmp_path / "r", cache_dir=tmp_path / "c", origin_url=origin),
        )
    assert wt.tree(result.mount_dir) == wt.tree(source)
    assert result.bytes_fetched == len(blob)  # the duplicate and the empty file cost nothing
    assert os.path.samefile(
        result.mount_dir / "tokenizer.bin", result.mount_dir / "nested" / "deeper" / "copy.bin"
    )
