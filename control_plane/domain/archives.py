"""Package archives in the blob store, addressed by their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from control_plane.exceptions import ArchiveInvalid, HashMismatch, PayloadTooLarge
from control_plane.ports.blob import BlobStore
from plinth.hashing import is_sha256_hex


def archive_key(sha256: str) -> str:
    return f"archives/{sha256}.tar.gz"


def check_sha256(sha256: str) -> str:
    if not is_sha256_hex(sha256):
        raise ArchiveInvalid(f"sha256: {sha256!r} is not 64 lowercase hex characters")
    return sha256


class ArchiveUpload:
    """Receives an archive in chunks into a temp file, hashing as it goes.

    Nothing reaches the blob store unless the whole body hashes to the expected value.
    """

    def __init__(self, blobs: BlobStore, sha256: str, tmp_dir: Path, max_bytes: int) -> None:
        self._blobs = blobs
        self._expected = check_sha256(sha256)
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=tmp_dir)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise PayloadTooLarge(f"archive is larger than the limit of {self._max_bytes} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> int:
        """Verify the hash and store the archive; returns its size."""
        self._file.close()
        actual = self._hash.hexdigest()
        if actual != self._expected:
            raise HashMismatch(
                f"archive body hashes to {actual}, not {self._expected} named in the URL"
            )
        if self.size == 0:
            raise ArchiveInvalid("archive body is empty")
        self._blobs.put_file(archive_key(self._expected), self._path)
        return self.size

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)


class ArchiveService:
    def __init__(self, blobs: BlobStore, tmp_dir: Path, max_bytes: int) -> None:
        self._blobs = blobs
        self._tmp_dir = tmp_dir
        self._max_bytes = max_bytes

    def size_of(self, sha256: str) -> int | None:
        """Size of the stored archive, or None when it has not been uploaded."""
        info = self._blobs.head(archive_key(check_sha256(sha256)))
        return None if info is None else info.size

    def begin_upload(self, sha256: str) -> ArchiveUpload:
        return ArchiveUpload(self._blobs, sha256, self._tmp_dir, self._max_bytes)
