"""Archive uploads that bypass the API: presigned URLs out, verification after.

The client asks for a plan (how to send ``size`` bytes hashing to ``sha256``), sends the
bytes where the plan says, and then asks the API to complete. Direct uploads land under a
staging key; only an object whose size and sha256 match what was declared is copied to the
content-addressed key, so a wrong or truncated upload never replaces or poses as a stored
archive. A blob store without direct uploads (the directory store of ``plinth up``) plans an
upload through the API's own ``PUT /v1/archives/{sha256}``, so the CLI has one code path.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from control_plane.domain.archives import archive_key, check_sha256
from control_plane.exceptions import ArchiveInvalid, HashMismatch, PayloadTooLarge
from control_plane.ports.blob import BlobStore, DirectUploads, MultipartUploads

UploadMode = Literal["stored", "api", "single", "multipart"]
_UPLOAD_ID = re.compile(r"^[0-9a-f]{16}$")
# S3 takes at most 10,000 parts, each at least 5 MiB but the last.
_MIN_PART_BYTES = 5 << 20
_MAX_PARTS = 10_000


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    multipart_threshold_bytes: int = 64 << 20
    part_bytes: int = 16 << 20
    url_ttl_s: int = 3600


@dataclass(frozen=True)
class PlannedPart:
    part_number: int
    offset: int
    size: int
    url: str


@dataclass(frozen=True)
class UploadPlan:
    sha256: str
    size: int
    mode: UploadMode
    upload_id: str | None = None
    url: str | None = None
    multipart_id: str | None = None
    parts: tuple[PlannedPart, ...] = ()


def staging_key(sha256: str, upload_id: str) -> str:
    return f"uploads/{sha256}/{upload_id}"


def _direct(blobs: BlobStore) -> DirectUploads | None:
    has_direct = all(hasattr(blobs, name) for name in ("presign_put", "copy"))
    return blobs if has_direct else None  # type: ignore[return-value]


def _multipart(blobs: BlobStore) -> MultipartUploads | None:
    names = ("start_multipart", "presign_part", "complete_multipart", "abort_multipart")
    has_multipart = _direct(blobs) is not None and all(hasattr(blobs, n) for n in names)
    return blobs if has_multipart else None  # type: ignore[return-value]


class ArchiveUploads:
    """Plans and completes archive uploads against one blob store."""

    def __init__(self, blobs: BlobStore, limits: UploadLimits) -> None:
        self._blobs = blobs
        self._limits = limits

    def plan(self, sha256: str, size: int) -> UploadPlan:
        check_sha256(sha256)
        self._check_size("size", size)
        stored = self._blobs.head(archive_key(sha256))
        if stored is not None:
            return UploadPlan(sha256=sha256, size=stored.size, mode="stored")
        direct = _direct(self._blobs)
        if direct is None:
            return UploadPlan(sha256=sha256, size=size, mode="api", url=f"/v1/archives/{sha256}")
        upload_id = secrets.token_hex(8)
        key = staging_key(sha256, upload_id)
        ttl = self._limits.url_ttl_s
        multipart = _multipart(self._blobs)
        if multipart is None or size <= self._limits.multipart_threshold_bytes:
            url = direct.presign_put(key, expires_s=ttl)
            return UploadPlan(sha256, size, "single", upload_id=upload_id, url=url)
        multipart_id = multipart.start_multipart(key)
        part_bytes = max(self._limits.part_bytes, _MIN_PART_BYTES, -(-size // _MAX_PARTS))
        parts = tuple(
            PlannedPart(
                part_number=number,
                offset=offset,
                size=min(part_bytes, size - offset),
                url=multipart.presign_part(key, multipart_id, number, expires_s=ttl),
            )
            for number, offset in enumerate(range(0, size, part_bytes), start=1)
        )
        return UploadPlan(
            sha256, size, "multipart", upload_id=upload_id, multipart_id=multipart_id, parts=parts
        )

    def complete(
        self,
        sha256: str,
        upload_id: str,
        size: int,
        *,
        multipart_id: str | None = None,
        etags: list[str] | None = None,
    ) -> int:
        """Verify the staged object and store it as the archive; returns its size."""
        check_sha256(sha256)
        if not _UPLOAD_ID.match(upload_id):
            raise ArchiveInvalid(f"upload_id: {upload_id!r} is not an id this API handed out")
        self._check_size("size", size)
        direct = _direct(self._blobs)
        if direct is None:
            raise ArchiveInvalid("this blob store takes archives through PUT /v1/archives only")
        key = staging_key(sha256, upload_id)
        try:
            if multipart_id is not None:
                self._assemble(key, multipart_id, etags or [])
            self._verify(key, sha256, size)
            if self._blobs.head(archive_key(sha256)) is None:
                direct.copy(key, archive_key(sha256))
        finally:
            self._blobs.delete(key)
        return size

    def _assemble(self, key: str, multipart_id: str, etags: list[str]) -> None:
        multipart = _multipart(self._blobs)
        if multipart is None:
            raise ArchiveInvalid("multipart_id: this blob store has no multipart uploads")
        if not etags:
            multipart.abort_multipart(key, multipart_id)
            raise ArchiveInvalid("parts: a multipart upload needs the ETag of every part")
        try:
            multipart.complete_multipart(key, multipart_id, etags)
        except Exception as exc:
            multipart.abort_multipart(key, multipart_id)
            raise ArchiveInvalid(
                f"parts: the store refused to assemble {len(etags)} parts "
                f"({type(exc).__name__}); upload again"
            ) from exc

    def _verify(self, key: str, sha256: str, size: int) -> None:
        info = self._blobs.head(key)
        if info is None:
            raise ArchiveInvalid(f"upload_id: nothing was uploaded for archive {sha256}")
        if info.size != size:
            raise ArchiveInvalid(f"size: the upload stored {info.size} bytes, not {size} declared")
        digest = hashlib.sha256()
        for piece in self._blobs.iter_chunks(key, chunk_size=8 << 20):
            digest.update(piece)
        if digest.hexdigest() != sha256:
            raise HashMismatch(f"sha256: the upload hashes to {digest.hexdigest()}, not {sha256}")

    def _check_size(self, field: str, size: int) -> None:
        if size <= 0:
            raise ArchiveInvalid(f"{field}: {size} is not a positive byte count")
        if size > self._limits.max_bytes:
            raise PayloadTooLarge(
                f"{field}: archive of {size} bytes is over the limit of {self._limits.max_bytes}"
            )
