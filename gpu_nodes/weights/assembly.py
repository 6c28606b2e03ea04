"""Turn verified chunks into a verified file blob (the fill's path for files that are not cold).

Every chunk is re-hashed when it is read from disk (a bit flip in the cache is caught here, the
bad copy deleted and the chunk refetched) unless this process verified it moments ago; with
``verify_file`` the assembled file is also hashed as a whole before it is published read-only
under ``files/<sha256>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gpu_nodes.weights.exceptions import IntegrityError
from gpu_nodes.weights.node_cache import NodeCache, chunk_entry, file_entry
from plinth.contracts.weights_manifest import ChunkRef, FileEntry
from plinth.hashing import file_sha256

# Refetch-and-retry rounds when a chunk on disk is corrupt or vanishes (evicted) mid-read.
_READ_ROUNDS = 3

EnsureChunk = Callable[[str, int], None]
# Blocks until a chunk's download (if one is under way in this process) has finished.
AwaitChunk = Callable[[str], None]


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def _drop_bad_copy(cache: NodeCache, ref: ChunkRef, path: Path) -> None:
    """Delete a copy that failed verification so it is never used again."""
    if path == cache.chunk_path(ref.hash):
        path.unlink(missing_ok=True)
        cache.forget(chunk_entry(ref.hash))
        return
    # The chunk sat inside a file blob: that whole blob is corrupt.
    file_sha = path.name
    path.unlink(missing_ok=True)
    cache.forget(file_entry(file_sha))


def read_chunk(
    cache: NodeCache, ref: ChunkRef, ensure_chunk: EnsureChunk, trusted: set[str]
) -> bytes:
    """Bytes of one chunk from the node cache, verified; fetches it if missing or corrupt."""
    for _ in range(_READ_ROUNDS):
        location = cache.locate_chunk(ref.hash)
        if location is None:
            ensure_chunk(ref.hash, ref.length)
            location = cache.locate_chunk(ref.hash)
            if location is None:
                continue
        try:
            data = _read_at(location.path, location.offset, ref.length)
        except FileNotFoundError:
            continue
        if ref.hash in trusted and len(data) == ref.length:
            return data
        if ref.matches(data):
            return data
        _drop_bad_copy(cache, ref, location.path)
    raise IntegrityError(f"chunk {ref.hash} could not be read intact after {_READ_ROUNDS} tries")


def _copy_trusted(cache: NodeCache, ref: ChunkRef, out_fd: int) -> bool:
    """Kernel-side copy of a chunk this process just verified; False if it is not on disk."""
    location = cache.locate_chunk(ref.hash)
    if location is None:
        return False
    try:
        src_fd = os.open(location.path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        offset, left = location.offset, ref.length
        while left:
            try:
                copied = os.copy_file_range(src_fd, out_fd, left, offset)
            except OSError:
                copied = 0
            if copied <= 0:
                # Filesystems without copy_file_range: plain read + write.
                os.write(out_fd, os.pread(src_fd, left, offset))
                return True
            offset += copied
            left -= copied
    finally:
        os.close(src_fd)
    return True


def _write_blob(
    cache: NodeCache,
    entry: FileEntry,
    tmp: Path,
    ensure_chunk: EnsureChunk,
    trusted: set[str],
    verify_file: bool,
    await_chunk: AwaitChunk | None,
) -> None:
    out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for ref in entry.chunks:
            if await_chunk is not None:
                await_chunk(ref.hash)
            if ref.hash in trusted and _copy_trusted(cache, ref, out_fd):
                continue
            data = read_chunk(cache, ref, ensure_chunk, trusted)
            view = memoryview(data)
            while view:
                view = view[os.write(out_fd, view) :]
    finally:
        os.close(out_fd)
    if tmp.stat().st_size != entry.size:
        raise IntegrityError(f"{entry.path}: assembled {tmp.stat().st_size} of {entry.size} bytes")
    if verify_file and file_sha256(tmp) != entry.sha256:
        raise IntegrityError(f"{entry.path}: assembled file does not match its sha256")


def assemble_file(
    cache: NodeCache,
    entry: FileEntry,
    ensure_chunk: EnsureChunk,
    trusted: set[str],
    *,
    keep_chunks: bool,
    verify_file: bool = False,
    await_chunk: AwaitChunk | None = None,
) -> None:
    """Build ``files/<sha256>`` for ``entry`` unless present; single-flight across processes.

    Each chunk is verified (on download, or re-hashed when read from the cache), and the chunk
    list comes from a manifest verified against its id, so the file is the verified
    concatenation; ``verify_file`` additionally re-hashes the whole file (one more pass).
    With ``await_chunk`` the file is written chunk by chunk as downloads finish, so assembling
    overlaps with fetching and little is left to copy after the last byte arrives.
    """
    target = cache.file_path(entry.sha256)
    with cache.lock(file_entry(entry.sha256)):
        if target.exists() and target.stat().st_size == entry.size:
            return
        tmp = target.with_name(f".{entry.sha256}.{os.getpid()}.tmp")
        try:
            _write_blob(cache, entry, tmp, ensure_chunk, trusted, verify_file, await_chunk)
            tmp.chmod(0o444)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        cache.record(file_entry(entry.sha256), entry.size)
        cache.add_locations(entry.sha256, [(c.hash, c.offset) for c in entry.chunks])
    if not keep_chunks:
        # The bytes now live in the file blob; keep only the (file, offset) location.
        for ref in entry.chunks:
            cache.chunk_path(ref.hash).unlink(missing_ok=True)
            cache.forget(chunk_entry(ref.hash))
