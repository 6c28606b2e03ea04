"""SQLite implementation of :class:`control_plane.ports.store.MetadataStore`.

One table ``items(tbl, key, version, value)``. Every conditional write is a single SQL
statement whose WHERE clause checks the version, so two processes racing on the same
item cannot both win: SQLite serialises writers and the loser's statement matches no row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from control_plane.adapters._documents import encode_document
from control_plane.adapters._sqlite import ThreadLocalConnections
from control_plane.ports.store import ABSENT, Item, VersionConflict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
"""


class SqliteMetadataStore:
    """Versioned JSON documents in a SQLite file (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self._conns = ThreadLocalConnections(Path(path), _SCHEMA)

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
        conn = self._conns.get()
        if expected_version is None:
            row = conn.execute(
                "INSERT INTO items (tbl, key, version, value) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (tbl, key) DO UPDATE "
                "SET version = version + 1, value = excluded.value "
                "RETURNING version",
                (table, key, encoded),
            ).fetchall()  # exhaust the cursor so the statement (and its write) completes
            return int(row[0][0])
        if expected_version == ABSENT:
            cur = conn.execute(
                "INSERT INTO items (tbl, key, version, value) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (tbl, key) DO NOTHING",
                (table, key, encoded),
            )
            if cur.rowcount != 1:
                raise VersionConflict(table, key)
            return 1
        cur = conn.execute(
            "UPDATE items SET version = version + 1, value = ? "
            "WHERE tbl = ? AND key = ? AND version = ?",
            (encoded, table, key, expected_version),
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

    def close(self) -> None:
        self._conns.close()
