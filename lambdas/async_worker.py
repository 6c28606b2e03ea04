"""Async worker entry point: SQS batches -> one control plane call per record.

Wired with ``function_response_types=["ReportBatchItemFailures"]``: the handler returns
the ids of the records that failed, so SQS redelivers only those (and moves them to the
DLQ after ``maxReceiveCount``) instead of the whole batch.

A Lambda never sleeps between model attempts: a retryable answer (429/5xx) with attempts
left hides the record's message for the backoff delay and reports it as a failure, so SQS
delivers it again when the next attempt is due. A replica with no slot free of sync
traffic puts the request back in its queue with a fresh message (not a failure).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas._lazy import Lazy
from lambdas.exceptions import InvalidEventError

logger = logging.getLogger(__name__)


class SqsRecord(BaseModel):
    """One record of an SQS event (the fields this worker reads)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message_id: str = Field(alias="messageId", min_length=1)
    body: str
    receipt_handle: str = Field(default="", alias="receiptHandle")
    attributes: dict[str, str] = Field(default_factory=dict)
    event_source: str = Field(default="aws:sqs", alias="eventSource")


class SqsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    records: list[SqsRecord] = Field(alias="Records")


RecordProcessor = Callable[[SqsRecord], None]


def parse_event(event: dict[str, Any]) -> SqsEvent:
    try:
        return SqsEvent.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidEventError(f"not an SQS event: {where}: {first['msg']}") from None


def process_batch(event: dict[str, Any], process_record: RecordProcessor) -> dict[str, Any]:
    """Run ``process_record`` on each record; report the ones that raised."""
    failures = []
    for record in parse_event(event).records:
        try:
            process_record(record)
        except Exception:
            # The body may carry user data; log the id and the error type only.
            logger.exception("async record %s failed", record.message_id)
            failures.append({"itemIdentifier": record.message_id})
    return {"batchItemFailures": failures}


def build_processor() -> RecordProcessor:
    """The control plane's async request processing, over a platform built from the env."""
    import dataclasses

    from control_plane.domain import async_requests
    from control_plane.exceptions import RetryLater
    from control_plane.settings import Settings
    from control_plane.wiring import Platform

    platform = Platform(dataclasses.replace(Settings.from_env(), async_defer_retries=True))

    def process(record: SqsRecord) -> None:
        try:
            async_requests.process_message(platform, record.body)
        except RetryLater as later:
            platform.queue.change_visibility(later.queue, record.receipt_handle, later.delay_s)
            raise

    return process


_processor: Lazy[RecordProcessor] = Lazy(build_processor)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_batch(event, _processor.get())
