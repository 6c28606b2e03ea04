"""Async inference calls of :class:`plinth.client.PlinthClient` (through the gateway), and
the webhook secret (through the control plane). Baseten's paths and bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from plinth.exceptions import PlatformUnreachableError

_FINAL = frozenset({"SUCCEEDED", "FAILED", "EXPIRED", "CANCELED"})


class AsyncInferenceMixin:
    """Mixed into PlinthClient: uses its headers, timeout, error mapping and /v1 transport."""

    _headers: dict[str, str]
    timeout: float

    # PlinthClient's own: /v1 transport, and its error mapping of a gateway answer.
    def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def _error_from(self, response: httpx.Response) -> Exception:
        raise NotImplementedError("PlinthClient maps error answers")

    def _gateway_json(self, method: str, url: str, body: Any = None) -> Any:
        try:
            with httpx.Client(headers=self._headers, timeout=self.timeout) as gateway:
                response = gateway.request(method, url, json=body)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise PlatformUnreachableError(url, reason, what="gateway") from exc
        if response.status_code >= 400:
            raise self._error_from(response)
        return response.json()

    def async_predict(
        self, gateway_url: str, model_id: str, body: dict[str, Any], *, path: str = "production"
    ) -> str:
        """Queue ``body`` (``{model_input, webhook_endpoint, priority, ...}``); the request id.

        ``path`` picks the deployment: 'production', 'environments/x', 'deployment/id'."""
        url = f"{gateway_url.rstrip('/')}/models/{quote(model_id, safe='')}/{path}/async_predict"
        return str(self._gateway_json("POST", url, body)["request_id"])

    def async_request(self, gateway_url: str, request_id: str) -> dict[str, Any]:
        url = f"{gateway_url.rstrip('/')}/async_request/{quote(request_id, safe='')}"
        return self._gateway_json("GET", url)  # type: ignore[no-any-return]

    def cancel_async_request(self, gateway_url: str, request_id: str) -> dict[str, Any]:
        url = f"{gateway_url.rstrip('/')}/async_request/{quote(request_id, safe='')}"
        return self._gateway_json("DELETE", url)  # type: ignore[no-any-return]

    def replay_async_webhook(self, gateway_url: str, request_id: str) -> dict[str, Any]:
        base = f"{gateway_url.rstrip('/')}/async_request/{quote(request_id, safe='')}"
        return self._gateway_json("POST", base + "/replay_webhook")  # type: ignore[no-any-return]

    def wait_async_request(
        self, gateway_url: str, request_id: str, *, timeout: float = 300.0, poll_s: float = 0.5
    ) -> dict[str, Any]:
        """Poll until the request is finished and its webhook settled (or ``timeout``)."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            view = self.async_request(gateway_url, request_id)
            settled = view.get("webhook_status") != "PENDING"
            if (view["status"] in _FINAL and settled) or time.monotonic() >= deadline:
                return view
            time.sleep(poll_s)

    def create_webhook_secret(self) -> dict[str, Any]:
        """A new webhook signing secret; its value is in this answer only."""
        return self._json("POST", "/v1/webhook_secrets")  # type: ignore[no-any-return]
