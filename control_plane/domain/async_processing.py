"""Running one async request: claim, call the model with retries, finish, deliver the webhook.

Transport is injected (``Invoker`` calls the deployment through the gateway's sync path,
``Poster`` sends a webhook), so the whole flow runs in tests against real servers and on
Lambda the same way. ``process`` is safe to run for any delivery of a message: a finished
request is never run again, only its pending webhook is retried.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.domain.async_requests import (
    FINISHED,
    WEBHOOK_FAILED,
    WEBHOOK_PENDING,
    WEBHOOK_SUCCEEDED,
    AsyncRequestService,
    RetryConfig,
    queue_name,
)
from control_plane.domain.async_webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    Resolver,
    WebhookSecretService,
    check_webhook_target,
    delivery_id,
    signature,
    webhook_body,
)
from control_plane.exceptions import Conflict, RetryLater, ValidationFailed
from control_plane.ports.store import Item

logger = logging.getLogger(__name__)

# Only these model answers are worth another attempt (busy or transient); a 4xx is final.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Backoff of a worker whose last request found the replica full: short at first, so a freed
# slot is taken soon; capped so other deployments' requests behind it are not held up long.
BUSY_INITIAL_S = 0.05
BUSY_MAX_S = 1.0


def busy_backoff_s(consecutive_busy: int) -> float:
    """Pause after the ``consecutive_busy``-th (1, 2, ...) full-replica answer in a row."""
    return min(BUSY_INITIAL_S * 2 ** max(0, consecutive_busy - 1), BUSY_MAX_S)


@dataclass(frozen=True)
class InvokeResult:
    status_code: int
    body: Any  # parsed JSON, or the text when the replica did not answer JSON
    # The replica refused the call for want of a slot free of sync traffic (sync first):
    # not an attempt, the request goes back to the queue. A model's own 429 is not "busy".
    busy: bool = False


class Outcome(enum.Enum):
    DONE = "done"  # finished (or nothing to do): ack the message
    BUSY = "busy"  # back in the queue, no attempt spent: release the message, back off


# (model_id, deployment_id, request_id, model_input) -> the replica's answer
Invoker = Callable[[str, str, str, Any], InvokeResult]
# (url, body, headers) -> HTTP status; raises OSError when the receiver cannot be reached
Poster = Callable[[str, bytes, dict[str, str]], int]


@dataclass(frozen=True)
class WebhookPolicy:
    attempts: int = 5
    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    allow_private: bool = False


class AsyncProcessor:
    def __init__(
        self,
        service: AsyncRequestService,
        webhook_secrets: WebhookSecretService,
        invoker: Invoker,
        poster: Poster,
        *,
        webhooks: WebhookPolicy,
        resolve: Resolver,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        busy_requeue_max_s: float = 0.0,
        defer_retries: bool = False,
    ) -> None:
        self._service = service
        self._secrets = webhook_secrets
        self._invoke = invoker
        self._post = poster
        self._webhooks = webhooks
        self._resolve = resolve
        self._clock = clock
        self._sleep = sleep
        self._busy_requeue_max_s = busy_requeue_max_s
        # True where the worker must not sleep (the SQS Lambda): RetryLater instead.
        self._defer_retries = defer_retries

    def process(self, request_id: str) -> Outcome:
        """Handle one delivery of ``request_id``'s message (raises to have it redelivered).

        BUSY: the replica had no slot free of sync traffic; the request is QUEUED again with
        a fresh message (so busy rounds never count towards the queue's dead-letter limit),
        and the caller acks this one and backs off."""
        item = self._service.claim(request_id)
        if item is None:
            return Outcome.DONE  # deleted: nothing to do
        if item.value["status"] not in FINISHED and self._run(item) is Outcome.BUSY:
            return Outcome.BUSY
        if self._service.item(request_id).value["webhook_status"] == WEBHOOK_PENDING:
            self.deliver(request_id)
        return Outcome.DONE

    def _run(self, item: Item) -> Outcome:
        retry = RetryConfig(**item.value["retry"])
        value = item.value
        busy = 0
        while True:
            result = self._invoke(
                value["model_id"], value["deployment_id"], item.key, value["model_input"]
            )
            if result.busy and int(item.value["attempts"]) == 0:
                return self._not_started(item)
            if result.busy:
                # A retry (the model failed before) met a full replica: the request has
                # started, so it waits; a busy answer is never an attempt.
                busy += 1
                self._wait(item, busy_backoff_s(busy))
                continue
            item = self._service.record_attempt(item)
            attempts = int(item.value["attempts"])
            if 200 <= result.status_code < 300:
                self._service.complete(item, data=result.body)
                return Outcome.DONE
            if result.status_code not in RETRYABLE_STATUSES or attempts >= retry.max_attempts:
                message = f"the model answered {result.status_code} after {attempts} attempt(s)"
                error = {"code": "MODEL_PREDICT_ERROR", "message": message}
                self._service.complete(item, data=result.body, errors=[error])
                return Outcome.DONE
            self._wait(item, retry.delay_s(attempts))

    def _not_started(self, item: Item) -> Outcome:
        """Sync first: a request still waiting for its first slot is still queued. Past its
        queue deadline it expires like any request that never left the queue."""
        if self._clock() < item.value["queue_deadline"]:
            self._service.requeue(item, self._busy_requeue_max_s)
            return Outcome.BUSY
        self._service.expire(item)
        return Outcome.DONE

    def _wait(self, item: Item, delay_s: float) -> None:
        if self._defer_retries:
            # The record keeps its attempts; the redelivery's claim picks the request up.
            raise RetryLater(item.key, queue_name(int(item.value["priority"])), delay_s)
        self._sleep(delay_s)

    def deliver(self, request_id: str) -> str:
        """Send the webhook with retries; log every attempt; return the final webhook status."""
        record = self._service.item(request_id).value
        url = record.get("webhook_endpoint")
        if not url:
            raise Conflict(f"async request {request_id!r} has no webhook_endpoint")
        body = webhook_body(record, self._clock())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_ID_HEADER: delivery_id(request_id),
        }
        signed_with = self._secrets.signing_values()
        if signed_with:
            headers[SIGNATURE_HEADER] = signature(body, signed_with)
        policy = self._webhooks
        for attempt in range(1, policy.attempts + 1):
            outcome = self._attempt(url, body, headers)
            ok = isinstance(outcome, int) and 200 <= outcome < 300
            last = ok or attempt == policy.attempts
            status = WEBHOOK_SUCCEEDED if ok else (WEBHOOK_FAILED if last else WEBHOOK_PENDING)
            entry = {
                "delivery_id": headers[DELIVERY_ID_HEADER],
                "attempt": attempt,
                "at": self._clock(),
                "status_code": outcome if isinstance(outcome, int) else None,
                "error": outcome if isinstance(outcome, str) else None,
            }
            self._service.record_webhook(request_id, entry, status)
            if last:
                return status
            self._sleep(min(policy.initial_delay_s * 2 ** (attempt - 1), policy.max_delay_s))
        return WEBHOOK_FAILED

    def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> int | str:
        """The receiver's status code, or why it could not be reached (no URL in the text)."""
        try:
            check_webhook_target(
                url, allow_private=self._webhooks.allow_private, resolve=self._resolve
            )
        except ValidationFailed as exc:
            return exc.message
        try:
            return self._post(url, body, headers)
        except OSError as exc:
            return f"{type(exc).__name__}: receiver unreachable"

    def replay(self, request_id: str) -> dict[str, Any]:
        """Re-send a finished request's kept result to its webhook."""
        view = self._service.view(request_id)
        if view["status"] not in FINISHED:
            raise Conflict(f"async request {request_id!r} is {view['status']}; not finished yet")
        if "data" not in view and view["status"] == "SUCCEEDED":
            raise Conflict(f"async request {request_id!r}: its result is no longer kept")
        self.deliver(request_id)
        return self._service.view(request_id)
