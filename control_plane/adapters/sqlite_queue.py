"""SQLite implementation of :class:`control_plane.ports.queue.Queue` (SQS-shaped).

A message row carries the time it becomes visible and the receipt of its latest
delivery. ``receive`` runs under ``BEGIN IMMEDIATE`` so two consumers (threads or
processes) never get the same delivery. A message already delivered ``max_receives``
times moves to ``<queue>-dlq`` instead of being delivered again, as SQS's redrive does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from control_plane.adapters._sqlite import ThreadLocalConnections
from control_plane.ports.queue import Message

DLQ_SUFFIX = "-dlq"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages (receipt);
"""


class SqliteQueue:
    """Named queues in one SQLite file; ``clock`` is wall time (shared across processes)."""

    def __init__(
        self, path: Path, *, max_receives: int = 5, clock: Callable[[], float] = time.time
    ) -> None:
        if max_receives < 1:
            raise ValueError(f"max_receives must be at least 1, got {max_receives}")
        self._conns = ThreadLocalConnections(Path(path), _SCHEMA)
        self._max_receives = max_receives
        self._clock = clock

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        _check_queue_name(queue)
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        message_id = uuid.uuid4().hex
        self._conns.get().execute(
            "INSERT INTO queue_messages (queue, id, body, visible_at) VALUES (?, ?, ?, ?)",
            (queue, message_id, body, self._clock() + delay_s),
        )
        return message_id

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float = 30.0
    ) -> list[Message]:
        _check_queue_name(queue)
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if visibility_timeout_s < 0:
            raise ValueError(f"visibility_timeout_s must be >= 0, got {visibility_timeout_s}")
        conn = self._conns.get()
        conn.execute("BEGIN IMMEDIATE")
        try:
            delivered = self._deliver(queue, max_messages, visibility_timeout_s)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return delivered

    def _deliver(self, queue: str, max_messages: int, visibility_timeout_s: float) -> list[Message]:
        conn = self._conns.get()
        now = self._clock()
        redrive = not queue.endswith(DLQ_SUFFIX)
        delivered: list[Message] = []
        # Rows handled in this call; with a zero visibility timeout they would match again.
        touched: set[int] = set()
        while len(delivered) < max_messages:
            rows = conn.execute(
                "SELECT seq, id, body, receive_count FROM queue_messages "
                "WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?",
                (queue, now, max_messages - len(delivered) + len(touched)),
            ).fetchall()
            fresh = [row for row in rows if row[0] not in touched]
            if not fresh:
                break
            for seq, message_id, body, count in fresh:
                touched.add(seq)
                if redrive and count >= self._max_receives:
                    self._move_to_dlq(queue, seq, now)
                    continue
                receipt = f"{message_id}.{uuid.uuid4().hex}"
                conn.execute(
                    "UPDATE queue_messages SET receive_count = ?, receipt = ?, visible_at = ? "
                    "WHERE seq = ?",
                    (count + 1, receipt, now + visibility_timeout_s, seq),
                )
                delivered.append(Message(message_id, body, receipt, count + 1))
                if len(delivered) == max_messages:
                    break
        return delivered

    def _move_to_dlq(self, queue: str, seq: int, now: float) -> None:
        self._conns.get().execute(
            "UPDATE queue_messages SET queue = ?, receive_count = 0, receipt = NULL, "
            "visible_at = ? WHERE seq = ?",
            (queue + DLQ_SUFFIX, now, seq),
        )

    def ack(self, queue: str, receipt: str) -> None:
        self._conns.get().execute(
            "DELETE FROM queue_messages WHERE queue = ? AND receipt = ?", (queue, receipt)
        )

    def change_visibility(self, queue: str, receipt: str, timeout_s: float) -> None:
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        self._conns.get().execute(
            "UPDATE queue_messages SET visible_at = ? WHERE queue = ? AND receipt = ?",
            (self._clock() + timeout_s, queue, receipt),
        )

    def depth(self, queue: str) -> int:
        """Messages in ``queue``, visible or not (for metrics and tests)."""
        row = (
            self._conns.get()
            .execute("SELECT COUNT(*) FROM queue_messages WHERE queue = ?", (queue,))
            .fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        self._conns.close()


def _check_queue_name(queue: str) -> None:
    if not queue or not isinstance(queue, str):
        raise ValueError(f"queue name must be a non-empty string, got {queue!r}")
