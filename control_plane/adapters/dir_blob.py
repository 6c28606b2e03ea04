"""Directory implementation of :class:`control_plane.ports.blob.BlobStore`.

Key ``a/b/c`` is the file ``<root>/a/b/c``. Writes go to a temporary file in
``<root>/.staging`` and are renamed into place, so a reader sees either the old object
or the whole new one, never a partial file.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from control_plane.adapters.exceptions import InvalidKey
from control_plane.ports.blob import BlobInfo, BlobNotFound

_STAGING = ".staging"
_COPY_CHUNK = 1 << 20


def validate_blob_key(key: str) -> list[str]:
    """The key's path segments, or InvalidKey naming what is wrong with it."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(str(key), "must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(key, "must be a relative path of '/'-separated segments")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidKey(key, f"segment {segment!r} is not allowed")
    if segments[0] == _STAGING:
        raise InvalidKey(key, f"{_STAGING!r} is reserved")
    return segments


class DirectoryBlobStore:
    """Blobs as files under ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).resolve()
        self._staging = self._root / _STAGING
        self._staging.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    def path_of(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist)."""
        return self._root.joinpath(*validate_blob_key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path_of(key)
        tmp = self._staging_file()
        try:
            tmp.write_bytes(data)
            self._publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        target = self.path_of(key)
        tmp = self._staging_file()
        total = 0
        try:
            with tmp.open("wb") as out:
                while chunk := stream.read(_COPY_CHUNK):
                    out.write(chunk)
                    total += len(chunk)
            self._publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return total

    def put_file(self, key: str, path: Path) -> None:
        with Path(path).open("rb") as src:
            self.put_stream(key, src)

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        with self._open(key) as f:
            f.seek(start)
            return f.read() if end is None else f.read(end - start)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        f = self._open(key)  # opened eagerly so a missing key raises at the call

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_size):
                    yield chunk

        return chunks()

    def get_file(self, key: str, path: Path) -> None:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._open(key) as src:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
                os.replace(tmp_name, dest)
            finally:
                Path(tmp_name).unlink(missing_ok=True)

    def head(self, key: str) -> BlobInfo | None:
        try:
            st = self.path_of(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlobInfo(key=key, size=st.st_size) if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        try:
            self.path_of(key).unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass

    def list(self, prefix: str = "") -> list[BlobInfo]:
        # Walk only the deepest directory the prefix fully names.
        head, _, _ = prefix.rpartition("/")
        segments = head.split("/") if head else []
        if any(s in ("", ".", "..") for s in segments) or segments[:1] == [_STAGING]:
            return []  # no valid key can start with this prefix
        start = self._root.joinpath(*segments)
        if not start.is_dir():
            return []
        found: list[BlobInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self._root:
                dirnames[:] = [d for d in dirnames if d != _STAGING]
            rel_dir = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    size = os.stat(os.path.join(dirpath, name)).st_size
                    found.append(BlobInfo(key=key, size=size))
        found.sort(key=lambda info: info.key)
        return found

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise BlobNotFound(key) from exc

    def _staging_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self._staging, prefix="put-")
        os.close(fd)
        return Path(name)

    def _publish(self, tmp: Path, target: Path) -> None:
        key = target.relative_to(self._root).as_posix()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidKey(key, "a parent of it is already a blob") from exc
        if target.is_dir():
            raise InvalidKey(key, "it is already a prefix of other blobs")
        os.replace(tmp, target)
