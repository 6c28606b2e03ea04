"""Async request processing on every metadata store and queue adapter (SQLite, and DynamoDB
and SQS on a moto server): the conditional writes and the queue carry the same guarantees."""

from __future__ import annotations

import json
from typing import Any

from control_plane.domain.async_processing import AsyncProcessor, InvokeResult, WebhookPolicy
from control_plane.domain.async_requests import (
    ASYNC_REQUESTS,
    AsyncRequestService,
    parse_request,
    queue_name,
)
from control_plane.domain.async_webhooks import WebhookSecretService
from control_plane.ports.store import Item, MetadataStore


def test_submit_process_redeliver_and_cancel(metadata_store, queue) -> None:
    clock = [1000.0]
    service = AsyncRequestService(metadata_store, queue, lambda: clock[0])
    calls: list[Any] = []

    def invoke(model_id: str, deployment_id: str, request_id: str, model_input: Any):
        calls.append(model_input)
        return InvokeResult(200, {"doubled": 2 * model_input})

    processor = AsyncProcessor(
        service,
        WebhookSecretService(metadata_store, lambda: clock[0], rotation_s=60),
        invoke,
        lambda url, body, headers: 200,
        webhooks=WebhookPolicy(),
        resolve=lambda host: ["127.0.0.1"],
        clock=lambda: clock[0],
        sleep=lambda s: None,
    )
    spec = parse_request(b'{"model_input": 21, "priority": 0}', check_webhook=print)
    request_id = service.submit("m", "d", spec)
    canceled = service.submit("m", "d", spec)
    assert service.cancel(canceled)["status"] == "CANCELED"
    messages = queue.receive(queue_name(0), max_messages=10, visibility_timeout_s=0)
    assert len(messages) == 2
    for message in messages:  # each delivered twice: the request still runs once
        processor.process(json.loads(message.body)["request_id"])
        processor.process(json.loads(message.body)["request_id"])
    assert calls == [21]
    view = service.view(request_id)
    assert (view["status"], view["data"], view["webhook_status"]) == (
        "SUCCEEDED",
        {"doubled": 42},
        "NO_WEBHOOK",
    )
    assert service.view(canceled)["status"] == "CANCELED"


class TableScanRefused:
    """The adapter under test, refusing to read the whole async_requests table."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.get, self.put, self.delete = store.get, store.put, store.delete
        self.find, self.close = store.find, store.close

    def scan(self, table: str, *, prefix: str = "") -> list[Item]:
        if table == ASYNC_REQUESTS:
            raise AssertionError("async_requests was scanned: it must be read by index")
        return self._store.scan(table, prefix=prefix)


def test_queue_status_and_purge_read_the_index_not_the_table(metadata_store, queue) -> None:
    clock = [1000.0]
    service = AsyncRequestService(
        TableScanRefused(metadata_store), queue, lambda: clock[0], result_ttl_s=60
    )
    spec = parse_request(b'{"model_input": 1}', check_webhook=print)
    ids = [service.submit("m", "d", spec) for _ in range(3)]
    service.submit("m", "other", spec)

    def counts() -> tuple[int, int]:
        status = service.queue_status("m", "d")
        return status["num_queued_requests"], status["num_in_progress_requests"]

    assert counts() == (3, 0)
    claimed = service.claim(ids[0])
    assert claimed is not None and counts() == (2, 1)
    second = service.claim(ids[1])
    assert second is not None and counts() == (1, 2)
    service.requeue(second)  # a full replica: back in the queue
    assert counts() == (2, 1)
    service.complete(claimed, data={"ok": 1})
    assert counts() == (2, 0)
    clock[0] += 61  # past the result window, not yet past the queue deadline (600 s)
    assert service.purge() == 1 and service.view(ids[0]).get("data") is None
    clock[0] += 600
    assert service.purge() == 3  # the three still queued (both deployments) expire
    assert counts() == (0, 0)
    assert service.view(ids[1])["status"] == "EXPIRED"
