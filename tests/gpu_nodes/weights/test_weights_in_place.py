"""In-place download of a cold file when its pool is shut down under it (the agent does that when
another file of the manifest failed): the download must settle and publish nothing."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_nodes.weights.exceptions import ChunkFetchError
from gpu_nodes.weights.in_place import fetch_file_in_place
from gpu_nodes.weights.node_cache import NodeCache
from plinth.contracts.weights_manifest import ChunkRef, FileEntry


def _entry(pieces: list[bytes]) -> FileEntry:
    refs, offset = [], 0
    for piece in pieces:
        refs.append(ChunkRef(hashlib.sha256(piece).hexdigest(), offset, len(piece)))
        offset += len(piece)
    whole = b"".join(pieces)
    return FileEntry("model.bin", len(whole), hashlib.sha256(whole).hexdigest(), tuple(refs))


def test_pool_shut_down_mid_download_settles_and_publishes_nothing(tmp_path: Path) -> None:
    entry = _entry([b"a" * 1000, b"b" * 1000, b"c" * 1000])
    cache = NodeCache(tmp_path / "cache")
    pool = ThreadPoolExecutor(1)  # the first chunk runs, the other two wait in the queue
    running, release = threading.Event(), threading.Event()

    def fetch_into(chunk_hash: str, length: int, fd: int, offset: int) -> None:
        running.set()
        release.wait(10)
        raise ChunkFetchError(f"chunk {chunk_hash}: injected failure")

    outcome: list[BaseException] = []

    def download() -> None:
        try:
            fetch_file_in_place(cache, entry, fetch_into, pool, lambda ref: None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    assert running.wait(10)
    # Drops the two queued chunks: their futures are cancelled without waking wait().
    stopper = threading.Thread(target=lambda: pool.shutdown(wait=True, cancel_futures=True))
    stopper.start()
    release.set()
    worker.join(15)
    stopper.join(15)
    assert not worker.is_alive(), "the download never settled"
    assert len(outcome) == 1 and isinstance(outcome[0], ChunkFetchError)
    assert "injected failure" in str(outcome[0])
    assert not cache.file_path(entry.sha256).exists()
    cache.close()
