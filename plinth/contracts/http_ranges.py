"""HTTP Range handling shared by the origin and the cluster cache (single ``bytes=a-b`` ranges)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.responses import Response

from plinth.hashing import is_sha256_hex

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def check_digest(value: str, what: str) -> str:
    """400 unless ``value`` is a lowercase sha256 hex digest (keys are built from it)."""
    if not is_sha256_hex(value):
        raise HTTPException(status_code=400, detail=f"{what} must be a sha256 hex digest")
    return value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` for a Range header, None for no header; 416 when unsatisfiable."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None or match.group(0) == "bytes=-":
        raise HTTPException(status_code=416, detail=f"unsupported Range {header!r}")
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise HTTPException(
            status_code=416,
            detail=f"Range {header!r} outside 0-{size}",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def range_response(data: bytes, size: int, span: tuple[int, int] | None) -> Response:
    """200 with the whole body, or 206 with Content-Range for a span."""
    headers = {"Accept-Ranges": "bytes"}
    if span is None:
        return Response(data, media_type="application/octet-stream", headers=headers)
    headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{size}"
    return Response(data, status_code=206, media_type="application/octet-stream", headers=headers)


@dataclass
class TransferStats:
    """Counters exposed at ``GET /stats`` (the benchmark and tests read origin bytes here)."""

    requests: int = 0
    bytes_served: int = 0
    bytes_from_upstream: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def served(self, count: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_served += count

    def pulled(self, count: int) -> None:
        with self._lock:
            self.bytes_from_upstream += count

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "bytes_served": self.bytes_served,
                "bytes_from_upstream": self.bytes_from_upstream,
            }
