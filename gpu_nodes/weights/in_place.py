"""Cold files: download every chunk straight into its place in the file blob being built.

A file none of whose chunks is on the node gains nothing from passing through ``chunks/``:
writing each chunk there and copying it into the blob afterwards writes every byte twice. Here
the chunks are fetched in parallel into ``parts/<sha256>.file`` at their offsets (each verified
against its own hash as it streams), then the finished file is published as
``files/<sha256>`` and its chunks are remembered as (file, offset) locations, exactly as if it
had been assembled from cached chunks.

Single-flight: the file's lock is held for the whole download, so another process needing the
same file waits and then finds it published. A process killed mid-way leaves the partial file;
the next attempt re-hashes its chunk regions and fetches only those that do not verify.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, wait

from gpu_nodes.weights.exceptions import ChunkFetchError, IntegrityError
from gpu_nodes.weights.node_cache import NodeCache, file_entry
from plinth.contracts.weights_manifest import ChunkRef, FileEntry
from plinth.hashing import file_sha256

_POLL_S = 0.05
# fetch_into(chunk_hash, length, fd, offset): one verified chunk written at ``offset``.
FetchInto = Callable[[str, int, int, int], None]


def _first_occurrences(entry: FileEntry) -> dict[str, ChunkRef]:
    first: dict[str, ChunkRef] = {}
    for ref in entry.chunks:
        first.setdefault(ref.hash, ref)
    return first


def _download(
    fd: int,
    refs: list[ChunkRef],
    fetch_into: FetchInto,
    pool: Executor,
    on_chunk: Callable[[ChunkRef], None],
) -> None:
    def one(ref: ChunkRef) -> None:
        fetch_into(ref.hash, ref.length, fd, ref.offset)
        on_chunk(ref)

    futures: list[Future[None]] = []
    shut_down = False
    for ref in refs:
        try:
            futures.append(pool.submit(one, ref))
        except RuntimeError:  # the pool was shut down (another file failed) while submitting
            shut_down = True
            break
    # Polled, not a plain wait(): a future cancelled by pool.shutdown(cancel_futures=True) (the
    # agent does that when another file failed) is never marked notified, and wait() would
    # block on it forever. Writers still running hold ``fd``, so every future must settle.
    while pending := [future for future in futures if not future.done()]:
        if any(_failed(future) for future in futures):
            for future in pending:
                future.cancel()  # only those not started; running ones finish their write
        wait(pending, timeout=_POLL_S, return_when=FIRST_EXCEPTION)
    for future in futures:
        if _failed(future):
            future.result()
    if shut_down or any(future.cancelled() for future in futures):
        raise ChunkFetchError("download cancelled before every chunk arrived")


def _failed(future: Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is not None


def fetch_file_in_place(
    cache: NodeCache,
    entry: FileEntry,
    fetch_into: FetchInto,
    pool: Executor,
    on_chunk: Callable[[ChunkRef], None],
    *,
    verify_file: bool = False,
) -> None:
    """Publish ``files/<sha256>`` for ``entry`` unless present, fetching its chunks into it.

    ``on_chunk`` is called for each unique chunk once its bytes are in place (fetched now, or
    found intact in a partial file left by a killed process).
    """
    target = cache.file_path(entry.sha256)
    with cache.lock(file_entry(entry.sha256)):
        if target.exists() and target.stat().st_size == entry.size:
            return
        partial = cache.partial_file_path(entry.sha256)
        resuming = partial.exists()
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, entry.size)
            first = _first_occurrences(entry)
            todo = []
            for ref in first.values():
                if resuming and ref.matches(os.pread(fd, ref.length, ref.offset)):
                    on_chunk(ref)
                else:
                    todo.append(ref)
            _download(fd, todo, fetch_into, pool, on_chunk)
            _copy_repeats(fd, entry, first)
        finally:
            os.close(fd)
        if verify_file and file_sha256(partial) != entry.sha256:
            partial.unlink()
            raise IntegrityError(f"{entry.path}: downloaded file does not match its sha256")
        partial.chmod(0o444)
        os.replace(partial, target)
        cache.record(file_entry(entry.sha256), entry.size)
        cache.add_locations(entry.sha256, [(c.hash, c.offset) for c in entry.chunks])


def _copy_repeats(fd: int, entry: FileEntry, first: dict[str, ChunkRef]) -> None:
    """A chunk that occurs twice in one file is fetched once and copied to its other places."""
    for ref in entry.chunks:
        source = first[ref.hash]
        if source.offset != ref.offset:
            os.pwrite(fd, os.pread(fd, ref.length, source.offset), ref.offset)
