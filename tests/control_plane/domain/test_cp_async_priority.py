"""The worker drains priority 0 before 1 before 2, whatever the order of arrival."""

from __future__ import annotations

import json

from control_plane.adapters.sqlite_queue import SqliteQueue
from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.async_worker import next_message
from control_plane.domain.async_requests import AsyncRequestService, parse_request


def test_lower_priority_number_is_claimed_first(tmp_path) -> None:
    queue = SqliteQueue(tmp_path / "db")
    service = AsyncRequestService(SqliteMetadataStore(tmp_path / "db"), queue, lambda: 100.0)
    submitted = {}
    for priority in (2, 1, 2, 0, 1, 0):
        body = json.dumps({"model_input": priority, "priority": priority}).encode()
        spec = parse_request(body, check_webhook=lambda url: None)
        submitted[service.submit("m", "d", spec)] = priority
    order = []
    while (found := next_message(queue)) is not None:
        name, message = found
        order.append(submitted[json.loads(message.body)["request_id"]])
        queue.ack(name, message.receipt)
    assert order == [0, 0, 1, 1, 2, 2]
