"""SQS batches: per-record processing and partial batch failure reporting."""

from __future__ import annotations

import pytest

from lambdas import async_worker
from lambdas.exceptions import InvalidEventError


def test_only_failed_records_are_reported(sqs_event) -> None:
    seen = []

    def process(record: async_worker.SqsRecord) -> None:
        seen.append(record.body)
        if record.body == "bad":
            raise ValueError("cannot process")

    result = async_worker.process_batch(sqs_event("a", "bad", "c"), process)
    assert seen == ["a", "bad", "c"]  # one failure does not stop the batch
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}


def test_all_good_batch_reports_no_failures(sqs_event) -> None:
    assert async_worker.process_batch(sqs_event("a", "b"), lambda record: None) == {
        "batchItemFailures": []
    }


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        ({}, "Records"),
        ({"Records": [{"body": "x"}]}, "messageId"),
        ({"Records": "nope"}, "Records"),
    ],
)
def test_malformed_event_is_rejected_with_the_field(event, needle) -> None:
    with pytest.raises(InvalidEventError, match=needle):
        async_worker.process_batch(event, lambda record: None)


def test_default_processor_runs_requests_through_the_domain(
    plinth_env, sqs_event, monkeypatch
) -> None:
    """Records go through control_plane.domain.async_requests: a request whose gateway does
    not answer ends FAILED (503 is retried up to max_attempts), a malformed body is a batch
    item failure, and a redelivered record never runs a finished request again."""
    import json
    import socket

    from control_plane.domain.async_requests import parse_request
    from control_plane.settings import Settings
    from control_plane.wiring import Platform

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PLINTH_GATEWAY_URL", f"http://127.0.0.1:{port}")
    platform = Platform(Settings.from_env())
    body = json.dumps({"model_input": 1, "inference_retry_config": {"initial_delay_ms": 0}})
    spec = parse_request(body.encode(), check_webhook=lambda url: None)
    request_id = platform.async_requests.submit("m1", "d1", spec)
    message = json.dumps({"request_id": request_id})
    monkeypatch.setattr(async_worker, "_processor", async_worker.Lazy(async_worker.build_processor))
    result = async_worker.handler(sqs_event(message, "not json", message), None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    view = platform.async_requests.view(request_id)
    assert (view["status"], view["attempts"]) == ("FAILED", 1)
    assert "503" in view["errors"][0]["message"]
    platform.close()
