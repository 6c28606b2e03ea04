"""Node agent: make a manifest's files appear under a mount, from the node cache or the network.

Model server hook (call before ``load()``)::

    options = EnsureOptions(mount_root, cache_dir, cluster_url=..., origin_url=...)
    ensure_weights(manifest, options, progress)

``manifest`` is a manifest id (fetched from the cluster cache / origin ``/manifests/<id>.json``),
an http(s) URL, or a local file path. Files land under ``mount_root / mount_location``
(``mount_root="/"`` puts them at the config's absolute ``mount_location``).

One direction: load the manifest, pin it under the mount's lease, observe what the node cache
holds, plan (``plan.py``, pure), fill the cache by the plan (``fill.py``), publish the files
under the mount (``publish.py``).

CLI: ``python -m gpu_nodes.weights.agent --manifest ID --mount-root D --cache-dir C
--origin-url URL [--cluster-url URL] [--budget-bytes N] [--status-file F] [--layout hf]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from gpu_nodes.weights.fetcher import ChunkFetcher, RetryPolicy
from gpu_nodes.weights.fill import fill_cache
from gpu_nodes.weights.node_cache import NodeCache, chunk_entry, file_entry
from gpu_nodes.weights.plan import FillPlan, NodeView, Tier, network_order, plan_fill
from gpu_nodes.weights.progress import Progress, ProgressCallback, ProgressTracker
from gpu_nodes.weights.publish import LAYOUTS, Layout, publish
from plinth.contracts.exceptions import ManifestError, WeightsError
from plinth.contracts.weights_manifest import Manifest, parse_manifest
from plinth.hashing import is_sha256_hex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsureOptions:
    """Where a manifest is mounted, which tiers serve it, and the limits of the fill."""

    mount_root: Path
    cache_dir: Path  # the node cache, shared by every replica on the node
    cluster_url: str | None = None
    origin_url: str | None = None
    budget_bytes: int | None = None  # node cache LRU budget; None: unlimited
    concurrency: int = 8  # parallel chunk downloads
    status_path: Path | None = None  # progress JSON; default: in the node cache
    layout: Layout = "plain"
    lease: str | None = None  # default: one lease per mount directory
    keep_chunks: bool = False  # keep every chunk as its own file after assembly
    verify_files: bool = False  # also re-hash each built file as a whole
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise WeightsError(f"layout must be 'plain' or 'hf', got {self.layout!r}")

    def tier_urls(self) -> dict[Tier, str]:
        """Base URL of every configured network tier."""
        urls = {Tier.CLUSTER: self.cluster_url, Tier.ORIGIN: self.origin_url}
        return {tier: url for tier, url in urls.items() if url}


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


def _manifest_by_id(
    manifest_id: str, cache: NodeCache, client: httpx.Client, tier_urls: Sequence[str]
) -> bytes:
    """The node's copy, else the first tier that serves it."""
    cached = cache.manifest_path(manifest_id)
    if cached.exists():
        return cached.read_bytes()
    errors = []
    for url in tier_urls:
        try:
            return _fetch_manifest_http(client, f"{url.rstrip('/')}/manifests/{manifest_id}.json")
        except ManifestError as exc:
            errors.append(f"{url}: {exc}")
    raise ManifestError(f"manifest {manifest_id} not found: {errors}")


def load_manifest(
    ref: str, cache: NodeCache, client: httpx.Client, tier_urls: Sequence[str]
) -> Manifest:
    """Resolve a manifest id / URL / path, verify it hashes to its id, keep a copy on the node."""
    if ref.startswith(("http://", "https://")):
        name = ref.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
        expected = name if is_sha256_hex(name) else None
        raw = _fetch_manifest_http(client, ref)
    elif is_sha256_hex(ref):
        expected = ref
        raw = _manifest_by_id(ref, cache, client, tier_urls)
    else:
        path = Path(ref)
        if not path.is_file():
            raise ManifestError(f"manifest {ref!r} is not an id, URL or existing file")
        expected = path.stem if is_sha256_hex(path.stem) else None
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


def observe_node(cache: NodeCache, manifest: Manifest) -> NodeView:
    """Which of the manifest's blobs, and which chunks of its missing blobs, the node holds."""
    files = frozenset(e.sha256 for e in manifest.files if cache.file_path(e.sha256).exists())
    pending_chunks = {ref.hash for e in manifest.files if e.sha256 not in files for ref in e.chunks}
    chunks = frozenset(h for h in pending_chunks if cache.locate_chunk(h) is not None)
    return NodeView(files=files, chunks=chunks)


def _lease_keys(manifest: Manifest) -> list[str]:
    keys = [chunk_entry(h) for h in manifest.unique_chunks()]
    return keys + [file_entry(e.sha256) for e in manifest.files]


def _in_order(urls: Mapping[Tier, str], order: Sequence[Tier]) -> list[str]:
    return [urls[tier] for tier in order]


def _log_plan(manifest: Manifest, plan: FillPlan) -> None:
    # Tier names only: tier URLs may carry credentials or signatures.
    logger.info(
        "weights %s: %d of %d files to build, %d bytes to fetch via %s",
        manifest.manifest_id[:12],
        len(plan.files),
        len(manifest.files),
        plan.bytes_to_fetch,
        "/".join(tier.value for tier in plan.sources) or "no tier",
    )


def _mount(
    cache: NodeCache,
    manifest: Manifest,
    client: httpx.Client,
    tracker: ProgressTracker,
    mount_dir: Path,
    options: EnsureOptions,
    lease: str,
) -> list[Path]:
    """Pin under ``lease``, observe, plan, fill, publish, then trim the cache to its budget."""
    keys = _lease_keys(manifest)
    # Pinned before looking, so nothing observed can be evicted by another process meanwhile.
    cache.release(lease)
    cache.pin(lease, keys)
    urls = options.tier_urls()
    plan = plan_fill(
        manifest, observe_node(cache, manifest), tiers=urls, keep_chunks=options.keep_chunks
    )
    _log_plan(manifest, plan)
    fetcher = ChunkFetcher(
        _in_order(urls, plan.sources),
        client=client,
        retry=options.retry,
        on_bytes=lambda n: tracker.add(bytes_fetched=n),
    )
    fill_cache(
        cache,
        plan,
        fetcher,
        tracker,
        concurrency=options.concurrency,
        verify_files=options.verify_files,
    )
    files = publish(cache, manifest, mount_dir, options.layout)
    cache.touch(keys)
    cache.evict()
    return files


def _tracker(
    manifest: Manifest, cache: NodeCache, options: EnsureOptions, progress: ProgressCallback | None
) -> ProgressTracker:
    return ProgressTracker(
        Progress(
            manifest_id=manifest.manifest_id,
            bytes_total=sum(manifest.unique_chunks().values()),
            files_total=len(manifest.files),
        ),
        callback=progress,
        status_path=options.status_path or cache.status_path(manifest.manifest_id),
    )


def ensure_weights(
    manifest_ref: str, options: EnsureOptions, progress: ProgressCallback | None = None
) -> EnsureResult:
    """Materialise a manifest's files; returns where they are and how many bytes were fetched."""
    cache = NodeCache(Path(options.cache_dir), budget_bytes=options.budget_bytes)
    limits = httpx.Limits(max_connections=max(1, options.concurrency) + 2)
    with (
        contextlib.closing(cache),
        httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as client,
    ):
        urls = options.tier_urls()
        manifest = load_manifest(manifest_ref, cache, client, _in_order(urls, network_order(urls)))
        mount_dir = Path(options.mount_root) / manifest.mount_location.lstrip("/")
        tracker = _tracker(manifest, cache, options, progress)
        lease = options.lease or default_lease(mount_dir)
        try:
            files = _mount(cache, manifest, client, tracker, mount_dir, options, lease)
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


def _options_from_args(args: argparse.Namespace) -> EnsureOptions:
    return EnsureOptions(
        mount_root=args.mount_root,
        cache_dir=args.cache_dir,
        cluster_url=args.cluster_url,
        origin_url=args.origin_url,
        budget_bytes=args.budget_bytes,
        concurrency=args.concurrency,
        status_path=args.status_file,
        layout=args.layout,
        keep_chunks=args.keep_chunks,
        verify_files=args.verify_files,
    )


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
        result = ensure_weights(args.manifest, _options_from_args(args))
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
