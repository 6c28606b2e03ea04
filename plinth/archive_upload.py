"""Sending an archive where the control plane's upload plan says: ranges of the file, to
presigned blob-store URLs that must never see the API key (used by ``PlinthClient``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from plinth.exceptions import ApiError, PlatformUnreachableError

ProgressCallback = Callable[[int, int], None]
_UPLOAD_CHUNK = 1024 * 1024


class UploadSender:
    """Reads ranges of an archive for upload, reporting overall progress."""

    def __init__(self, archive: Path, total: int, progress: ProgressCallback | None) -> None:
        self._archive = archive
        self._total = total
        self._progress = progress
        self._done = 0

    def report(self, done: int) -> None:
        self._done = done
        if self._progress is not None:
            self._progress(done, self._total)

    def chunks(self, offset: int, size: int) -> Iterator[bytes]:
        with self._archive.open("rb") as content:
            content.seek(offset)
            left = size
            while left > 0 and (chunk := content.read(min(_UPLOAD_CHUNK, left))):
                left -= len(chunk)
                yield chunk
                self.report(self._done + len(chunk))


def put_presigned(
    url: str, sender: UploadSender, offset: int, size: int, timeout: httpx.Timeout
) -> str:
    """PUT ``size`` bytes from ``offset`` to a presigned URL (never with an API key);
    returns the ETag the store answers (the multipart complete call needs it)."""
    try:
        with httpx.Client(timeout=timeout) as store:
            response = store.put(
                url, content=sender.chunks(offset, size), headers={"Content-Length": str(size)}
            )
    except httpx.TransportError as exc:
        raise PlatformUnreachableError(httpx.URL(url).host, str(exc) or type(exc).__name__) from exc
    if response.status_code >= 400:
        # The URL and the store's error body carry the signature: name the host and the
        # store's error code and message only.
        fields = dict(re.findall(r"<(Code|Message)>([^<]{0,200})</", response.text))
        raise ApiError(
            response.status_code,
            "UPLOAD_FAILED",
            f"the blob store at {httpx.URL(url).host} refused the upload: "
            f"{fields.get('Code', 'error')} {fields.get('Message', '')}".rstrip(),
        )
    return response.headers.get("ETag", "")
