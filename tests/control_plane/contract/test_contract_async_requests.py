"""Async request processing on every metadata store and queue adapter (SQLite, and DynamoDB
and SQS on a moto server): the conditional writes and the queue carry the same guarantees."""

from __future__ import annotations

import json
from typing import Any

from control_plane.domain.async_processing import AsyncProcessor, InvokeResult, WebhookPolicy
from control_plane.domain.async_requests import AsyncRequestService, parse_request, queue_name
from control_plane.domain.async_webhooks import WebhookSecretService


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
