"""SQS batches: per-record processing and partial batch failure reporting."""

from __future__ import annotations

import pytest

from lambdas import async_worker
from lambdas.exceptions import AsyncProcessingUnavailable, InvalidEventError


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


def test_default_processor_fails_records_when_async_processing_is_missing(
    plinth_env, sqs_event, monkeypatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("control_plane.domain.async_requests") is not None:
        pytest.skip("async request processing exists; covered by its own tests")
    processor = async_worker.build_processor()
    with pytest.raises(AsyncProcessingUnavailable):
        processor(async_worker.SqsRecord.model_validate(sqs_event("x")["Records"][0]))
    monkeypatch.setattr(async_worker, "_processor", async_worker.Lazy(lambda: processor))
    result = async_worker.handler(sqs_event("x", "y"), None)
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]
    }
