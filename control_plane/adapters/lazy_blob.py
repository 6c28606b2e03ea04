"""A BlobStore built on first use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from control_plane.ports.blob import BlobInfo, BlobStore


class LazyBlobStore:
    """A BlobStore built on first use (the weights origin is mounted before adapters exist)."""

    def __init__(self, factory: Callable[[], BlobStore]) -> None:
        self._factory = factory

    def head(self, key: str) -> BlobInfo | None:
        return self._factory().head(key)

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return self._factory().get_bytes(key, start=start, end=end)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self._factory().iter_chunks(key, chunk_size=chunk_size)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._factory().put_bytes(key, data)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        return self._factory().put_stream(key, stream)

    def put_file(self, key: str, path: Path) -> None:
        self._factory().put_file(key, path)

    def get_file(self, key: str, path: Path) -> None:
        self._factory().get_file(key, path)

    def delete(self, key: str) -> None:
        self._factory().delete(key)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        return self._factory().list(prefix)
