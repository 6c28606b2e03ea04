"""Async inference requests: records, validation, queueing, cancel, expiry, bounded results.

A request is one document in the ``async_requests`` table, keyed by its id. Every status
change is a conditional write on the document's version, so a message delivered twice (the
queue is at-least-once) or two workers racing never run a finished request again: the loser
of the write sees the new status and stops.

Priorities are one queue each (``async-requests-p0`` .. ``-p2``); a worker drains a lower
number first. The message body is only the request id; the input lives in the record and is
deleted as soon as the request finishes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.domain.async_backlog import AsyncBacklog
from control_plane.exceptions import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from control_plane.ports.queue import Queue
from control_plane.ports.store import ABSENT, INDEX_FIELD, Item, MetadataStore, VersionConflict

ASYNC_REQUESTS = "async_requests"
QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, EXPIRED, CANCELED = (
    "QUEUED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "EXPIRED",
    "CANCELED",
)
FINISHED = frozenset({SUCCEEDED, FAILED, EXPIRED, CANCELED})
WEBHOOK_PENDING, WEBHOOK_SUCCEEDED, WEBHOOK_FAILED, NO_WEBHOOK = (
    "PENDING",
    "SUCCEEDED",
    "FAILED",
    "NO_WEBHOOK",
)
PRIORITIES = (0, 1, 2)
DEFAULT_PRIORITY = 1
MIN_QUEUE_S, MAX_QUEUE_S, DEFAULT_QUEUE_S = 10, 259_200, 600
MAX_ATTEMPTS_RANGE = (1, 10)
DEFAULT_PAYLOAD_LIMIT = 256 * 1024
DEFAULT_RESULT_TTL_S = 3600.0
_FIELDS = {
    "model_input",
    "webhook_endpoint",
    "priority",
    "max_time_in_queue_seconds",
    "inference_retry_config",
}
_RETRY_FIELDS = {"max_attempts", "initial_delay_ms", "max_delay_ms"}


def queue_name(priority: int) -> str:
    return f"async-requests-p{priority}"


# Index entries (the store's INDEX_FIELD): open requests by status and deployment, for
# async_queue_status and expiry; finished ones only while their result is kept, for the purge.
def _open_entry(status: str, model_id: str, deployment_id: str) -> str:
    return f"{status}/{model_id}/{deployment_id}/"


_KEPT_ENTRY = "KEPT/"


def index_entry(record: dict[str, Any]) -> str | None:
    status = record["status"]
    if status in (QUEUED, IN_PROGRESS):
        return _open_entry(status, record["model_id"], record["deployment_id"])
    if record.get("data") is not None:
        # Zero-padded expiry time: entries sort (and could be cut) by when they expire.
        return f"{_KEPT_ENTRY}{float(record['result_expires_at']):020.3f}"
    return None


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 1
    initial_delay_ms: int = 1000
    max_delay_ms: int = 5000

    def delay_s(self, failed_attempts: int) -> float:
        """Exponential backoff after ``failed_attempts`` (1, 2, ...), capped at max_delay_ms."""
        delay_ms = self.initial_delay_ms * (2 ** max(0, failed_attempts - 1))
        return min(delay_ms, self.max_delay_ms) / 1000.0


@dataclass(frozen=True)
class AsyncRequestSpec:
    """A validated ``async_predict`` body."""

    model_input: Any
    webhook_endpoint: str | None
    priority: int
    max_time_in_queue_seconds: int
    retry: RetryConfig


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValidationFailed(f"{field}: {value} is outside {low}-{high}")
    return value


def _retry_config(raw: Any) -> RetryConfig:
    if raw is None:
        return RetryConfig()
    if not isinstance(raw, dict):
        raise ValidationFailed(f"inference_retry_config: must be an object, got {raw!r}")
    unknown = sorted(set(raw) - _RETRY_FIELDS)
    if unknown:
        raise ValidationFailed(f"inference_retry_config.{unknown[0]}: unknown field")
    field = "inference_retry_config."
    attempts = _integer(raw.get("max_attempts", 1), field + "max_attempts", *MAX_ATTEMPTS_RANGE)
    initial = _integer(raw.get("initial_delay_ms", 1000), field + "initial_delay_ms", 0, 10_000)
    ceiling = _integer(raw.get("max_delay_ms", 5000), field + "max_delay_ms", 0, 60_000)
    return RetryConfig(attempts, initial, ceiling)


def parse_request(
    body: bytes, *, payload_limit: int = DEFAULT_PAYLOAD_LIMIT, check_webhook: Callable[[str], None]
) -> AsyncRequestSpec:
    """Validate a raw ``async_predict`` body; errors name the field (413 for the size)."""
    if len(body) > payload_limit:
        raise PayloadTooLarge(f"async_predict body of {len(body)} bytes exceeds {payload_limit}")
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"body: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValidationFailed("body: must be a JSON object")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValidationFailed(f"{unknown[0]}: unknown field")
    if "model_input" not in raw:
        raise ValidationFailed("model_input: required")
    webhook = raw.get("webhook_endpoint")
    if webhook is not None:
        if not isinstance(webhook, str) or not webhook:
            raise ValidationFailed(f"webhook_endpoint: must be a URL string, got {webhook!r}")
        check_webhook(webhook)
    return AsyncRequestSpec(
        model_input=raw["model_input"],
        webhook_endpoint=webhook,
        priority=_integer(raw.get("priority", DEFAULT_PRIORITY), "priority", 0, 2),
        max_time_in_queue_seconds=_integer(
            raw.get("max_time_in_queue_seconds", DEFAULT_QUEUE_S),
            "max_time_in_queue_seconds",
            MIN_QUEUE_S,
            MAX_QUEUE_S,
        ),
        retry=_retry_config(raw.get("inference_retry_config")),
    )


def public_view(record: dict[str, Any], now: float) -> dict[str, Any]:
    """The ``GET /async_request/{id}`` body: status, times, and the result while it is kept."""
    view = {
        field: record.get(field)
        for field in (
            "request_id",
            "model_id",
            "deployment_id",
            "status",
            "webhook_status",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
            "errors",
        )
    }
    kept_until = record.get("result_expires_at")
    if "data" in record and kept_until is not None and now < kept_until:
        view["data"] = record["data"]
        view["result_expires_at"] = kept_until
    view["webhook_deliveries"] = record.get("webhook_deliveries", [])
    return view


class AsyncRequestService:
    """State changes of async requests; every one a conditional write."""

    def __init__(
        self,
        store: MetadataStore,
        queue: Queue,
        clock: Callable[[], float],
        *,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self.result_ttl_s = result_ttl_s
        self.backlog = AsyncBacklog(store)  # QUEUED requests per deployment (autoscaler load)

    def submit(self, model_id: str, deployment_id: str, spec: AsyncRequestSpec) -> str:
        now = self._clock()
        request_id = uuid.uuid4().hex
        record = {
            "request_id": request_id,
            "model_id": model_id,
            "deployment_id": deployment_id,
            "status": QUEUED,
            "webhook_status": WEBHOOK_PENDING if spec.webhook_endpoint else NO_WEBHOOK,
            "webhook_endpoint": spec.webhook_endpoint,
            "priority": spec.priority,
            "created_at": now,
            "queue_deadline": now + spec.max_time_in_queue_seconds,
            "retry": vars(spec.retry),
            "model_input": spec.model_input,
            "attempts": 0,
            "errors": [],
            "webhook_deliveries": [],
        }
        self._write(request_id, record, ABSENT)
        self.backlog.add(model_id, deployment_id, request_id, record["queue_deadline"])
        self._queue.send(queue_name(spec.priority), json.dumps({"request_id": request_id}))
        return request_id

    def _write(self, request_id: str, value: dict[str, Any], expected_version: int) -> int:
        """Every write of a record: conditional, with its index entry set to match."""
        value[INDEX_FIELD] = index_entry(value)
        return self._store.put(ASYNC_REQUESTS, request_id, value, expected_version=expected_version)

    def item(self, request_id: str) -> Item:
        item = self._store.get(ASYNC_REQUESTS, request_id)
        if item is None:
            raise NotFound(f"async request {request_id!r} not found")
        return item

    def view(self, request_id: str) -> dict[str, Any]:
        return public_view(self.item(request_id).value, self._clock())

    def cancel(self, request_id: str) -> dict[str, Any]:
        """QUEUED -> CANCELED; 409 once a worker has started it (or it finished)."""
        while True:
            item = self.item(request_id)
            status = item.value["status"]
            if status == CANCELED:
                return public_view(item.value, self._clock())
            if status != QUEUED:
                raise Conflict(f"async request {request_id!r} is {status}; only QUEUED cancels")
            try:
                return self._finish(item, CANCELED, errors=[])
            except VersionConflict:
                continue  # a worker claimed it meanwhile: look again

    def queue_status(self, model_id: str, deployment_id: str) -> dict[str, Any]:
        # Indexed reads of this deployment's open requests only, never the whole table.
        counts = {
            status: len(
                self._store.find(ASYNC_REQUESTS, _open_entry(status, model_id, deployment_id))
            )
            for status in (QUEUED, IN_PROGRESS)
        }
        return {
            "model_id": model_id,
            "deployment_id": deployment_id,
            "num_queued_requests": counts[QUEUED],
            "num_in_progress_requests": counts[IN_PROGRESS],
        }

    def claim(self, request_id: str) -> Item | None:
        """QUEUED (or IN_PROGRESS left by a dead worker) -> IN_PROGRESS; None if finished.

        A request past its queue deadline becomes EXPIRED here instead (its item returned
        with that status, so the caller can still deliver the webhook)."""
        item = self._store.get(ASYNC_REQUESTS, request_id)
        if item is None or item.value["status"] in FINISHED:
            return item
        now = self._clock()
        if item.value["status"] == QUEUED and now >= item.value["queue_deadline"]:
            self.expire(item)
            return self._store.get(ASYNC_REQUESTS, request_id)
        value = {**item.value, "status": IN_PROGRESS, "started_at": now}
        version = self._write(request_id, value, item.version)
        self._left_queue(item)
        return Item(request_id, version, value)

    def expire(self, item: Item) -> None:
        """-> EXPIRED: it never got a slot before its max_time_in_queue_seconds passed."""
        error = {"code": "EXPIRED", "message": "max_time_in_queue_seconds passed in queue"}
        self._finish(item, EXPIRED, errors=[error])

    def requeue(self, item: Item, max_delay_s: float = 0.0) -> None:
        """IN_PROGRESS -> QUEUED before any attempt: the replica had no slot (sync first).

        A fresh message goes to the request's priority queue, visible after a delay that
        doubles with each requeue (from 0.5 s) up to ``max_delay_s``; the caller acks the
        delivery it holds. Sent after the write: a crash in between leaves the old message
        to be redelivered, never a QUEUED request without one."""
        busy_rounds = int(item.value.get("busy_requeues", 0)) + 1
        value = {k: v for k, v in item.value.items() if k != "started_at"}
        value.update(status=QUEUED, busy_requeues=busy_rounds)
        self._write(item.key, value, item.version)
        self.backlog.add(
            value["model_id"], value["deployment_id"], item.key, value["queue_deadline"]
        )
        delay_s = min(0.5 * 2 ** (busy_rounds - 1), max_delay_s)
        body = json.dumps({"request_id": item.key})
        self._queue.send(queue_name(int(value["priority"])), body, delay_s=delay_s)

    def record_attempt(self, item: Item) -> Item:
        value = {**item.value, "attempts": int(item.value["attempts"]) + 1}
        version = self._write(item.key, value, item.version)
        return Item(item.key, version, value)

    def complete(
        self, item: Item, *, data: Any = None, errors: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        """IN_PROGRESS -> SUCCEEDED (no errors) or FAILED; the input is dropped, the result kept."""
        status = FAILED if errors else SUCCEEDED
        return self._finish(item, status, errors=errors or [], data=data)

    def _finish(
        self, item: Item, status: str, *, errors: list[dict[str, str]], data: Any = None
    ) -> dict[str, Any]:
        now = self._clock()
        value = {k: v for k, v in item.value.items() if k != "model_input"}
        value.update(status=status, finished_at=now, errors=errors)
        value["data"] = data
        value["result_expires_at"] = now + self.result_ttl_s
        if status == CANCELED and value["webhook_status"] == WEBHOOK_PENDING:
            value["webhook_status"] = NO_WEBHOOK  # nothing ran: nothing to report
        self._write(item.key, value, item.version)
        self._left_queue(item)
        return public_view(value, now)

    def _left_queue(self, item: Item) -> None:
        """After a write that took ``item`` out of QUEUED: off its deployment's backlog."""
        if item.value["status"] == QUEUED:
            self.backlog.remove(item.value["model_id"], item.value["deployment_id"], item.key)

    def record_webhook(self, request_id: str, delivery: dict[str, Any], status: str) -> None:
        """Append one delivery attempt to the log and set the webhook status."""
        while True:
            item = self.item(request_id)
            value = dict(item.value)
            value["webhook_deliveries"] = [*value.get("webhook_deliveries", []), delivery]
            value["webhook_status"] = status
            try:
                self._write(request_id, value, item.version)
                return
            except VersionConflict:
                continue

    def purge(self) -> int:
        """Drop results past their window and expire queued requests past their deadline."""
        now, changed = self._clock(), 0
        # Indexed: queued requests and kept results only (finished, purged ones are not read).
        candidates = [*self._store.find(ASYNC_REQUESTS, f"{QUEUED}/")]
        candidates += self._store.find(ASYNC_REQUESTS, _KEPT_ENTRY)
        for item in candidates:
            value = item.value
            try:
                if value["status"] == QUEUED and now >= value["queue_deadline"]:
                    error = {"code": "EXPIRED", "message": "max_time_in_queue_seconds passed"}
                    self._finish(item, EXPIRED, errors=[error])
                    changed += 1
                elif value.get("data") is not None and now >= value["result_expires_at"]:
                    kept = {**value, "data": None}
                    self._write(item.key, kept, item.version)
                    changed += 1
            except VersionConflict:
                continue  # someone else changed it; the next purge looks again
        return changed


def process_message(platform: Any, body: str) -> None:
    """One queue message (``{"request_id": ...}``) through ``platform.async_processor``;
    raises so the caller (the SQS Lambda) reports it as a batch item failure."""
    try:
        request_id = json.loads(body)["request_id"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise ValidationFailed('async message body: expected {"request_id": ...}') from None
    platform.async_processor.process(request_id)
