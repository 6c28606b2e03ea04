"""Async inference through the Lambda handlers: an API Gateway v2 event queues a request, an
SQS event with the queued message runs it, the webhook reaches a real receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lambdas import api, async_worker


def _receiver() -> tuple[ThreadingHTTPServer, list[tuple[bytes, dict[str, str]]]]:
    received: list[tuple[bytes, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_queue_run_and_webhook_through_the_handlers(
    plinth_env, http_api_event, sqs_event, admin_key, monkeypatch
) -> None:
    with socket.socket() as sock:  # the gateway is down: the request fails with a 503
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("PLINTH_GATEWAY_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS", "true")
    server, received = _receiver()
    handler = api.build_handler()
    platform = handler.app.state.platform
    auth = {"authorization": f"Api-Key {admin_key}"}
    try:
        secret = json.loads(
            handler(http_api_event("POST", "/v1/webhook_secrets", headers=auth), None)["body"]
        )["secret"]
        body = {
            "model_input": {"x": 1},
            "webhook_endpoint": f"http://127.0.0.1:{server.server_address[1]}/hook",
        }
        path = "/v1/models/m1/deployments/d1/async_requests"
        queued = handler(http_api_event("POST", path, headers=auth, body=body), None)
        assert queued["statusCode"] == 201, queued["body"]
        request_id = json.loads(queued["body"])["request_id"]
        message = platform.queue.receive("async-requests-p1")[0]
        monkeypatch.setattr(
            async_worker, "_processor", async_worker.Lazy(async_worker.build_processor)
        )
        assert async_worker.handler(sqs_event(message.body), None) == {"batchItemFailures": []}
        view_event = http_api_event("GET", f"/v1/async_requests/{request_id}", headers=auth)
        view = json.loads(handler(view_event, None)["body"])
        assert (view["status"], view["webhook_status"]) == ("FAILED", "SUCCEEDED")
        raw, headers = received[0]
        expected = "v1=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-baseten-signature"] == expected
        assert json.loads(raw)["errors"][0]["code"] == "MODEL_PREDICT_ERROR"
    finally:
        server.shutdown()
        platform.close()
