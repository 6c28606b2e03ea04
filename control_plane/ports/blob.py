"""Blob store port: immutable-ish objects by key, with byte-range reads.

Used for build archives, build logs and the weight mirror (content-addressed chunks).
Writes are atomic: a reader never sees a partial object (adapters write to a temporary
name and rename, or rely on the cloud store's whole-object PUT).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from control_plane.exceptions import ControlPlaneError


class BlobNotFound(ControlPlaneError, KeyError):
    """No object under that key (a KeyError too: callers may treat the store like a mapping)."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int


class BlobStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        """Store everything read from ``stream``; returns the byte count."""
        ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of the object (``end=None``: to the end). Raises BlobNotFound."""
        ...

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def get_file(self, key: str, path: Path) -> None:
        """Download to ``path`` atomically."""
        ...

    def head(self, key: str) -> BlobInfo | None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> list[BlobInfo]:
        """Objects whose key starts with ``prefix``, ordered by key."""
        ...
