"""SQS implementation of :class:`control_plane.ports.queue.Queue`.

Logical queue ``name`` is the SQS queue ``<prefix><name>``; its dead-letter queue is
``<prefix><name>-dlq`` with a redrive policy (``maxReceiveCount``), which is how SQS
moves a message after too many deliveries. Production queues come from ``infra/``;
``create_missing=True`` creates them on first use (development and tests).
SQS takes whole seconds for delays and visibility timeouts: fractions are rounded up.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from control_plane.adapters.exceptions import AdapterError
from control_plane.adapters.sqlite_queue import DLQ_SUFFIX
from control_plane.ports.queue import Message

_SQS_MAX_BATCH = 10
_SQS_MAX_DELAY_S = 900
# Errors SQS returns for a receipt handle of an older delivery: the port ignores those.
_STALE_RECEIPT_CODES = {
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "InvalidParameterValue",
    "AWS.SimpleQueueService.MessageNotInflight",
}


class SqsQueue:
    def __init__(
        self,
        client: Any,
        *,
        queue_prefix: str = "",
        create_missing: bool = False,
        max_receives: int = 5,
    ) -> None:
        self._client = client
        self._prefix = queue_prefix
        self._create_missing = create_missing
        self._max_receives = max_receives
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> SqsQueue:
        import boto3

        return cls(
            boto3.client("sqs", region_name=settings.aws_region),
            queue_prefix=settings.sqs_queue_prefix or "",
        )

    def send(self, queue: str, body: str, *, delay_s: float = 0.0) -> str:
        if not 0 <= delay_s <= _SQS_MAX_DELAY_S:
            raise ValueError(f"delay_s must be within 0..{_SQS_MAX_DELAY_S}, got {delay_s}")
        reply = self._call(
            "send_message",
            queue,
            QueueUrl=self._url(queue),
            MessageBody=body,
            DelaySeconds=math.ceil(delay_s),
        )
        return str(reply["MessageId"])

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float = 30.0
    ) -> list[Message]:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        if visibility_timeout_s < 0:
            raise ValueError(f"visibility_timeout_s must be >= 0, got {visibility_timeout_s}")
        url = self._url(queue)
        messages: list[Message] = []
        while len(messages) < max_messages:
            reply = self._call(
                "receive_message",
                queue,
                QueueUrl=url,
                MaxNumberOfMessages=min(_SQS_MAX_BATCH, max_messages - len(messages)),
                VisibilityTimeout=math.ceil(visibility_timeout_s),
                WaitTimeSeconds=0,  # the port never blocks
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            batch = reply.get("Messages", [])
            messages.extend(
                Message(
                    id=m["MessageId"],
                    body=m["Body"],
                    receipt=m["ReceiptHandle"],
                    receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                )
                for m in batch
            )
            if len(batch) < _SQS_MAX_BATCH:
                break
        return messages

    def ack(self, queue: str, receipt: str) -> None:
        self._call_ignoring_stale(
            "delete_message", queue, QueueUrl=self._url(queue), ReceiptHandle=receipt
        )

    def change_visibility(self, queue: str, receipt: str, timeout_s: float) -> None:
        if timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        self._call_ignoring_stale(
            "change_message_visibility",
            queue,
            QueueUrl=self._url(queue),
            ReceiptHandle=receipt,
            VisibilityTimeout=math.ceil(timeout_s),
        )

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _url(self, queue: str) -> str:
        if not queue:
            raise ValueError("queue name must be a non-empty string")
        with self._lock:
            url = self._urls.get(queue)
        if url is not None:
            return url
        url = self._lookup(queue)
        with self._lock:
            self._urls[queue] = url
        return url

    def _lookup(self, queue: str) -> str:
        from botocore.exceptions import ClientError

        name = self._prefix + queue
        try:
            return str(self._client.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" not in code and "QueueDoesNotExist" not in code:
                raise AdapterError(f"sqs lookup of queue {name!r} failed: {code}") from exc
            if not self._create_missing:
                raise AdapterError(f"sqs queue {name!r} does not exist") from None
        return self._create(name, dead_letter=queue.endswith(DLQ_SUFFIX))

    def _create(self, name: str, *, dead_letter: bool) -> str:
        if dead_letter:
            return str(self._client.create_queue(QueueName=name)["QueueUrl"])
        dlq_url = self._client.create_queue(QueueName=name + DLQ_SUFFIX)["QueueUrl"]
        dlq_arn = self._client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self._max_receives}
        reply = self._client.create_queue(
            QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)}
        )
        return str(reply["QueueUrl"])

    def _call(self, operation: str, queue: str, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self._client, operation)(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise AdapterError(f"sqs {operation} on queue {queue!r} failed: {code}") from exc

    def _call_ignoring_stale(self, operation: str, queue: str, **request: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            getattr(self._client, operation)(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in _STALE_RECEIPT_CODES:
                raise AdapterError(f"sqs {operation} on queue {queue!r} failed: {code}") from exc
