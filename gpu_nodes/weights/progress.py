"""Progress of one ``ensure_weights`` call: a callback plus a JSON status file others can poll.

Status file (written atomically, at most every ``interval_s`` and on every state change)::

    {"manifest_id": "...", "state": "fetching" | "assembling" | "ready" | "failed",
     "bytes_total": N, "bytes_done": N, "files_total": N, "files_done": N,
     "bytes_fetched": N, "error": null | "...", "updated_at": <unix time>}

``bytes_done`` counts chunk bytes present on the node (cached or fetched) against the
manifest's unique chunk bytes; ``bytes_fetched`` counts network bytes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    manifest_id: str
    state: str = "fetching"
    bytes_total: int = 0
    bytes_done: int = 0
    files_total: int = 0
    files_done: int = 0
    bytes_fetched: int = 0
    error: str | None = None


ProgressCallback = Callable[[Progress], None]


def read_status(path: Path) -> Progress | None:
    """The last status written to ``path``, or None if there is none yet."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    data.pop("updated_at", None)
    return Progress(**data)


class ProgressTracker:
    """Thread-safe counters; reports to the callback and the status file, throttled.

    ``add`` runs for every ~1 MiB written on every download thread, so it only bumps integers
    under the lock; the ``Progress`` snapshot is built when something reads or reports it.
    """

    def __init__(
        self,
        initial: Progress,
        *,
        callback: ProgressCallback | None,
        status_path: Path | None,
        interval_s: float = 0.2,
    ) -> None:
        self._state = initial
        # Deltas added since the last snapshot: bytes_done, files_done, bytes_fetched.
        self._pending = [0, 0, 0]
        self._callback = callback
        self._status_path = status_path
        self._interval_s = interval_s
        self._last_report = 0.0
        self._lock = threading.Lock()
        self._report(force=True)

    def _snapshot_locked(self) -> Progress:
        done, files, fetched = self._pending
        if done or files or fetched:
            self._state = replace(
                self._state,
                bytes_done=self._state.bytes_done + done,
                files_done=self._state.files_done + files,
                bytes_fetched=self._state.bytes_fetched + fetched,
            )
            self._pending = [0, 0, 0]
        return self._state

    @property
    def current(self) -> Progress:
        with self._lock:
            return self._snapshot_locked()

    def update(self, *, force: bool = False, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._snapshot_locked(), **changes)  # type: ignore[arg-type]
        self._report(force=force)

    def add(self, *, bytes_done: int = 0, files_done: int = 0, bytes_fetched: int = 0) -> None:
        with self._lock:
            pending = self._pending
            pending[0] += bytes_done
            pending[1] += files_done
            pending[2] += bytes_fetched
            due = time.monotonic() - self._last_report >= self._interval_s
        if due:
            self._report(force=False)

    def _report(self, *, force: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_report < self._interval_s:
                return
            self._last_report = now
            snapshot = self._snapshot_locked()
        if self._callback is not None:
            self._callback(snapshot)
        if self._status_path is not None:
            self._write_status(self._status_path, snapshot)

    @staticmethod
    def _write_status(path: Path, snapshot: Progress) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({**asdict(snapshot), "updated_at": time.time()}))
        os.replace(tmp, path)
