"""Fault handling of the node agent against an origin that fails, truncates, corrupts and stalls."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_nodes.weights.agent import EnsureOptions, ensure_weights, release_weights
from gpu_nodes.weights.exceptions import ChunkFetchError
from gpu_nodes.weights.fetcher import RetryPolicy
from gpu_nodes.weights.node_cache import NodeCache, chunk_entry

pytestmark = pytest.mark.integration
FAST_RETRY = RetryPolicy(attempts=8, base_delay_s=0.01, max_delay_s=0.1)


def _agent_cmd(manifest_id: str, root: Path, cache: Path, origin: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gpu_nodes.weights.agent",
        "--manifest",
        manifest_id,
        "--mount-root",
        str(root),
        "--cache-dir",
        str(cache),
        "--origin-url",
        origin,
        "--concurrency",
        "2",
    ]


def test_errors_and_truncation_are_retried_and_resumed(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    origin.fail_next, origin.truncate_next = 3, 3
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "root",
            cache_dir=tmp_path / "cache",
            origin_url=url,
            retry=FAST_RETRY,
            verify_files=True,
        ),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    assert origin.fail_next == 0 and origin.truncate_next == 0
    # Truncated transfers were resumed with a Range request, not restarted...
    assert len(origin.ranges) >= 3
    # ...so every chunk byte crossed the network exactly once.
    assert sum(origin.bytes_by_chunk.values()) == sum(manifest.unique_chunks().values())


def test_corrupt_bytes_from_origin_are_never_used(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    origin.corrupt_next = 2
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "root",
            cache_dir=tmp_path / "cache",
            origin_url=url,
            retry=FAST_RETRY,
        ),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    assert sorted(origin.requests_by_chunk.values())[-2:] == [2, 2]


def test_corrupt_chunk_on_disk_is_detected_and_refetched(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    cache_dir = tmp_path / "cache"
    ensure_weights(
        manifest.manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "r1", cache_dir=cache_dir, origin_url=url, keep_chunks=True
        ),
    )
    cache = NodeCache(cache_dir)
    victim_file = max(manifest.files, key=lambda f: f.size)
    victim = victim_file.chunks[1].hash
    chunk_path = cache.chunk_path(victim)
    data = bytearray(chunk_path.read_bytes())
    data[100] ^= 0x55
    chunk_path.write_bytes(bytes(data))
    # Drop the assembled blob so the file must be rebuilt from (the corrupt) chunks.
    cache.file_path(victim_file.sha256).unlink()
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(mount_root=tmp_path / "r2", cache_dir=cache_dir, origin_url=url),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    assert origin.requests_by_chunk[victim] == 2
    assert result.bytes_fetched == next(c.length for c in victim_file.chunks if c.hash == victim)


def _chunks_on_disk(cache_dir: Path, manifest: Any) -> set[str]:
    """Chunks whose bytes are intact on the node: chunk files, and verified regions of file
    blobs, published or still being downloaded in place."""
    found = {p.name for p in (cache_dir / "chunks").rglob("*") if p.is_file()}
    for entry in manifest.files:
        for blob in (
            cache_dir / "files" / entry.sha256,
            cache_dir / "parts" / f"{entry.sha256}.file",
        ):
            data = blob.read_bytes() if blob.exists() else b""
            for ref in entry.chunks:
                region = data[ref.offset : ref.offset + ref.length]
                if hashlib.sha256(region).hexdigest() == ref.hash:
                    found.add(ref.hash)
    return found


# Cold files go in place (parts/<sha>.file); --keep-chunks takes the chunk-file path (.part).
@pytest.mark.parametrize("extra_args", [[], ["--keep-chunks"]], ids=["in-place", "chunk-files"])
def test_agent_killed_mid_download_resumes_without_refetching(
    platform: Any,
    small_model: Path,
    tmp_path: Path,
    faulty_origin: Any,
    wt: Any,
    extra_args: list[str],
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    origin.delay_per_piece_s = 0.02  # ~3 MB/s per stream: slow enough to kill mid-way
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(
        [*_agent_cmd(manifest.manifest_id, tmp_path / "root", cache_dir, url), *extra_args],
        env=wt.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wt.wait_for(lambda: len(_chunks_on_disk(cache_dir, manifest)) >= 3, 30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finished = _chunks_on_disk(cache_dir, manifest)
    # A .part the agent created but wrote nothing into before the kill holds nothing to resume:
    # fetching that chunk whole again is right, so only non-empty parts must resume.
    partial = {
        p.name.removesuffix(".part")
        for p in (cache_dir / "parts").glob("*.part")
        if p.stat().st_size > 0
    }
    assert len(finished) < len(manifest.unique_chunks())  # it really died mid-download
    chunk_files = [p for p in (cache_dir / "chunks").rglob("*") if p.is_file()]
    assert bool(chunk_files) == bool(extra_args)  # the path under test is the one taken
    origin.delay_per_piece_s = 0.0
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "root",
            cache_dir=cache_dir,
            origin_url=url,
            keep_chunks=bool(extra_args),
        ),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    for chunk_hash in finished:
        assert origin.requests_by_chunk[chunk_hash] == 1
    resumed = {h for h, _ in origin.ranges}
    assert list((cache_dir / "parts").iterdir()) == []  # nothing partial is left behind
    assert partial <= resumed | finished | {h for h in partial if origin.requests_by_chunk[h] == 1}
    total = sum(manifest.unique_chunks().values())
    # Only what was in flight when the process died may cross twice: the origin counts bytes
    # handed to loopback socket buffers that the dead agent never read, at most one chunk per
    # concurrent download (--concurrency 2).
    in_flight = 2 * max(manifest.unique_chunks().values())
    assert sum(origin.bytes_by_chunk.values()) <= total + in_flight


def test_failed_cold_download_publishes_nothing_and_resumes(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    victim_file = max(manifest.files, key=lambda f: f.size)
    victim = victim_file.chunks[1].hash
    origin.failing_chunks.add(victim)
    cache_dir = tmp_path / "cache"
    give_up_fast = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.01)
    with pytest.raises(ChunkFetchError, match=victim):
        ensure_weights(
            manifest.manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "r1", cache_dir=cache_dir, origin_url=url, retry=give_up_fast
            ),
        )
    # The file with a missing chunk was never published; what arrived is kept to resume.
    assert not (cache_dir / "files" / victim_file.sha256).exists()
    assert (cache_dir / "parts" / f"{victim_file.sha256}.file").exists()
    kept = _chunks_on_disk(cache_dir, manifest)
    assert victim not in kept
    origin.failing_chunks.clear()
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(mount_root=tmp_path / "r1", cache_dir=cache_dir, origin_url=url),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    for chunk_hash in kept:
        assert origin.requests_by_chunk[chunk_hash] == 1  # verified in place, not fetched again
    assert origin.requests_by_chunk[victim] == 3


def test_two_agents_racing_fetch_each_chunk_once(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    origin.delay_per_piece_s = 0.002
    cache_dir = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            _agent_cmd(manifest.manifest_id, tmp_path / f"root{i}", cache_dir, url),
            env=wt.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err.decode()
    assert set(origin.requests_by_chunk) == set(manifest.unique_chunks())
    assert set(origin.requests_by_chunk.values()) == {1}
    for i in range(2):
        assert wt.tree(tmp_path / f"root{i}" / "weights") == wt.tree(small_model)


def test_budget_evicts_least_recently_used_but_never_pinned(
    platform: Any, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    models = {}
    for name, seed in [("a", 1), ("b", 2), ("c", 3)]:
        wt.write_model(tmp_path / name, shards=1, tensors=4, mib=1.0, seed=seed)
        models[name] = platform.mirror(tmp_path / name, f"/{name}")
    cache_dir = tmp_path / "cache"
    budget = 9 << 20  # two 4 MiB models fit, three do not
    mounts = {}
    for name in ["b", "a"]:  # b is the least recently used, but stays mounted (pinned)
        mounts[name] = ensure_weights(
            models[name].manifest_id,
            EnsureOptions(
                mount_root=tmp_path / "root",
                cache_dir=cache_dir,
                origin_url=url,
                budget_bytes=budget,
            ),
        )
    release_weights(cache_dir, mounts["a"].lease)
    ensure_weights(
        models["c"].manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "root", cache_dir=cache_dir, origin_url=url, budget_bytes=budget
        ),
    )
    cache = NodeCache(cache_dir)
    present = lambda m: all(cache.file_path(f.sha256).exists() for f in m.files)  # noqa: E731
    assert present(models["b"]) and present(models["c"])
    only_a = [f for f in models["a"].files if f.path.endswith(".safetensors")]
    assert only_a and not any(cache.file_path(f.sha256).exists() for f in only_a)
    assert cache.used_bytes() <= budget
    # Mounted files stay readable after eviction (hard links keep the bytes).
    assert wt.tree(tmp_path / "root" / "a") == wt.tree(tmp_path / "a")
    before = origin.bytes_sent
    ensure_weights(
        models["a"].manifest_id,
        EnsureOptions(mount_root=tmp_path / "r2", cache_dir=cache_dir, origin_url=url),
    )
    # Its tensors come back over the network (its header chunk is shared with b and c).
    assert origin.bytes_sent - before >= 4 << 20


def test_node_cache_evicts_in_lru_order_and_skips_leases(tmp_path: Path) -> None:
    cache = NodeCache(tmp_path, budget_bytes=100)
    keys = {name: name * 64 for name in "xyzw"}
    for name in "xyz":  # recorded (used) in this order: x is least recently used
        path = cache.chunk_path(keys[name])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0" * 40)
        cache.record(chunk_entry(keys[name]), 40)
    cache.pin("job-1", [chunk_entry(keys["x"])])
    # 120 used + 30 incoming > 100: drop unpinned LRU entries (y, then z) until it fits.
    assert cache.evict(incoming_bytes=30) == [chunk_entry(keys["y"]), chunk_entry(keys["z"])]
    assert cache.chunk_path(keys["x"]).exists()
    assert not cache.chunk_path(keys["y"]).exists()
    assert cache.evict(incoming_bytes=100) == []  # x is pinned: nothing else to drop
    cache.release("job-1")
    assert cache.evict(incoming_bytes=100) == [chunk_entry(keys["x"])]
    assert cache.used_bytes() == 0


def test_dead_cluster_tier_falls_back_to_origin(
    platform: Any, small_model: Path, tmp_path: Path, faulty_origin: Any, wt: Any
) -> None:
    origin, url = faulty_origin
    manifest = platform.mirror(small_model)
    dead_cluster = f"http://127.0.0.1:{wt.free_port()}"  # nothing listens here
    result = ensure_weights(
        manifest.manifest_id,
        EnsureOptions(
            mount_root=tmp_path / "root",
            cache_dir=tmp_path / "cache",
            cluster_url=dead_cluster,
            origin_url=url,
        ),
    )
    assert wt.tree(result.mount_dir) == wt.tree(small_model)
    assert set(origin.requests_by_chunk.values()) == {1}
