"""Async inference through the Lambda handlers on AWS's services (a moto server on loopback):
the API handler (API Gateway v2 events) queues requests into DynamoDB + the priority SQS queue;
the messages moto's SQS hands out become the worker handler's SQS event; the worker calls a
real gateway on loopback (with the API key it reads from Secrets Manager), which forwards to
a real replica; the signed webhook reaches a real receiver. A model answering 503 with
attempts left is a batch item failure whose message SQS delivers again after the backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.adapters.dynamodb_store import create_table_request
from gpu_nodes.model_server.testing import ModelServerProcess, write_package
from lambdas import api, async_worker
from tests.support.cloud import moto_server
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

REGION = "us-east-1"
PREFIX = "plinth-"
WORKER_KEY = "pk-async-worker-0123456789abcdef"
MODEL = """
from fastapi import HTTPException

class Model:
    def predict(self, model_input):
        if model_input.get("fail"):
            raise HTTPException(status_code=503, detail="overloaded")
        return {"doubled": 2 * model_input["x"]}
"""


@dataclass
class Aws:
    endpoint: str
    sqs: Any
    dynamodb: Any
    table: str


def _create_queues(sqs: Any) -> None:
    """The three priority queues and their DLQs, named as infra/control_plane.py names them."""
    for priority in (0, 1, 2):
        name = f"{PREFIX}async-requests-p{priority}"
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 15}
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})


@pytest.fixture
def aws(plinth_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    import boto3

    with moto_server() as endpoint:
        table = f"metadata-{uuid.uuid4().hex[:8]}"
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PLINTH_STORE": "dynamodb",
            "PLINTH_DYNAMODB_TABLE": table,
            "PLINTH_QUEUE": "sqs",
            "PLINTH_SQS_QUEUE_PREFIX": PREFIX,
            "PLINTH_AWS_REGION": REGION,
            "PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS": "true",
            "PLINTH_ASYNC_WEBHOOK_ATTEMPTS": "1",
        }.items():
            monkeypatch.setenv(name, value)
        # The worker's key: in Secrets Manager, as infra stores it; only its ARN in the env.
        secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
        arn = secrets.create_secret(Name="plinth-async-api-key", SecretString=WORKER_KEY)["ARN"]
        monkeypatch.setenv("PLINTH_ASYNC_API_KEY_SECRET_ARN", arn)
        monkeypatch.delenv("PLINTH_ASYNC_API_KEY", raising=False)
        dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        dynamodb.create_table(**create_table_request(table))
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
        _create_queues(sqs)
        yield Aws(endpoint, sqs, dynamodb, table)


@pytest.fixture
def gateway_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real replica behind a real gateway, which serves a routing table from its cache file
    (the gateway's own restart path; no control plane needed on this side)."""
    package = write_package(tmp_path / "pkg", MODEL, {"model_name": "doubler"})
    replica = ModelServerProcess(package, log_path=tmp_path / "replica.log")
    replica_route = {"id": "r-0", "url": replica.url, "ready": True}
    table = {
        "version": 1,
        "api_key_hashes": [hashlib.sha256(WORKER_KEY.encode()).hexdigest()],
        "models": {
            "m1": {
                "name": "doubler",
                "environments": {"production": "d1"},
                "deployments": {"d1": {"status": "ACTIVE", "replicas": [replica_route]}},
            }
        },
    }
    cache = tmp_path / "routing.json"
    cache.write_text(json.dumps(table))
    port = free_port()
    command = [sys.executable, "-m", "gpu_nodes.gateway", "--port", str(port)]
    command += [
        "--control-plane-url",
        f"http://127.0.0.1:{free_port()}",
        "--cache-file",
        str(cache),
    ]
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    url = f"http://127.0.0.1:{port}"
    try:
        replica.wait_ready()
        _wait_healthy(url)
        monkeypatch.setenv("PLINTH_GATEWAY_URL", url)
        yield url
    finally:
        gateway.terminate()
        gateway.wait(10)
        replica.stop()


def _wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json().get("ok"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not serve its cached routing table")


def _receiver() -> tuple[ThreadingHTTPServer, list[bytes], list[dict[str, str]]]:
    bodies: list[bytes] = []
    headers: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            headers.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, bodies, headers


def _sqs_event(aws: Aws, queue: str) -> dict[str, Any]:
    """What the event source mapping would hand the worker: the queue's visible messages."""
    url = aws.sqs.get_queue_url(QueueName=PREFIX + queue)["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    messages = aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=120
    ).get("Messages", [])
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn["Attributes"]["QueueArn"],
            "awsRegion": REGION,
        }
        for m in messages
    ]
    return {"Records": records}


def test_the_async_flow_through_the_lambda_handlers_on_moto(
    aws: Aws, gateway_url: str, http_api_event: Any, admin_key: str, monkeypatch: Any
) -> None:
    server, bodies, headers = _receiver()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    handler = api.build_handler()
    monkeypatch.setattr(async_worker, "_processor", async_worker.Lazy(async_worker.build_processor))
    auth = {"authorization": f"Api-Key {admin_key}"}
    try:
        created = handler(http_api_event("POST", "/v1/webhook_secrets", headers=auth), None)
        secret = json.loads(created["body"])["secret"]
        path = "/v1/models/m1/deployments/d1/async_requests"
        ids = {}
        retry = {"max_attempts": 2, "initial_delay_ms": 1000}
        for name, model_input in (("ok", {"x": 4}), ("flaky", {"fail": True})):
            body = {"model_input": model_input, "webhook_endpoint": hook}
            if name == "flaky":
                body["inference_retry_config"] = retry
            queued = handler(http_api_event("POST", path, headers=auth, body=body), None)
            assert queued["statusCode"] == 201, queued["body"]
            ids[name] = json.loads(queued["body"])["request_id"]

        event = _sqs_event(aws, "async-requests-p1")
        by_request = {json.loads(r["body"])["request_id"]: r for r in event["Records"]}
        assert set(by_request) == set(ids.values())
        # The 503 has an attempt left: only its record fails, and comes back after 1 s.
        failures = async_worker.handler(event, None)["batchItemFailures"]
        assert failures == [{"itemIdentifier": by_request[ids["flaky"]]["messageId"]}]
        ok = _stored(aws, ids["ok"])
        assert (ok["status"], ok["webhook_status"], ok["data"]) == (
            "SUCCEEDED", "SUCCEEDED", {"doubled": 8},
        )  # fmt: skip
        assert _stored(aws, ids["flaky"])["attempts"] == 1
        assert _sqs_event(aws, "async-requests-p1")["Records"] == []  # hidden for the backoff
        time.sleep(1.5)
        again = _sqs_event(aws, "async-requests-p1")
        assert [json.loads(r["body"])["request_id"] for r in again["Records"]] == [ids["flaky"]]
        assert async_worker.handler(again, None) == {"batchItemFailures": []}
        flaky = _stored(aws, ids["flaky"])
        assert (flaky["status"], flaky["attempts"]) == ("FAILED", 2)
        assert flaky["errors"][0]["code"] == "MODEL_PREDICT_ERROR"

        view = handler(http_api_event("GET", f"/v1/async_requests/{ids['ok']}", headers=auth), None)
        assert json.loads(view["body"])["status"] == "SUCCEEDED"
        sent = {json.loads(b)["request_id"]: (b, h) for b, h in zip(bodies, headers, strict=True)}
        assert set(sent) == set(ids.values())
        for raw, received in sent.values():
            expected = "v1=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            assert received["x-baseten-signature"] == expected
        assert json.loads(sent[ids["ok"]][0])["data"] == {"doubled": 8}
    finally:
        server.shutdown()
        handler.app.state.platform.close()


def _stored(aws: Aws, request_id: str) -> dict[str, Any]:
    """The request's record as DynamoDB holds it (the store's own table layout)."""
    key = {"tbl": {"S": "async_requests"}, "key": {"S": request_id}}
    item = aws.dynamodb.get_item(TableName=aws.table, Key=key, ConsistentRead=True)["Item"]
    return json.loads(item["value"]["S"])  # type: ignore[no-any-return]
