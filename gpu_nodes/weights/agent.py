"""Node agent: make a manifest's files appear under a mount, from the node cache or the network.

Model server hook (call before ``load()``)::

    ensure_weights(manifest, mount_root, node_cache_dir, cluster_url, origin_url, progress)

``manifest`` is a manifest id (fetched from the cluster cache / origin ``/manifests/<id>.json``),
an http(s) URL, or a local file path. Files land under ``mount_root / mount_location``
(``mount_root="/"`` puts them at the config's absolute ``mount_location``).

CLI: ``python -m gpu_nodes.weights.agent --manifest ID --mount-root D --cache-dir C
--origin-url URL [--cluster-url URL] [--budget-bytes N] [--status-file F] [--layout hf]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from gpu_nodes.weights.assembly import assemble_file, materialise_hf_cache, materialise_plain
from gpu_nodes.weights.fetcher import ChunkFetcher, RetryPolicy
from gpu_nodes.weights.in_place import fetch_file_in_place
from gpu_nodes.weights.node_cache import NodeCache, chunk_entry, file_entry
from gpu_nodes.weights.progress import Progress, ProgressCallback, ProgressTracker
from plinth.contracts.exceptions import ManifestError, WeightsError
from plinth.contracts.weights_manifest import FileEntry, Manifest, parse_manifest

logger = logging.getLogger(__name__)
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class EnsureResult:
    manifest_id: str
    mount_dir: Path
    files: list[Path]
    bytes_total: int
    bytes_fetched: int
    lease: str


def _fetch_manifest_http(client: httpx.Client, url: str) -> bytes:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise ManifestError(f"could not fetch manifest: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise ManifestError(f"manifest GET returned HTTP {response.status_code}")
    return response.content


def load_manifest(
    ref: str, cache: NodeCache, client: httpx.Client, tiers: Sequence[str]
) -> Manifest:
    """Resolve a manifest id / URL / path, verify it hashes to its id, keep a copy on the node."""
    expected: str | None = None
    if ref.startswith(("http://", "https://")):
        name = ref.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
        expected = name if _ID_RE.match(name) else None
        raw = _fetch_manifest_http(client, ref)
    elif _ID_RE.match(ref):
        expected = ref
        cached = cache.manifest_path(ref)
        if cached.exists():
            raw = cached.read_bytes()
        else:
            raw = b""
            errors = []
            for tier in tiers:
                try:
                    raw = _fetch_manifest_http(client, f"{tier.rstrip('/')}/manifests/{ref}.json")
                    break
                except ManifestError as exc:
                    errors.append(f"{tier}: {exc}")
            if not raw:
                raise ManifestError(f"manifest {ref} not found: {errors}")
    else:
        path = Path(ref)
        if not path.is_file():
            raise ManifestError(f"manifest {ref!r} is not an id, URL or existing file")
        expected = path.stem if _ID_RE.match(path.stem) else None
        raw = path.read_bytes()
    manifest = parse_manifest(raw, expected_id=expected)
    stored = cache.manifest_path(manifest.manifest_id)
    if not stored.exists():
        stored.write_bytes(manifest.canonical_json())
    return manifest


def default_lease(mount_dir: Path) -> str:
    """One lease per mount directory: remounting replaces the pins of what was there."""
    return "mount:" + hashlib.sha256(str(mount_dir.resolve()).encode()).hexdigest()[:24]


def release_weights(node_cache_dir: Path, lease: str) -> None:
    """Unpin what a mount held so eviction may reclaim it (call when the replica stops)."""
    cache = NodeCache(node_cache_dir)
    try:
        cache.release(lease)
    finally:
        cache.close()


class _ChunkEnsurer:
    """Single-flight fetch of one chunk into the node cache (file lock per chunk hash)."""

    def __init__(self, cache: NodeCache, fetcher: ChunkFetcher, tracker: ProgressTracker) -> None:
        self._cache = cache
        self.fetcher = fetcher
        self.tracker = tracker
        self.verified_here: set[str] = set()

    def __call__(self, chunk_hash: str, length: int) -> None:
        with self._cache.lock(chunk_entry(chunk_hash)):
            if self._cache.locate_chunk(chunk_hash) is not None:
                return
            self.fetcher.fetch(
                chunk_hash,
                length,
                self._cache.part_path(chunk_hash),
                self._cache.chunk_path(chunk_hash),
            )
            self._cache.record(chunk_entry(chunk_hash), length)
            self.verified_here.add(chunk_hash)


def _missing_chunks(cache: NodeCache, manifest: Manifest) -> dict[str, int]:
    needed: dict[str, int] = {}
    for entry in manifest.files:
        if cache.file_path(entry.sha256).exists():
            continue
        for ref in entry.chunks:
            if ref.hash not in needed and cache.locate_chunk(ref.hash) is None:
                needed[ref.hash] = ref.length
    return needed


def _cold_files(pending: list[FileEntry], missing: dict[str, int]) -> set[str]:
    """sha256 of the files none of whose chunks is on the node or shared with another pending
    file: they are downloaded in place instead of through ``chunks/``."""
    holders: dict[str, set[str]] = {}
    for entry in pending:
        for ref in entry.chunks:
            holders.setdefault(ref.hash, set()).add(entry.sha256)
    return {
        entry.sha256
        for entry in pending
        if all(ref.hash in missing and len(holders[ref.hash]) == 1 for ref in entry.chunks)
    }


def _fill_cache(
    cache: NodeCache,
    manifest: Manifest,
    ensurer: _ChunkEnsurer,
    tracker: ProgressTracker,
    concurrency: int,
    keep_chunks: bool,
    verify_files: bool,
) -> None:
    """Fetch what is missing with ``concurrency`` parallel downloads, two files at a time.

    Cold files are downloaded in place (``in_place.py``); the others are assembled in order
    from cached chunks while their missing chunks download, so copying overlaps with fetching.
    """
    missing = _missing_chunks(cache, manifest)
    unique = manifest.unique_chunks()
    tracker.update(bytes_done=sum(unique.values()) - sum(missing.values()), force=True)
    pending_files = [e for e in manifest.files if not cache.file_path(e.sha256).exists()]
    cache.evict(sum(missing.values()) + sum(e.size for e in pending_files))
    cold = set() if keep_chunks else _cold_files(pending_files, missing)

    def fetch_one(chunk_hash: str, length: int) -> None:
        ensurer(chunk_hash, length)
        tracker.add(bytes_done=length)

    fetch_pool = ThreadPoolExecutor(max(1, concurrency))
    assemble_pool = ThreadPoolExecutor(2)
    try:
        fetches: dict[str, Future[None]] = {}
        for entry in pending_files:
            for ref in entry.chunks:
                if entry.sha256 not in cold and ref.hash in missing and ref.hash not in fetches:
                    fetches[ref.hash] = fetch_pool.submit(fetch_one, ref.hash, ref.length)

        def await_chunk(chunk_hash: str) -> None:
            download = fetches.get(chunk_hash)
            if download is not None:
                download.result()

        def assemble(entry: FileEntry) -> None:
            if entry.sha256 in cold:
                fetch_file_in_place(
                    cache,
                    entry,
                    ensurer.fetcher.fetch_into,
                    fetch_pool,
                    lambda ref: tracker.add(bytes_done=ref.length),
                    verify_file=verify_files,
                )
                return
            assemble_file(
                cache,
                entry,
                ensurer,
                ensurer.verified_here,
                keep_chunks=keep_chunks,
                verify_file=verify_files,
                await_chunk=await_chunk,
            )

        for future in [assemble_pool.submit(assemble, e) for e in pending_files]:
            future.result()
    finally:
        # On failure, drop queued work instead of downloading what nobody will assemble.
        fetch_pool.shutdown(wait=True, cancel_futures=True)
        assemble_pool.shutdown(wait=True, cancel_futures=True)


def ensure_weights(
    manifest_url_or_path: str,
    mount_root: Path | str,
    node_cache_dir: Path | str,
    cluster_url: str | None = None,
    origin_url: str | None = None,
    progress: ProgressCallback | None = None,
    *,
    budget_bytes: int | None = None,
    concurrency: int = 8,
    status_path: Path | None = None,
    layout: str = "plain",
    lease: str | None = None,
    keep_chunks: bool = False,
    verify_files: bool = False,
    retry: RetryPolicy | None = None,
) -> EnsureResult:
    """Materialise a manifest's files; returns where they are and how many bytes were fetched."""
    if layout not in ("plain", "hf"):
        raise WeightsError(f"layout must be 'plain' or 'hf', got {layout!r}")
    cache = NodeCache(Path(node_cache_dir), budget_bytes=budget_bytes)
    tiers = [t for t in (cluster_url, origin_url) if t]
    limits = httpx.Limits(max_connections=max(1, concurrency) + 2)
    with (
        contextlib.closing(cache),
        httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as client,
    ):
        manifest = load_manifest(manifest_url_or_path, cache, client, tiers)
        mount_dir = Path(mount_root) / manifest.mount_location.lstrip("/")
        tracker = ProgressTracker(
            Progress(
                manifest_id=manifest.manifest_id,
                bytes_total=sum(manifest.unique_chunks().values()),
                files_total=len(manifest.files),
            ),
            callback=progress,
            status_path=status_path or cache.status_path(manifest.manifest_id),
        )
        fetcher = ChunkFetcher(
            tiers, client=client, retry=retry, on_bytes=lambda n: tracker.add(bytes_fetched=n)
        )
        lease = lease or default_lease(mount_dir)
        try:
            files = _mount(
                cache,
                manifest,
                _ChunkEnsurer(cache, fetcher, tracker),
                mount_dir,
                lease,
                _MountOptions(concurrency, keep_chunks, verify_files, layout),
            )
        except BaseException as exc:
            tracker.update(state="failed", error=f"{type(exc).__name__}: {exc}", force=True)
            raise
        tracker.update(state="ready", files_done=len(files), force=True)
        return EnsureResult(
            manifest_id=manifest.manifest_id,
            mount_dir=mount_dir,
            files=files,
            bytes_total=manifest.total_bytes,
            bytes_fetched=tracker.current.bytes_fetched,
            lease=lease,
        )


@dataclass(frozen=True)
class _MountOptions:
    concurrency: int
    keep_chunks: bool
    verify_files: bool
    layout: str


def _mount(
    cache: NodeCache,
    manifest: Manifest,
    ensurer: _ChunkEnsurer,
    mount_dir: Path,
    lease: str,
    options: _MountOptions,
) -> list[Path]:
    """Pin the manifest under ``lease``, fill the cache, place the files, trim to budget."""
    keys = [chunk_entry(h) for h in manifest.unique_chunks()]
    keys += [file_entry(e.sha256) for e in manifest.files]
    cache.release(lease)
    cache.pin(lease, keys)
    _fill_cache(
        cache,
        manifest,
        ensurer,
        ensurer.tracker,
        options.concurrency,
        options.keep_chunks,
        options.verify_files,
    )
    place = materialise_hf_cache if options.layout == "hf" else materialise_plain
    files = place(cache, manifest, mount_dir)
    cache.touch(keys)
    cache.evict()
    return files


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.weights.agent", description=__doc__)
    parser.add_argument("--manifest", help="manifest id, URL or path")
    parser.add_argument("--mount-root", type=Path, default=Path("/"))
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--cluster-url")
    parser.add_argument("--origin-url")
    parser.add_argument("--budget-bytes", type=int)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--layout", choices=["plain", "hf"], default="plain")
    parser.add_argument("--keep-chunks", action="store_true")
    parser.add_argument(
        "--verify-files", action="store_true", help="also re-hash each assembled file"
    )
    parser.add_argument("--release", metavar="LEASE", help="unpin a lease and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request URL at INFO; URLs may carry signatures, and it is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.release:
        release_weights(args.cache_dir, args.release)
        return 0
    if not args.manifest:
        print("error: --manifest is required", file=sys.stderr)
        return 2
    try:
        result = ensure_weights(
            args.manifest,
            args.mount_root,
            args.cache_dir,
            args.cluster_url,
            args.origin_url,
            budget_bytes=args.budget_bytes,
            concurrency=args.concurrency,
            status_path=args.status_file,
            layout=args.layout,
            keep_chunks=args.keep_chunks,
            verify_files=args.verify_files,
        )
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {
        "manifest_id": result.manifest_id,
        "mount_dir": str(result.mount_dir),
        "files": len(result.files),
        "bytes_total": result.bytes_total,
        "bytes_fetched": result.bytes_fetched,
        "lease": result.lease,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
