"""The fill: carry out a ``FillPlan`` against the node cache (threads, HTTP ranges, verification).

``concurrency`` chunk downloads run at once and two files are built at a time. Chunks of
assembled files download into ``chunks/`` (single-flight across processes by a lock per chunk)
while the files are written chunk by chunk as their downloads finish (``assembly.py``), so
copying overlaps with fetching. In-place files fetch their chunks straight into the blob being
built (``in_place.py``) on the same download pool. Every chunk is verified against its sha256
on arrival; a chunk read back from disk is verified again unless this process fetched it.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass

from gpu_nodes.weights.assembly import assemble_file
from gpu_nodes.weights.fetcher import ChunkFetcher
from gpu_nodes.weights.in_place import fetch_file_in_place
from gpu_nodes.weights.node_cache import NodeCache, chunk_entry
from gpu_nodes.weights.plan import ChunkFetch, FileAction, FileStep, FillPlan
from gpu_nodes.weights.progress import ProgressTracker

# Files built at once: enough to overlap one file's copying with the next one's downloads.
_FILES_AT_ONCE = 2


class ChunkEnsurer:
    """Single-flight fetch of one chunk into the node cache (file lock per chunk hash)."""

    def __init__(self, cache: NodeCache, fetcher: ChunkFetcher) -> None:
        self._cache = cache
        self._fetcher = fetcher
        # Chunks this process verified moments ago: assembly copies them without re-hashing.
        self.verified_here: set[str] = set()

    def __call__(self, chunk_hash: str, length: int) -> None:
        with self._cache.lock(chunk_entry(chunk_hash)):
            if self._cache.locate_chunk(chunk_hash) is not None:
                return
            self._fetcher.fetch(
                chunk_hash,
                length,
                self._cache.part_path(chunk_hash),
                self._cache.chunk_path(chunk_hash),
            )
            self._cache.record(chunk_entry(chunk_hash), length)
            self.verified_here.add(chunk_hash)


@dataclass
class _FileBuilder:
    """Builds one file blob per plan step, waiting for the chunk downloads it needs."""

    cache: NodeCache
    fetcher: ChunkFetcher
    ensurer: ChunkEnsurer
    downloads: dict[str, Future[None]]
    fetch_pool: Executor
    tracker: ProgressTracker
    keep_chunks: bool
    verify_files: bool

    def build(self, step: FileStep) -> None:
        if step.action is FileAction.IN_PLACE:
            fetch_file_in_place(
                self.cache,
                step.entry,
                self.fetcher.fetch_into,
                self.fetch_pool,
                lambda ref: self.tracker.add(bytes_done=ref.length),
                verify_file=self.verify_files,
            )
            return
        assemble_file(
            self.cache,
            step.entry,
            self.ensurer,
            self.ensurer.verified_here,
            keep_chunks=self.keep_chunks,
            verify_file=self.verify_files,
            await_chunk=self._await_chunk,
        )

    def _await_chunk(self, chunk_hash: str) -> None:
        download = self.downloads.get(chunk_hash)
        if download is not None:
            download.result()


def _start_downloads(
    fetches: tuple[ChunkFetch, ...],
    ensurer: ChunkEnsurer,
    tracker: ProgressTracker,
    pool: Executor,
) -> dict[str, Future[None]]:
    def fetch_one(fetch: ChunkFetch) -> None:
        ensurer(fetch.hash, fetch.length)
        tracker.add(bytes_done=fetch.length)

    return {fetch.hash: pool.submit(fetch_one, fetch) for fetch in fetches}


def fill_cache(
    cache: NodeCache,
    plan: FillPlan,
    fetcher: ChunkFetcher,
    tracker: ProgressTracker,
    *,
    concurrency: int,
    verify_files: bool,
) -> None:
    """Publish ``files/<sha256>`` for every step of ``plan``; raises the first failure."""
    tracker.update(bytes_done=plan.bytes_present, force=True)
    cache.evict(plan.bytes_incoming)
    ensurer = ChunkEnsurer(cache, fetcher)
    fetch_pool = ThreadPoolExecutor(max(1, concurrency))
    build_pool = ThreadPoolExecutor(_FILES_AT_ONCE)
    try:
        builder = _FileBuilder(
            cache=cache,
            fetcher=fetcher,
            ensurer=ensurer,
            downloads=_start_downloads(plan.fetches, ensurer, tracker, fetch_pool),
            fetch_pool=fetch_pool,
            tracker=tracker,
            keep_chunks=plan.keep_chunks,
            verify_files=verify_files,
        )
        for future in [build_pool.submit(builder.build, step) for step in plan.files]:
            future.result()
    finally:
        # On failure, drop queued work instead of downloading what nobody will assemble.
        fetch_pool.shutdown(wait=True, cancel_futures=True)
        build_pool.shutdown(wait=True, cancel_futures=True)
