"""Blob store port: immutable-ish objects by key, with byte-range reads.

Used for build archives, build logs and the weight mirror (content-addressed chunks).
Writes are atomic: a reader never sees a partial object (adapters write to a temporary
name and rename, or rely on the cloud store's whole-object PUT).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


class DirectUploads(Protocol):
    """A blob store clients can upload to without the API in the path (S3, GCS).

    The API hands out short-lived URLs, the client sends the bytes to the store itself, and the
    API then checks what was stored: so the API (a Lambda, capped at ~6 MB a request) never
    carries an archive.
    """

    def presign_put(self, key: str, *, expires_s: int) -> str:
        """A URL that accepts one ``PUT`` of the whole object under ``key``."""
        ...

    def copy(self, source_key: str, target_key: str) -> None:
        """Copy inside the store (server side: the bytes never come to the caller)."""
        ...


class MultipartUploads(DirectUploads, Protocol):
    """Direct uploads in parts, each with its own presigned URL (S3 multipart)."""

    def start_multipart(self, key: str) -> str:
        """Begin a multipart upload of ``key``; returns the store's upload id."""
        ...

    def presign_part(self, key: str, multipart_id: str, part_number: int, *, expires_s: int) -> str:
        """A URL that accepts one ``PUT`` of part ``part_number`` (1-based)."""
        ...

    def complete_multipart(self, key: str, multipart_id: str, etags: Sequence[str]) -> None:
        """Assemble the parts, in order, whose ``ETag``s the client got back."""
        ...

    def abort_multipart(self, key: str, multipart_id: str) -> None: ...
