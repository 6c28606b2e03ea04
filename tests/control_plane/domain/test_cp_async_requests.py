"""Async requests: validation, state changes with conditional writes, retries, webhooks.

Real SQLite store and queue; the model is a scripted invoker (it stands in for a replica,
not for Plinth); webhooks go to a real HTTP receiver on loopback that checks signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from control_plane.adapters.sqlite_queue import SqliteQueue
from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.domain import async_requests as ar
from control_plane.domain.async_processing import (
    AsyncProcessor,
    InvokeResult,
    Outcome,
    WebhookPolicy,
)
from control_plane.domain.async_webhooks import (
    WebhookSecretService,
    check_webhook_target,
    resolve_host,
)
from control_plane.exceptions import Conflict, PayloadTooLarge, ValidationFailed


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """A webhook receiver on loopback: answers the scripted statuses, records raw bodies."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[bytes, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, dict(self.headers)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx

    try:
        return httpx.post(url, content=body, headers=headers, timeout=5).status_code
    except httpx.TransportError as exc:
        raise ConnectionError(str(exc)) from None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    store = SqliteMetadataStore(tmp_path / "db")
    queue = SqliteQueue(tmp_path / "db", clock=clock)
    service = ar.AsyncRequestService(store, queue, clock, result_ttl_s=3600)
    secrets = WebhookSecretService(store, clock, rotation_s=600)
    # Scripted answers; a callable one is called (it may move the clock mid-call).
    answers: list[Any] = []
    calls: list[str] = []

    def invoke(model_id: str, deployment_id: str, request_id: str, model_input: Any):
        calls.append(request_id)
        answer = answers.pop(0) if answers else InvokeResult(200, {"echo": model_input})
        return answer() if callable(answer) else answer

    processor = AsyncProcessor(
        service,
        secrets,
        invoke,
        post,
        webhooks=WebhookPolicy(attempts=3, initial_delay_s=1, allow_private=True),
        resolve=resolve_host,
        clock=clock,
        sleep=clock.sleep,
    )
    return {
        "clock": clock,
        "queue": queue,
        "service": service,
        "secrets": secrets,
        "answers": answers,
        "calls": calls,
        "processor": processor,
        "store": store,
    }


def spec(body: dict[str, Any]) -> ar.AsyncRequestSpec:
    return ar.parse_request(json.dumps(body).encode(), check_webhook=lambda url: None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "model_input"),
        ({"model_input": 1, "priority": 3}, "priority"),
        ({"model_input": 1, "priority": True}, "priority"),
        ({"model_input": 1, "max_time_in_queue_seconds": 9}, "max_time_in_queue_seconds"),
        ({"model_input": 1, "max_time_in_queue_seconds": 259201}, "max_time_in_queue_seconds"),
        ({"model_input": 1, "inference_retry_config": {"max_attempts": 11}}, "max_attempts"),
        ({"model_input": 1, "inference_retry_config": {"max_attempts": 0}}, "max_attempts"),
        ({"model_input": 1, "webhook_endpoint": 5}, "webhook_endpoint"),
        ({"model_input": 1, "surprise": 5}, "surprise"),
    ],
)
def test_bad_fields_are_named(body, field) -> None:
    with pytest.raises(ValidationFailed, match=field):
        spec(body)


def test_defaults_and_payload_limit() -> None:
    parsed = spec({"model_input": {"x": 1}})
    assert (parsed.priority, parsed.max_time_in_queue_seconds) == (1, 600)
    assert parsed.retry.max_attempts == 1
    with pytest.raises(PayloadTooLarge):
        ar.parse_request(b'{"model_input": "' + b"x" * 300_000 + b'"}', check_webhook=print)


@pytest.mark.parametrize(
    ("url", "allow_private", "ok"),
    [
        ("ftp://example.com/x", True, False),
        ("http://169.254.169.254/latest", True, False),
        ("http://[fe80::1]/x", True, False),
        ("http://127.0.0.1:9/x", False, False),
        ("http://10.0.0.1/x", False, False),
        ("http://127.0.0.1:9/x", True, True),
        ("https://8.8.8.8/x", False, True),
    ],
)
def test_webhook_targets(url, allow_private, ok) -> None:
    def resolve(host: str) -> list[str]:
        return [host.strip("[]")]

    if ok:
        check_webhook_target(url, allow_private=allow_private, resolve=resolve)
    else:
        with pytest.raises(ValidationFailed, match="webhook_endpoint"):
            check_webhook_target(url, allow_private=allow_private, resolve=resolve)


def test_retry_backoff_is_exponential_and_capped() -> None:
    config = ar.RetryConfig(max_attempts=5, initial_delay_ms=100, max_delay_ms=350)
    assert [config.delay_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.35, 0.35]


def run_queue(env, priority: int = 1) -> int:
    handled = 0
    for message in env["queue"].receive(ar.queue_name(priority), max_messages=10):
        env["processor"].process(json.loads(message.body)["request_id"])
        env["queue"].ack(ar.queue_name(priority), message.receipt)
        handled += 1
    return handled


def test_success_signs_the_exact_body_and_drops_the_input(env, receiver) -> None:
    secret, _ = env["secrets"].create()
    request_id = env["service"].submit(
        "m1", "d1", spec({"model_input": {"x": 1}, "webhook_endpoint": receiver.url})
    )
    assert env["service"].view(request_id)["status"] == "QUEUED"
    assert run_queue(env) == 1
    view = env["service"].view(request_id)
    assert (view["status"], view["webhook_status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert view["data"] == {"echo": {"x": 1}}
    assert "model_input" not in env["store"].get(ar.ASYNC_REQUESTS, request_id).value
    body, headers = receiver.received[0]
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-BASETEN-SIGNATURE"] == expected
    sent = json.loads(body)
    assert sent["type"] == "async_request_completed"
    assert (sent["request_id"], sent["data"], sent["errors"]) == (
        request_id,
        {"echo": {"x": 1}},
        [],
    )
    # Redelivery of the same message: the model is not called again.
    env["processor"].process(request_id)
    assert env["calls"] == [request_id]


def test_retries_only_retryable_statuses(env) -> None:
    env["answers"].extend([InvokeResult(503, "busy"), InvokeResult(500, "x"), InvokeResult(200, 7)])
    retry = {"max_attempts": 3, "initial_delay_ms": 100}
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "inference_retry_config": retry})
    )
    start = env["clock"].now
    run_queue(env)
    view = env["service"].view(request_id)
    assert (view["status"], view["attempts"], view["data"]) == ("SUCCEEDED", 3, 7)
    assert env["clock"].now - start == pytest.approx(0.3)  # 0.1 then 0.2
    env["answers"].append(InvokeResult(400, {"error": "bad input"}))
    second = env["service"].submit(
        "m", "d", spec({"model_input": 1, "inference_retry_config": retry})
    )
    run_queue(env)
    view = env["service"].view(second)
    assert (view["status"], view["attempts"]) == ("FAILED", 1)
    assert view["errors"][0]["code"] == "MODEL_PREDICT_ERROR"


def test_webhook_down_then_up_logs_every_attempt(env, receiver) -> None:
    receiver.statuses.extend([500, 503])
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "webhook_endpoint": receiver.url})
    )
    run_queue(env)
    view = env["service"].view(request_id)
    assert view["webhook_status"] == "SUCCEEDED"
    assert [d["status_code"] for d in view["webhook_deliveries"]] == [500, 503, 200]
    ids = {headers["X-Plinth-Delivery-Id"] for _, headers in receiver.received}
    assert len(ids) == 1  # one stable id across retries


def test_webhook_down_for_good_keeps_the_result_for_replay(env, receiver) -> None:
    receiver.statuses.extend([500, 500, 500])
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "webhook_endpoint": receiver.url})
    )
    run_queue(env)
    view = env["service"].view(request_id)
    assert (view["status"], view["webhook_status"], view["data"]) == (
        "SUCCEEDED",
        "FAILED",
        {"echo": 1},
    )
    assert env["processor"].replay(request_id)["webhook_status"] == "SUCCEEDED"
    assert len(receiver.received) == 4


def test_cancel_only_while_queued(env) -> None:
    request_id = env["service"].submit("m", "d", spec({"model_input": 1}))
    assert env["service"].cancel(request_id)["status"] == "CANCELED"
    run_queue(env)
    assert env["calls"] == []  # the message was dropped, the model never called
    started = env["service"].submit("m", "d", spec({"model_input": 1}))
    run_queue(env)
    with pytest.raises(Conflict, match="SUCCEEDED"):
        env["service"].cancel(started)


def test_expiry_and_result_window(env) -> None:
    expired = env["service"].submit(
        "m", "d", spec({"model_input": 1, "max_time_in_queue_seconds": 10})
    )
    kept = env["service"].submit("m", "d", spec({"model_input": 2, "priority": 0}))
    run_queue(env, priority=0)
    env["clock"].now += 11
    run_queue(env)
    assert env["service"].view(expired)["status"] == "EXPIRED"
    assert env["calls"] == [kept]
    assert env["service"].view(kept)["data"] == {"echo": 2}
    env["clock"].now += 3600
    assert "data" not in env["service"].view(kept)
    assert env["service"].purge() == 1
    assert env["store"].get(ar.ASYNC_REQUESTS, kept).value["data"] is None


def test_queue_status_counts(env) -> None:
    env["service"].submit("m", "d", spec({"model_input": 1}))
    env["service"].submit("m", "d", spec({"model_input": 1}))
    env["service"].submit("m", "other", spec({"model_input": 1}))
    status = env["service"].queue_status("m", "d")
    assert (status["num_queued_requests"], status["num_in_progress_requests"]) == (2, 0)


def test_rotation_signs_with_both_secrets(env, receiver) -> None:
    old, _ = env["secrets"].create()
    new, _ = env["secrets"].create()
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "webhook_endpoint": receiver.url})
    )
    run_queue(env)
    body, headers = receiver.received[0]
    sigs = headers["X-BASETEN-SIGNATURE"].split(",")
    assert sigs == [
        "v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in (new, old)
    ]
    env["clock"].now += 601
    assert len(env["secrets"].signing_values()) == 1
    assert env["service"].view(request_id)["webhook_status"] == "SUCCEEDED"


BUSY = InvokeResult(429, {"error": "no slot"}, busy=True)


def deliver_once(env, request_id: str) -> Outcome:
    """Take the request's one visible message, process it, ack it (as the worker does)."""
    name = ar.queue_name(1)
    [message] = env["queue"].receive(name)
    assert json.loads(message.body)["request_id"] == request_id
    outcome: Outcome = env["processor"].process(request_id)
    env["queue"].ack(name, message.receipt)
    return outcome


def test_a_full_replica_puts_the_request_back_without_using_attempts(env) -> None:
    """Sync first: a busy replica's 429 requeues the request (QUEUED, a fresh message, no
    attempt); a model's own 429 is an attempt like any retryable status."""
    env["answers"].extend([BUSY] * 3 + [InvokeResult(200, "done")])
    request_id = env["service"].submit("m", "d", spec({"model_input": 1}))
    for _ in range(3):
        assert deliver_once(env, request_id) is Outcome.BUSY
        view = env["service"].view(request_id)
        assert (view["status"], view["attempts"], view["started_at"]) == ("QUEUED", 0, None)
    assert deliver_once(env, request_id) is Outcome.DONE
    view = env["service"].view(request_id)
    assert (view["status"], view["attempts"], view["data"]) == ("SUCCEEDED", 1, "done")
    assert env["queue"].receive(ar.queue_name(1)) == []  # nothing left over
    env["answers"].append(InvokeResult(429, {"error": "model says slow down"}))
    throttled = env["service"].submit("m", "d", spec({"model_input": 1}))
    assert deliver_once(env, throttled) is Outcome.DONE
    view = env["service"].view(throttled)
    assert (view["status"], view["attempts"]) == ("FAILED", 1)


def test_busy_past_the_queue_deadline_expires(env) -> None:
    def busy_while_the_deadline_passes() -> InvokeResult:
        env["clock"].now += 11
        return BUSY

    env["answers"].append(busy_while_the_deadline_passes)
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "max_time_in_queue_seconds": 10})
    )
    assert deliver_once(env, request_id) is Outcome.DONE
    view = env["service"].view(request_id)
    assert (view["status"], view["attempts"]) == ("EXPIRED", 0)
    assert view["errors"][0]["code"] == "EXPIRED"


def test_a_started_request_waits_out_a_busy_replica_in_place(env) -> None:
    """After a failed attempt the request has run: busy answers are waited out, not counted."""
    env["answers"].extend([InvokeResult(503, "down"), BUSY, BUSY, InvokeResult(200, 5)])
    retry = {"max_attempts": 2, "initial_delay_ms": 100}
    request_id = env["service"].submit(
        "m", "d", spec({"model_input": 1, "inference_retry_config": retry})
    )
    assert deliver_once(env, request_id) is Outcome.DONE
    view = env["service"].view(request_id)
    assert (view["status"], view["attempts"], view["data"]) == ("SUCCEEDED", 2, 5)


def test_requeue_delay_doubles_up_to_the_setting(env) -> None:
    """The worker Lambda's setting: each busy round makes the fresh message wait longer."""
    processor = AsyncProcessor(
        env["service"],
        env["secrets"],
        lambda *args: BUSY,
        post,
        webhooks=WebhookPolicy(),
        resolve=resolve_host,
        clock=env["clock"],
        sleep=env["clock"].sleep,
        busy_requeue_max_s=1.5,
    )
    env["processor"] = processor
    request_id = env["service"].submit("m", "d", spec({"model_input": 1}))
    for expected_delay in (0.5, 1.0, 1.5, 1.5):
        assert deliver_once(env, request_id) is Outcome.BUSY
        env["clock"].now += expected_delay - 0.01
        assert env["queue"].receive(ar.queue_name(1), visibility_timeout_s=0) == []
        env["clock"].now += 0.01
