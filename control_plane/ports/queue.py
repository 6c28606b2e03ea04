"""Queue port: at-least-once messages with a visibility timeout and a dead-letter queue.

Shaped like SQS: ``receive`` hides messages for ``visibility_timeout_s``; a message not
``ack``-ed reappears; after ``max_receives`` deliveries it moves to ``<queue>-dlq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    id: str
    body: str
    receipt: str  # opaque handle for ack / change_visibility of this delivery
    receive_count: int


class Queue(Protocol):
    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        """Enqueue ``body``; returns the message id."""
        ...

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float = 30.0
    ) -> list[Message]:
        """Up to ``max_messages`` visible messages (never blocks)."""
        ...

    def ack(self, queue: str, receipt: str) -> None:
        """Delete the message of this delivery (stale receipts are ignored)."""
        ...

    def change_visibility(self, queue: str, receipt: str, timeout_s: float) -> None: ...

    def close(self) -> None: ...
