"""Lambda events as AWS sends them, and an embedded-defaults control plane environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ADMIN_KEY = "plinth-test-admin-key-0123456789"


@pytest.fixture
def plinth_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PLINTH_* for the embedded defaults (SQLite + directory blobs) under a tmp state dir."""
    state = tmp_path / "state"
    for name in ("PLINTH_STORE", "PLINTH_BLOB", "PLINTH_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PLINTH_STATE_DIR", str(state))
    monkeypatch.setenv("PLINTH_CLUSTER", "local")
    monkeypatch.setenv("PLINTH_RUN_BACKGROUND_WORKERS", "false")
    monkeypatch.setenv("PLINTH_BOOTSTRAP_API_KEY", ADMIN_KEY)
    return state


def _http_api_event(
    method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0 (``$default`` route and stage)."""
    raw_body = None if body is None else json.dumps(body)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            **({"content-type": "application/json"} if body is not None else {}),
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1795564800000,
        },
        "body": raw_body,
        "isBase64Encoded": False,
    }


def _sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"receipt-{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:plinth-async-requests",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def admin_key() -> str:
    return ADMIN_KEY


@pytest.fixture
def http_api_event():
    return _http_api_event


@pytest.fixture
def sqs_event():
    return _sqs_event
