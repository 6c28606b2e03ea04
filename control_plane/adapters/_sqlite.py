"""Shared SQLite connection handling: one connection per thread, WAL, busy timeout.

SQLite connections must not be shared between threads mid-transaction, so each thread
gets its own; the owner object keeps them all to close them in ``close()``.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

# How long a writer waits for another process's write lock before SQLite gives up.
BUSY_TIMEOUT_S = 30.0


class ThreadLocalConnections:
    """Hands each thread its own autocommit connection to one database file."""

    def __init__(self, path: Path, schema: str) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.get().executescript(schema)

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._path} is closed")
            # isolation_level=None: autocommit; explicit BEGIN IMMEDIATE where a
            # read-then-write must be atomic across processes.
            conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._all.append(conn)
        self._local.conn = conn
        return conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
