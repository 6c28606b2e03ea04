"""Queue contract: every adapter in QUEUE_FACTORIES must pass these.

Timeouts are whole seconds and waits are short and bounded, so SQS-like backends fit.
"""

from __future__ import annotations

import threading
import time

from control_plane.adapters.sqs_queue import SqsQueue
from control_plane.ports.queue import Message, Queue


def _receive_within(queue: Queue, name: str, timeout_s: float, **kw: float) -> list[Message]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = queue.receive(name, **kw)  # type: ignore[arg-type]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_send_receive_ack(queue: Queue) -> None:
    message_id = queue.send("jobs", '{"a": 1}')
    [msg] = queue.receive("jobs", visibility_timeout_s=30)
    assert (msg.id, msg.body, msg.receive_count) == (message_id, '{"a": 1}', 1)
    assert queue.receive("jobs") == []  # in flight: hidden
    queue.ack("jobs", msg.receipt)
    queue.change_visibility("jobs", msg.receipt, 0)  # stale receipt: ignored
    assert queue.receive("jobs") == []


def test_empty_queue_returns_at_once(queue: Queue) -> None:
    start = time.monotonic()
    assert queue.receive("nothing-here") == []
    assert time.monotonic() - start < 1.0


def test_max_messages(queue: Queue) -> None:
    # The port promises no order (SQS standard queues have none), only each message once.
    ids = [queue.send("q", f"m{i}") for i in range(5)]
    first = queue.receive("q", max_messages=3)
    rest = _receive_within(queue, "q", 5.0, max_messages=10)
    assert len(first) == 3
    assert sorted(m.id for m in first + rest) == sorted(ids)


def test_queues_are_isolated(queue: Queue) -> None:
    queue.send("a", "for-a")
    assert queue.receive("b") == []
    assert [m.body for m in queue.receive("a")] == ["for-a"]


def test_unacked_message_reappears_with_new_receipt(queue: Queue) -> None:
    queue.send("q", "x")
    [first] = queue.receive("q", visibility_timeout_s=1)
    [second] = _receive_within(queue, "q", 5.0, visibility_timeout_s=30)
    assert second.id == first.id and second.receive_count == 2
    assert second.receipt != first.receipt
    queue.ack("q", first.receipt)  # stale: must not delete the live delivery
    queue.change_visibility("q", first.receipt, 0)  # stale: must not un-hide it either
    assert queue.receive("q") == []
    queue.ack("q", second.receipt)
    queue.change_visibility("q", second.receipt, 0)
    assert queue.receive("q") == []


def test_change_visibility_extends(queue: Queue) -> None:
    queue.send("q", "x")
    [msg] = queue.receive("q", visibility_timeout_s=1)
    queue.change_visibility("q", msg.receipt, 30)
    time.sleep(1.3)
    assert queue.receive("q") == []


def test_delay(queue: Queue) -> None:
    queue.send("q", "later", delay_s=1)
    assert queue.receive("q") == []
    got = _receive_within(queue, "q", 5.0)
    assert [m.body for m in got] == ["later"]


def test_dead_letter_after_max_receives(queue: Queue, queue_max_receives: int) -> None:
    message_id = queue.send("work", "poison")
    for attempt in range(1, queue_max_receives + 1):
        [msg] = queue.receive("work")
        assert msg.receive_count == attempt
        queue.change_visibility("work", msg.receipt, 0)
    assert queue.receive("work") == []
    dead = _receive_within(queue, "work-dlq", 5.0)
    assert [(m.id, m.body) for m in dead] == [(message_id, "poison")]


def test_concurrent_consumers_never_share_a_delivery(queue: Queue) -> None:
    total = 40
    for i in range(total):
        queue.send("fanout", str(i))
    seen: list[str] = []
    lock = threading.Lock()

    def consume() -> None:
        idle_until = time.monotonic() + 2.0
        while time.monotonic() < idle_until:
            got = queue.receive("fanout", max_messages=3, visibility_timeout_s=60)
            if not got:
                time.sleep(0.01)
                continue
            with lock:
                seen.extend(m.body for m in got)
            for m in got:
                queue.ack("fanout", m.receipt)

    workers = [threading.Thread(target=consume) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert {int(body) for body in seen} == set(range(total))  # every message was delivered
    if isinstance(queue, SqsQueue):
        # SQS standard queues deliver at least once (and moto's receive is not atomic across
        # threads): a rare duplicate is the service's contract, so consumers are idempotent.
        assert len(seen) < total + total // 4  # rare, not systematic
    else:
        assert sorted(seen, key=int) == [str(i) for i in range(total)]  # and exactly once
