"""Mirror weights into the platform blob store as content-addressed chunks plus a manifest.

For each selected file: download it to a scratch file, hash it, cut it into chunks
(``plinth.contracts.chunking``), and PUT every chunk under ``weights/chunks/<sha256>`` unless
a HEAD shows it is already there. A second mirror of the same content uploads nothing but the
(identical, also HEAD-checked) manifest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from control_plane.ports.blob import BlobStore
from control_plane.weights.sources import SourceFile, WeightSource, open_source
from plinth.contracts.chunking import chunk_spans
from plinth.contracts.exceptions import WeightSourceError
from plinth.contracts.weights_manifest import ChunkRef, FileEntry, Manifest, chunk_key, manifest_key
from plinth.hashing import file_sha256

logger = logging.getLogger(__name__)
_UPLOAD_THREADS = 4


class WeightsConfigEntry(BaseModel):
    """One entry of Truss ``weights:`` in config.yaml."""

    source: str = Field(
        description="s3://bucket/prefix, gs://bucket/prefix, hf://org/repo@rev, ..."
    )
    mount_location: str = Field(description="Where the files appear inside the replica")
    allow_patterns: list[str] | None = Field(None, description="Keep only paths matching a glob")
    ignore_patterns: list[str] | None = Field(None, description="Drop paths matching a glob")
    auth_secret_name: str | None = Field(None, description="Secret holding the source credential")


@dataclass
class MirrorStats:
    """What one mirror run did (for logs and the benchmark)."""

    files: int = 0
    bytes_total: int = 0
    chunks_total: int = 0
    chunks_uploaded: int = 0
    bytes_uploaded: int = 0


def select_files(
    files: Iterable[SourceFile], allow: list[str] | None, ignore: list[str] | None
) -> list[SourceFile]:
    """HF-style filtering: keep a path if it matches any allow glob and no ignore glob."""
    kept = []
    for item in files:
        if allow and not any(fnmatch.fnmatch(item.path, pat) for pat in allow):
            continue
        if ignore and any(fnmatch.fnmatch(item.path, pat) for pat in ignore):
            continue
        kept.append(item)
    return kept


def _store_chunk(store: BlobStore, path: Path, offset: int, length: int) -> tuple[str, int]:
    """Returns (hash, bytes uploaded); HEAD before PUT so known chunks cost one request."""
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    chunk_hash = hashlib.sha256(data).hexdigest()
    if store.head(chunk_key(chunk_hash)) is not None:
        return chunk_hash, 0
    store.put_bytes(chunk_key(chunk_hash), data)
    return chunk_hash, length


def mirror_file(
    store: BlobStore, scratch: Path, name: str, pool: ThreadPoolExecutor, stats: MirrorStats
) -> FileEntry:
    """Chunk and upload one downloaded file; returns its manifest entry."""
    spans = chunk_spans(scratch)
    results = list(pool.map(lambda s: _store_chunk(store, scratch, s.offset, s.length), spans))
    refs = tuple(ChunkRef(h, s.offset, s.length) for (h, _), s in zip(results, spans, strict=True))
    stats.chunks_total += len(refs)
    stats.chunks_uploaded += sum(1 for _, sent in results if sent)
    stats.bytes_uploaded += sum(sent for _, sent in results)
    size = scratch.stat().st_size
    stats.files += 1
    stats.bytes_total += size
    return FileEntry(path=name, size=size, sha256=file_sha256(scratch), chunks=refs)


def mirror_source(
    source: WeightSource,
    store: BlobStore,
    *,
    mount_location: str = "",
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    stats: MirrorStats | None = None,
) -> Manifest:
    """Mirror the selected files of ``source``; stores and returns the manifest."""
    stats = stats if stats is not None else MirrorStats()
    selected = select_files(source.list_files(), allow_patterns, ignore_patterns)
    if not selected:
        raise WeightSourceError(f"{source.uri}: no files left after allow/ignore patterns")
    entries: list[FileEntry] = []
    with (
        tempfile.TemporaryDirectory(prefix="plinth-mirror-") as scratch_dir,
        ThreadPoolExecutor(_UPLOAD_THREADS) as pool,
    ):
        for item in selected:
            # Keep the suffix: chunking picks the tensor-aligned cutter for ``.safetensors``.
            scratch = Path(scratch_dir) / f"file{PurePosixPath(item.path).suffix}"
            source.download(item.path, scratch)
            entries.append(mirror_file(store, scratch, item.path, pool, stats))
            scratch.unlink()
    manifest = Manifest(
        source=source.uri,
        revision=source.revision,
        mount_location=mount_location,
        files=tuple(entries),
    )
    key = manifest_key(manifest.manifest_id)
    if store.head(key) is None:
        store.put_bytes(key, manifest.canonical_json())
    logger.info(
        "mirrored %s: %d files, %d bytes, %d/%d chunks new",
        source.uri,
        stats.files,
        stats.bytes_total,
        stats.chunks_uploaded,
        stats.chunks_total,
    )
    return manifest


def _entry(raw: Any, index: int) -> WeightsConfigEntry:
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    try:
        return WeightsConfigEntry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"weights[{index}].{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise WeightSourceError(problems) from exc


def mirror_weights(
    config_weights: Iterable[Any],
    blob_store: BlobStore,
    secrets: Mapping[str, str],
    *,
    hf_endpoint: str | None = None,
    source_opener: Callable[..., WeightSource] = open_source,
) -> list[str]:
    """Mirror every ``weights:`` entry (dicts or pydantic models); returns one manifest id each."""
    manifest_ids: list[str] = []
    for index, raw in enumerate(config_weights):
        entry = _entry(raw, index)
        secret = None
        if entry.auth_secret_name:
            if entry.auth_secret_name not in secrets:
                raise WeightSourceError(
                    f"weights[{index}].auth_secret_name: secret {entry.auth_secret_name!r} "
                    "is not defined"
                )
            secret = secrets[entry.auth_secret_name]
        source = source_opener(entry.source, secret=secret, hf_endpoint=hf_endpoint)
        manifest = mirror_source(
            source,
            blob_store,
            mount_location=entry.mount_location,
            allow_patterns=entry.allow_patterns,
            ignore_patterns=entry.ignore_patterns,
        )
        manifest_ids.append(manifest.manifest_id)
    return manifest_ids
