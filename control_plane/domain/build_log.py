"""Build log of a deployment, kept in the blob store at ``logs/<deployment_id>/build.log``.

Blobs are whole objects, so the writer buffers lines and rewrites the object at most
every ``flush_interval_s`` (and on ``close``): readers see the log grow during a build.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from control_plane.ports.blob import BlobNotFound, BlobStore

MAX_LINE_CHARS = 4000


def build_log_key(deployment_id: str) -> str:
    return f"logs/{deployment_id}/build.log"


def read_build_log(blobs: BlobStore, deployment_id: str) -> list[str]:
    try:
        data = blobs.get_bytes(build_log_key(deployment_id))
    except BlobNotFound:
        return []
    return data.decode(errors="replace").splitlines()


class BuildLogWriter:
    """Appends lines to a deployment's build log (thread-safe)."""

    def __init__(
        self,
        blobs: BlobStore,
        deployment_id: str,
        *,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._key = build_log_key(deployment_id)
        self._lines = read_build_log(blobs, deployment_id)
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._last_flush = clock()
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._lines.append(line.rstrip("\n")[:MAX_LINE_CHARS])
            if self._clock() - self._last_flush >= self._flush_interval_s:
                self._flush_locked()

    def close(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        body = "".join(line + "\n" for line in self._lines)
        self._blobs.put_bytes(self._key, body.encode())
        self._last_flush = self._clock()


def append_build_log(blobs: BlobStore, deployment_id: str, line: str) -> None:
    writer = BuildLogWriter(blobs, deployment_id)
    writer(line)
    writer.close()
