"""SQLite implementation of :class:`control_plane.ports.store.MetadataStore`.

One table ``items(tbl, key, version, value, idx)``. Every conditional write is a single SQL
statement whose WHERE clause checks the version, so two processes racing on the same
item cannot both win: SQLite serialises writers and the loser's statement matches no row.
``idx`` is the document's ``INDEX_FIELD``, written by the same statement; a partial index on
``(tbl, idx)`` serves ``find`` (files made before it existed get the column on open).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from control_plane.adapters._documents import encode_document, index_of
from control_plane.adapters._sqlite import ThreadLocalConnections
from control_plane.ports.store import ABSENT, Item, VersionConflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    idx TEXT,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
"""
_INDEX = "CREATE INDEX IF NOT EXISTS items_idx ON items (tbl, idx) WHERE idx IS NOT NULL"


class SqliteMetadataStore:
    """Versioned JSON documents in a SQLite file (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self._conns = ThreadLocalConnections(Path(path), _SCHEMA)
        conn = self._conns.get()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(items)")}
        if "idx" not in columns:
            try:
                conn.execute("ALTER TABLE items ADD COLUMN idx TEXT")
            except sqlite3.OperationalError:
                pass  # another process added it first
        conn.execute(_INDEX)

    def get(self, table: str, key: str) -> Item | None:
        row = (
            self._conns.get()
            .execute("SELECT version, value FROM items WHERE tbl = ? AND key = ?", (table, key))
            .fetchone()
        )
        if row is None:
            return None
        return Item(key=key, version=int(row[0]), value=json.loads(row[1]))

    def put(
        self, table: str, key: str, value: dict[str, Any], *, expected_version: int | None = None
    ) -> int:
        encoded = encode_document(table, key, value)
        idx = index_of(table, key, value)
        conn = self._conns.get()
        if expected_version is None:
            row = conn.execute(
                "INSERT INTO items (tbl, key, version, value, idx) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (tbl, key) DO UPDATE "
                "SET version = version + 1, value = excluded.value, idx = excluded.idx "
                "RETURNING version",
                (table, key, encoded, idx),
            ).fetchall()  # exhaust the cursor so the statement (and its write) completes
            return int(row[0][0])
        if expected_version == ABSENT:
            cur = conn.execute(
                "INSERT INTO items (tbl, key, version, value, idx) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (tbl, key) DO NOTHING",
                (table, key, encoded, idx),
            )
            if cur.rowcount != 1:
                raise VersionConflict(table, key)
            return 1
        cur = conn.execute(
            "UPDATE items SET version = version + 1, value = ?, idx = ? "
            "WHERE tbl = ? AND key = ? AND version = ?",
            (encoded, idx, table, key, expected_version),
        )
        if cur.rowcount != 1:
            raise VersionConflict(table, key)
        return expected_version + 1

    def delete(self, table: str, key: str, *, expected_version: int | None = None) -> None:
        conn = self._conns.get()
        if expected_version is None:
            conn.execute("DELETE FROM items WHERE tbl = ? AND key = ?", (table, key))
            return
        if expected_version == ABSENT:
            # "Must not exist": deleting nothing succeeds only if there is nothing.
            if self.get(table, key) is not None:
                raise VersionConflict(table, key)
            return
        cur = conn.execute(
            "DELETE FROM items WHERE tbl = ? AND key = ? AND version = ?",
            (table, key, expected_version),
        )
        if cur.rowcount != 1:
            raise VersionConflict(table, key)

    def scan(self, table: str, *, prefix: str = "") -> list[Item]:
        rows = (
            self._conns.get()
            .execute(
                "SELECT key, version, value FROM items "
                "WHERE tbl = ? AND substr(key, 1, ?) = ? ORDER BY key",
                (table, len(prefix), prefix),
            )
            .fetchall()
        )
        return [Item(key=r[0], version=int(r[1]), value=json.loads(r[2])) for r in rows]

    def find(self, table: str, index_prefix: str) -> list[Item]:
        # A range on idx (not substr) so the partial index is used: prefix <= idx < prefix+max.
        rows = (
            self._conns.get()
            .execute(
                "SELECT key, version, value FROM items "
                "WHERE tbl = ? AND idx IS NOT NULL AND idx >= ? AND idx < ? ORDER BY idx",
                (table, index_prefix, index_prefix + "\U0010ffff"),
            )
            .fetchall()
        )
        return [Item(key=r[0], version=int(r[1]), value=json.loads(r[2])) for r in rows]

    def close(self) -> None:
        self._conns.close()
