"""HTTP transport of async requests: the gateway's sync predict path, and webhook POSTs.

The worker calls a deployment exactly as a sync caller does (through the gateway), so async
work is picked, balanced and counted like sync work and meets the same replica limits. Its
calls carry ``ASYNC_WORK_HEADER``, so a replica with no slot free of sync traffic answers 429
with ``REPLICA_BUSY_HEADER`` at once instead of queueing it (sync first).
"""

from __future__ import annotations

from typing import Any

import httpx

from control_plane.domain.async_processing import InvokeResult
from plinth.contracts.async_work import ASYNC_WORK_HEADER, REPLICA_BUSY_HEADER

REQUEST_ID_HEADER = "x-request-id"
_PREDICT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
_WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class GatewayInvoker:
    def __init__(self, gateway_url: str, api_key: str | None) -> None:
        self._base = gateway_url.rstrip("/")
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=_PREDICT_TIMEOUT, trust_env=False)

    def __call__(
        self, model_id: str, deployment_id: str, request_id: str, model_input: Any
    ) -> InvokeResult:
        url = f"{self._base}/models/{model_id}/deployment/{deployment_id}/predict"
        headers = {**self._headers, REQUEST_ID_HEADER: request_id, ASYNC_WORK_HEADER: "1"}
        try:
            response = self._client.post(url, json=model_input, headers=headers)
        except httpx.TransportError as exc:
            # The gateway is restarting or unreachable: as transient as a 503 from it.
            return InvokeResult(503, f"gateway unreachable: {type(exc).__name__}")
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        busy = response.status_code == 429 and REPLICA_BUSY_HEADER in response.headers
        return InvokeResult(response.status_code, body, busy=busy)


def post_webhook(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST the exact signed bytes; redirects are not followed (the target was validated)."""
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=_WEBHOOK_TIMEOUT, trust_env=False
        )
    except httpx.TransportError as exc:
        raise ConnectionError(f"webhook receiver unreachable: {type(exc).__name__}") from None
    return response.status_code
