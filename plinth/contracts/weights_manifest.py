"""Weight manifests: which files a mount holds and which content-addressed chunks make each file.

The manifest id is the sha256 of the manifest's canonical JSON (sorted keys, no whitespace), so
the id commits to every file hash and chunk hash: a verified manifest plus verified chunks is a
verified mount.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from plinth.contracts.exceptions import ManifestError
from plinth.hashing import is_sha256_hex

MANIFEST_VERSION = 1
CHUNK_PREFIX = "weights/chunks/"
MANIFEST_PREFIX = "weights/manifests/"


def chunk_key(chunk_hash: str) -> str:
    """Blob store key of a chunk."""
    return f"{CHUNK_PREFIX}{chunk_hash}"


def manifest_key(manifest_id: str) -> str:
    """Blob store key of a manifest."""
    return f"{MANIFEST_PREFIX}{manifest_id}.json"


@dataclass(frozen=True)
class ChunkRef:
    """A piece of a file: bytes ``[offset, offset + length)`` whose sha256 is ``hash``."""

    hash: str
    offset: int
    length: int

    def matches(self, data: bytes) -> bool:
        """True when ``data`` is exactly this chunk (length and sha256)."""
        return len(data) == self.length and hashlib.sha256(data).hexdigest() == self.hash


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True)
class Manifest:
    """Files of one weights source, ready to be assembled under ``mount_location``."""

    source: str
    mount_location: str
    files: tuple[FileEntry, ...]
    revision: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def unique_chunks(self) -> dict[str, int]:
        """Chunk hash -> length, each hash once (files may share chunks)."""
        out: dict[str, int] = {}
        for entry in self.files:
            for ref in entry.chunks:
                out[ref.hash] = ref.length
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "source": self.source,
            "revision": self.revision,
            "mount_location": self.mount_location,
            "extra": dict(sorted(self.extra.items())),
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "chunks": [[c.hash, c.offset, c.length] for c in f.chunks],
                }
                for f in sorted(self.files, key=lambda e: e.path)
            ],
        }

    def canonical_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def manifest_id(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()


class _FileModel(BaseModel):
    path: str = Field(description="POSIX path relative to the mount location")
    size: int = Field(ge=0)
    sha256: str
    chunks: list[tuple[str, int, int]] = Field(description="[hash, offset, length] in file order")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not value or value.startswith("/") or ".." in parts:
            raise ValueError(f"file path must be relative without '..': {value!r}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_hash(cls, value: str) -> str:
        if not is_sha256_hex(value):
            raise ValueError(f"not a sha256 hex digest: {value!r}")
        return value


class _ManifestModel(BaseModel):
    version: int
    source: str
    revision: str = ""
    mount_location: str = ""
    extra: dict[str, str] = Field(default_factory=dict)
    files: list[_FileModel]


def _check_chunks_cover(entry: _FileModel) -> None:
    """Chunks must tile the file exactly, in order, each with a valid hash."""
    position = 0
    for chunk_hash, offset, length in entry.chunks:
        if not is_sha256_hex(chunk_hash):
            raise ManifestError(f"file {entry.path!r}: bad chunk hash {chunk_hash!r}")
        if offset != position or length <= 0:
            raise ManifestError(
                f"file {entry.path!r}: chunk at offset {offset} (length {length}) "
                f"does not follow byte {position}"
            )
        position += length
    if position != entry.size:
        raise ManifestError(f"file {entry.path!r}: chunks cover {position} of {entry.size} bytes")


def parse_manifest(raw: bytes, *, expected_id: str | None = None) -> Manifest:
    """Validate manifest JSON; with ``expected_id`` also check it hashes to that id."""
    try:
        model = _ManifestModel.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(f"invalid manifest: {exc}") from exc
    if model.version != MANIFEST_VERSION:
        raise ManifestError(f"unsupported manifest version {model.version}")
    for entry in model.files:
        _check_chunks_cover(entry)
    manifest = Manifest(
        source=model.source,
        revision=model.revision,
        mount_location=model.mount_location,
        extra=model.extra,
        files=tuple(
            FileEntry(
                path=f.path,
                size=f.size,
                sha256=f.sha256,
                chunks=tuple(ChunkRef(h, o, n) for h, o, n in f.chunks),
            )
            for f in model.files
        ),
    )
    if expected_id is not None and manifest.manifest_id != expected_id:
        raise ManifestError(
            f"manifest content hashes to {manifest.manifest_id}, expected {expected_id}"
        )
    return manifest
