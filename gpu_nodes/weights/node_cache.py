"""Node tier of the weight cache: one directory shared by every replica and job on a node.

Layout under ``root``::

    chunks/<h[:2]>/<h>   verified chunks waiting to be assembled (or kept for dedup)
    parts/<h>.part       partial chunk downloads, resumed from their size after a crash
    parts/<sha256>.file  a file blob being downloaded in place (cold files, no chunk copies)
    files/<sha256>       assembled, verified, read-only file blobs (mounts hard-link to these)
    locks/<key>.lock     flock single-flight: N processes needing one chunk fetch it once
    manifests/<id>.json  manifests seen on this node
    index.sqlite         entries (LRU by last use), chunk locations inside file blobs, leases

A chunk that was assembled into a file blob is deleted and remembered as (file, offset), so the
cache holds each byte about once while a fine-tune can still reuse its base model's chunks.
Leases pin the chunks and files of a manifest being materialised or mounted; eviction (LRU under
``budget_bytes``) never touches pinned keys and deletes files inside the index transaction, so a
process that pins after an eviction sees the key missing rather than vanishing under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gpu_nodes.weights.exceptions import WeightsError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, size INTEGER NOT NULL,
                                    last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS locations (chunk TEXT NOT NULL, file TEXT NOT NULL,
                                      offset INTEGER NOT NULL, PRIMARY KEY (chunk, file));
CREATE INDEX IF NOT EXISTS locations_file ON locations(file);
CREATE TABLE IF NOT EXISTS leases (lease TEXT NOT NULL, key TEXT NOT NULL,
                                   PRIMARY KEY (lease, key));
CREATE INDEX IF NOT EXISTS leases_key ON leases(key);
"""
_LOCK_POLL_S = 0.01


def chunk_entry(chunk_hash: str) -> str:
    return f"chunk:{chunk_hash}"


def file_entry(sha256: str) -> str:
    return f"file:{sha256}"


@dataclass(frozen=True)
class ChunkLocation:
    """Where a chunk's bytes can be read on this node."""

    path: Path
    offset: int


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch the index to WAL (persistent: done once per file). Changing the journal mode
    takes an exclusive lock and SQLite may refuse it at once instead of calling the busy
    handler when another agent opens the same new index at that moment; so retry, bounded."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class NodeCache:
    def __init__(self, root: Path, *, budget_bytes: int | None = None) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        self._connections: list[sqlite3.Connection] = []
        for sub in ("chunks", "parts", "files", "locks", "manifests", "status"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._connection()
        _enable_wal(conn)
        conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        # One long-lived connection per thread: closing the last connection of a WAL database
        # checkpoints and fsyncs, which would cost milliseconds on every index update.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.root / "index.sqlite",
                timeout=60.0,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every index connection this object opened (all threads)."""
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local = threading.local()

    @contextlib.contextmanager
    def _db(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        # WAL + busy timeout serialise writers across threads and processes; readers never wait.
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # paths -------------------------------------------------------------------------------
    def chunk_path(self, chunk_hash: str) -> Path:
        return self.root / "chunks" / chunk_hash[:2] / chunk_hash

    def part_path(self, chunk_hash: str) -> Path:
        return self.root / "parts" / f"{chunk_hash}.part"

    def partial_file_path(self, sha256: str) -> Path:
        return self.root / "parts" / f"{sha256}.file"

    def file_path(self, sha256: str) -> Path:
        return self.root / "files" / sha256

    def manifest_path(self, manifest_id: str) -> Path:
        return self.root / "manifests" / f"{manifest_id}.json"

    def status_path(self, manifest_id: str) -> Path:
        return self.root / "status" / f"{manifest_id}.json"

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout_s: float = 900.0) -> Iterator[None]:
        """Exclusive cross-process lock on ``key`` (flock; released if the holder dies)."""
        fd = os.open(self.root / "locks" / f"{key.replace(':', '_')}.lock", os.O_CREAT | os.O_RDWR)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError as exc:
                    if time.monotonic() > deadline:
                        raise WeightsError(f"timed out waiting for {key}") from exc
                    time.sleep(_LOCK_POLL_S)
            yield
        finally:
            os.close(fd)

    # index -------------------------------------------------------------------------------
    def record(self, key: str, size: int) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO entries(key, size, last_used) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET size=excluded.size, last_used=excluded.last_used",
                (key, size, time.time()),
            )

    def forget(self, key: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM entries WHERE key=?", (key,))

    def touch(self, keys: Iterable[str]) -> None:
        now = time.time()
        with self._db() as db:
            db.executemany("UPDATE entries SET last_used=? WHERE key=?", [(now, k) for k in keys])

    def add_locations(self, file_sha: str, chunks: Iterable[tuple[str, int]]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR IGNORE INTO locations(chunk, file, offset) VALUES (?, ?, ?)",
                [(h, file_sha, off) for h, off in chunks],
            )

    def locate_chunk(self, chunk_hash: str) -> ChunkLocation | None:
        """A place on disk holding the chunk (own file, or inside a file blob), if any."""
        own = self.chunk_path(chunk_hash)
        if own.exists():
            return ChunkLocation(own, 0)
        with self._db(write=False) as db:
            rows = db.execute(
                "SELECT file, offset FROM locations WHERE chunk=?", (chunk_hash,)
            ).fetchall()
        for file_sha, offset in rows:
            path = self.file_path(file_sha)
            if path.exists():
                return ChunkLocation(path, int(offset))
        return None

    def pin(self, lease: str, keys: Iterable[str]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR IGNORE INTO leases(lease, key) VALUES (?, ?)", [(lease, k) for k in keys]
            )

    def release(self, lease: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM leases WHERE lease=?", (lease,))

    def used_bytes(self) -> int:
        with self._db(write=False) as db:
            (total,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
        return int(total)

    def evict(self, incoming_bytes: int = 0) -> list[str]:
        """Delete least recently used unpinned entries until ``used + incoming <= budget``."""
        if self.budget_bytes is None:
            return []
        evicted: list[str] = []
        with self._db() as db:
            (used,) = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
            excess = int(used) + incoming_bytes - self.budget_bytes
            if excess <= 0:
                return []
            candidates = db.execute(
                "SELECT key, size FROM entries WHERE key NOT IN (SELECT key FROM leases) "
                "ORDER BY last_used ASC"
            ).fetchall()
            for key, size in candidates:
                if excess <= 0:
                    break
                self._delete_entry_file(db, key)
                evicted.append(key)
                excess -= int(size)
        return evicted

    def _delete_entry_file(self, db: sqlite3.Connection, key: str) -> None:
        kind, _, digest = key.partition(":")
        if kind == "chunk":
            self.chunk_path(digest).unlink(missing_ok=True)
        else:
            self.file_path(digest).unlink(missing_ok=True)
            db.execute("DELETE FROM locations WHERE file=?", (digest,))
        db.execute("DELETE FROM entries WHERE key=?", (key,))
