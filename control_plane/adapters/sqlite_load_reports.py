"""SQLite implementation of :class:`control_plane.ports.load_reports.LoadReportStore`.

One table ``load_reports`` in the metadata database file. Expired rows are deleted by the
writes (one indexed DELETE each), and reads skip rows that expired since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from control_plane.adapters._sqlite import ThreadLocalConnections
from control_plane.ports.load_reports import StoredLoadReport

_SCHEMA = """
CREATE TABLE IF NOT EXISTS load_reports (
    deployment TEXT NOT NULL,
    at REAL NOT NULL,
    gateway TEXT NOT NULL,
    expires_at REAL NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (deployment, at, gateway)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS load_reports_expiry ON load_reports (expires_at);
"""


class SqliteLoadReportStore:
    """Load reports per deployment in a SQLite file (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self._conns = ThreadLocalConnections(Path(path), _SCHEMA)

    def add(
        self,
        deployment_key: str,
        gateway_id: str,
        at: float,
        value: dict[str, Any],
        *,
        expires_at: float,
    ) -> None:
        conn = self._conns.get()
        conn.execute(
            "INSERT OR REPLACE INTO load_reports (deployment, at, gateway, expires_at, value)"
            " VALUES (?, ?, ?, ?, ?)",
            (deployment_key, at, gateway_id, expires_at, json.dumps(value)),
        )
        # Rows that expired a minute before this report (a margin for gateway clocks that run
        # ahead): the table holds about one expiry period of reports.
        conn.execute("DELETE FROM load_reports WHERE expires_at <= ?", (at - 60.0,))

    def recent(self, deployment_key: str, *, since: float, now: float) -> list[StoredLoadReport]:
        rows = (
            self._conns.get()
            .execute(
                "SELECT gateway, at, value FROM load_reports"
                " WHERE deployment = ? AND at >= ? AND expires_at > ? ORDER BY at, gateway",
                (deployment_key, since, now),
            )
            .fetchall()
        )
        return [StoredLoadReport(gateway, at, json.loads(value)) for gateway, at, value in rows]

    def close(self) -> None:
        self._conns.close()
