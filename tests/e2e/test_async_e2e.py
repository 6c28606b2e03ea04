"""Async inference end to end on `plinth up`: gateway -> control plane -> queue -> worker
process -> gateway sync path -> replica, and signed webhooks to a real receiver on loopback
that checks every signature against the raw bytes it received."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from plinth.local import LocalPlatform, start_platform
from tests.support.servers import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ASYNC_ENV = {
    # Loopback receivers are allowed only because this setting says so.
    "PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS": "true",
    "PLINTH_ASYNC_WEBHOOK_ATTEMPTS": "3",
    "PLINTH_ASYNC_WEBHOOK_INITIAL_DELAY_S": "0.2",
}


class Receiver:
    """Answers the scripted statuses (then 200); keeps (raw body, headers) of every POST."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[bytes, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_request(self, request_id: str) -> list[tuple[bytes, dict[str, str]]]:
        return [(b, h) for b, h in self.received if json.loads(b)["request_id"] == request_id]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    saved = {name: os.environ.get(name) for name in ASYNC_ENV}
    os.environ.update(ASYNC_ENV)
    try:
        running = start_platform(
            tmp_path_factory.mktemp("async-state"), "127.0.0.1", free_port(), free_port()
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def model(platform: LocalPlatform, cli: Any, api: httpx.Client) -> str:
    cli("push", str(EXAMPLES / "hello"), "--promote")
    models = api.get("/v1/models").json()["models"]
    return str(next(m["id"] for m in models if m["name"] == "hello"))


@pytest.fixture(scope="module")
def secret(api: httpx.Client) -> str:
    created = api.post("/v1/webhook_secrets")
    assert created.status_code == 201, created.text
    value = str(created.json()["secret"])
    listed = api.get("/v1/webhook_secrets").json()["webhook_secrets"]
    assert listed[-1]["secret_id"] == created.json()["secret_id"]
    assert value not in json.dumps(listed)  # shown once, never listed
    return value


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def finished(
    gateway: httpx.Client, request_id: str, webhook: bool = True, timeout: float = 120.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        view = gateway.get(f"/async_request/{request_id}").json()
        done = view["status"] not in ("QUEUED", "IN_PROGRESS")
        settled = not webhook or view["webhook_status"] != "PENDING"
        return view if done and settled else None

    return wait_for(check, timeout)  # type: ignore[no-any-return]


def assert_signed(received: tuple[bytes, dict[str, str]], secret: str) -> dict[str, Any]:
    body, headers = received
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert expected in headers["x-baseten-signature"].split(",")
    return json.loads(body)  # type: ignore[no-any-return]


def submit(gateway: httpx.Client, model: str, **body: Any) -> str:
    resp = gateway.post(f"/models/{model}/production/async_predict", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["request_id"])


def test_success_with_a_signed_webhook(api, gateway, model, secret, receiver) -> None:
    request_id = submit(gateway, model, model_input={"x": 4}, webhook_endpoint=receiver.url)
    view = finished(gateway, request_id)
    assert (view["status"], view["webhook_status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert view["data"]["squared"] == 16
    sent = assert_signed(receiver.for_request(request_id)[0], secret)
    assert sent["type"] == "async_request_completed"
    assert (sent["data"]["doubled"], sent["errors"]) == (8, [])
    assert sent["model_id"] == model
    # The request id reached the replica as its x-request-id (the replica logs it).
    logs = api.get(f"/v1/models/{model}/deployments/{view['deployment_id']}/logs").json()
    assert any(request_id in line for line in logs["replicas"])


def test_bad_fields_and_payload_limit(gateway, model) -> None:
    url = f"/models/{model}/production/async_predict"
    bad = gateway.post(url, json={"model_input": 1, "priority": 7})
    assert bad.status_code == 422 and "priority" in bad.text
    metadata = gateway.post(
        url, json={"model_input": 1, "webhook_endpoint": "http://169.254.169.254/x"}
    )
    assert metadata.status_code == 422 and "webhook_endpoint" in metadata.text
    big = gateway.post(url, json={"model_input": "x" * (300 * 1024)})
    assert big.status_code == 413
    status = gateway.get(f"/models/{model}/production/async_queue_status")
    assert status.status_code == 200 and "num_queued_requests" in status.json()


def test_model_error_is_retried_then_failed(gateway, model, secret, receiver) -> None:
    retry = {"max_attempts": 3, "initial_delay_ms": 50}
    request_id = submit(
        gateway, model, model_input={"y": 1}, webhook_endpoint=receiver.url,
        inference_retry_config=retry,
    )  # fmt: skip
    view = finished(gateway, request_id)
    assert (view["status"], view["attempts"]) == ("FAILED", 3)
    sent = assert_signed(receiver.for_request(request_id)[0], secret)
    assert sent["errors"][0]["code"] == "MODEL_PREDICT_ERROR"


def test_webhook_down_then_up(gateway, model, secret, receiver) -> None:
    receiver.statuses.extend([503, 500])
    request_id = submit(gateway, model, model_input={"x": 2}, webhook_endpoint=receiver.url)
    view = finished(gateway, request_id)
    assert view["webhook_status"] == "SUCCEEDED"
    assert [d["status_code"] for d in view["webhook_deliveries"]] == [503, 500, 200]
    deliveries = receiver.for_request(request_id)
    assert len({h["x-plinth-delivery-id"] for _, h in deliveries}) == 1
    for delivery in deliveries:
        assert_signed(delivery, secret)


def test_webhook_down_for_good_then_replayed(gateway, model, secret, receiver) -> None:
    receiver.statuses.extend([500, 500, 500])
    request_id = submit(gateway, model, model_input={"x": 5}, webhook_endpoint=receiver.url)
    view = finished(gateway, request_id)
    assert (view["status"], view["webhook_status"]) == ("SUCCEEDED", "FAILED")
    assert view["data"]["doubled"] == 10  # the result is kept although the webhook failed
    replayed = gateway.post(f"/async_request/{request_id}/replay_webhook")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["webhook_status"] == "SUCCEEDED"
    assert assert_signed(receiver.for_request(request_id)[-1], secret)["data"]["doubled"] == 10


def paused_worker(platform: LocalPlatform) -> Callable[[], None]:
    """Stop the worker process (SIGSTOP) so requests stay QUEUED; returns the resume."""
    assert platform.async_worker is not None
    pid = platform.async_worker.proc.pid
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


def test_cancel_while_queued_and_409_once_finished(platform, gateway, model) -> None:
    resume = paused_worker(platform)
    try:
        request_id = submit(gateway, model, model_input={"x": 1})
        canceled = gateway.delete(f"/async_request/{request_id}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    finally:
        resume()
    done = submit(gateway, model, model_input={"x": 1})
    assert finished(gateway, done, webhook=False)["status"] == "SUCCEEDED"
    assert gateway.delete(f"/async_request/{done}").status_code == 409
    assert gateway.get(f"/async_request/{request_id}").json()["status"] == "CANCELED"


def test_expiry(platform, gateway, model, receiver) -> None:
    resume = paused_worker(platform)
    try:
        request_id = submit(
            gateway, model, model_input={"x": 1}, max_time_in_queue_seconds=10,
            webhook_endpoint=receiver.url,
        )  # fmt: skip
        time.sleep(10.5)
    finally:
        resume()
    view = finished(gateway, request_id)
    assert view["status"] == "EXPIRED" and view["errors"][0]["code"] == "EXPIRED"
    assert json.loads(receiver.for_request(request_id)[0][0])["errors"][0]["code"] == "EXPIRED"


def test_killed_worker_is_restarted_and_loses_nothing(platform, gateway, model) -> None:
    assert platform.async_worker is not None
    ids = [submit(gateway, model, model_input={"x": n}) for n in range(20)]
    os.kill(platform.async_worker.proc.pid, signal.SIGKILL)
    for n, request_id in enumerate(ids):
        view = finished(gateway, request_id, webhook=False)
        assert (view["status"], view["data"]["x"]) == ("SUCCEEDED", n)
    assert platform.async_worker.restarts >= 1


def test_cli_predict_async_and_the_python_client(platform, cli, model, receiver) -> None:
    queued = json.loads(cli("predict", model, "-d", '{"x": 6}', "--async").stdout)
    done = json.loads(cli("async-requests", "get", queued["request_id"]).stdout)
    assert done["request_id"] == queued["request_id"]
    waited = cli("predict", model, "-d", '{"x": 7}', "--async", "--wait", "--priority", "0")
    assert json.loads(waited.stdout)["data"]["squared"] == 49
    created = json.loads(cli("webhook-secret", "create").stdout)
    assert created["secret"].startswith("whsec_")
    from plinth.client import PlinthClient

    ep = platform.endpoints
    with PlinthClient(ep.control_plane_url, ep.api_key) as client:
        request_id = client.async_predict(
            ep.gateway_url, model, {"model_input": {"x": 8}, "webhook_endpoint": receiver.url}
        )
        view = client.wait_async_request(ep.gateway_url, request_id, timeout=60)
    assert (view["status"], view["data"]["doubled"]) == ("SUCCEEDED", 16)
    assert assert_signed(receiver.for_request(request_id)[0], created["secret"])


FAULT_REQUESTS = int(os.environ.get("PLINTH_ASYNC_FAULT_REQUESTS", "200"))


def test_no_loss_while_the_worker_is_killed_repeatedly(platform, gateway, model, receiver) -> None:
    """Requests submitted while the worker process is SIGKILLed at random points, 3 times:
    every one ends SUCCEEDED with its own answer, and every webhook arrives at least once."""
    import random

    worker = platform.async_worker
    assert worker is not None
    rng = random.Random(11)
    kill_at = sorted(rng.sample(range(FAULT_REQUESTS), 3))
    ids = []
    for n in range(FAULT_REQUESTS):
        ids.append(submit(gateway, model, model_input={"x": n}, webhook_endpoint=receiver.url))
        if n in kill_at:
            time.sleep(rng.random())  # let it be in the middle of something
            os.kill(worker.proc.pid, signal.SIGKILL)
    views = [finished(gateway, request_id) for request_id in ids]
    assert [(v["status"], v["data"]["x"]) for v in views] == [
        ("SUCCEEDED", n) for n in range(FAULT_REQUESTS)
    ]
    delivered = {json.loads(body)["request_id"] for body, _ in receiver.received}
    assert delivered >= set(ids)
    print(
        f"no-loss: {FAULT_REQUESTS} requests, {worker.restarts} worker restarts,"
        f" {len(receiver.received)} webhook deliveries for {len(delivered)} requests"
    )


def test_the_model_class_reads_the_request_id(cli, api, gateway, tmp_path) -> None:
    """A Truss Model whose predict takes ``request`` reads the async request id from it."""
    package = tmp_path / "reqid"
    (package / "model").mkdir(parents=True)
    config = (EXAMPLES / "hello" / "config.yaml").read_text()
    (package / "config.yaml").write_text(config.replace("model_name: hello", "model_name: reqid"))
    (package / "model" / "model.py").write_text(
        "class Model:\n"
        "    def predict(self, model_input, request):\n"
        "        return {'request_id': request.headers.get('x-request-id')}\n"
    )
    cli("push", str(package), "--promote")
    models = api.get("/v1/models").json()["models"]
    model_id = next(m["id"] for m in models if m["name"] == "reqid")
    request_id = submit(gateway, model_id, model_input={})
    assert finished(gateway, request_id, webhook=False)["data"] == {"request_id": request_id}


def restart_control_plane(platform: LocalPlatform) -> None:
    ep = platform.endpoints
    env = dict(
        os.environ,
        **ASYNC_ENV,
        PLINTH_STATE_DIR=str(platform.state_dir),
        PLINTH_HOST="127.0.0.1",
        PLINTH_PORT=str(urlsplit(ep.control_plane_url).port),
        PLINTH_GATEWAY_URL=ep.gateway_url,
        PLINTH_INTERNAL_TOKEN=ep.internal_token,
        PLINTH_BOOTSTRAP_API_KEY=ep.api_key,
    )
    log = (platform.state_dir / "logs" / "control_plane.log").open("ab")
    platform.control_plane = subprocess.Popen(
        [sys.executable, "-m", "control_plane"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(ep.control_plane_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the control plane did not come back")


def test_control_plane_killed_and_restarted_mid_run(platform, model) -> None:
    """Last in this module. Queued work keeps running while the control plane is SIGKILLed
    (the worker needs the state dir and the gateway only); once it is back, every request
    reads SUCCEEDED with its own answer and every webhook has arrived."""
    ep = platform.endpoints
    headers = {"Authorization": f"Api-Key {ep.api_key}"}
    receiver = Receiver()
    with httpx.Client(base_url=ep.gateway_url, headers=headers, timeout=60) as gateway:
        ids = [
            submit(gateway, model, model_input={"x": n}, webhook_endpoint=receiver.url)
            for n in range(FAULT_REQUESTS)
        ]
        platform.control_plane.send_signal(signal.SIGKILL)
        platform.control_plane.wait()
        down = gateway.get(f"/async_request/{ids[0]}")
        assert down.status_code == 502  # the gateway says so; the work goes on
        time.sleep(3)
        restart_control_plane(platform)
        views = [finished(gateway, request_id) for request_id in ids]
    receiver.server.shutdown()
    assert [(v["status"], v["data"]["x"]) for v in views] == [
        ("SUCCEEDED", n) for n in range(FAULT_REQUESTS)
    ]
    assert {json.loads(body)["request_id"] for body, _ in receiver.received} >= set(ids)
