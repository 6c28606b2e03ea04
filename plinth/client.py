"""Python client of the Plinth management API (`/v1`) and of the gateway's predict paths.

with PlinthClient("http://127.0.0.1:8800", api_key) as client:
    client.upload_archive(info.path, info.sha256)
    created = client.create_deployment("hello", info.sha256, config.to_dict(), promote=True)
    client.wait_for_deployment(created["model_id"], created["deployment"]["id"], timeout=600)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from plinth.archive_upload import UploadSender, put_presigned
from plinth.async_client import AsyncInferenceMixin
from plinth.exceptions import (
    ApiError,
    GatewayTimeoutError,
    PlatformUnreachableError,
    PlinthError,
    WaitTimeoutError,
)

ProgressCallback = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while an archive uploads."""

FINAL_STATUSES = frozenset({"ACTIVE", "FAILED"})
STANDARD_ENVIRONMENTS = frozenset({"production", "development"})
_MAX_ERROR_TEXT = 300
REQUEST_ID_HEADER = "x-request-id"


def _segment(value: str) -> str:
    """One URL path segment: ids come from users, so never let them add path parts."""
    return quote(str(value), safe="")


def environment_path(environment: str | None = None, deployment_id: str | None = None) -> str:
    """The gateway's path part that picks a deployment: 'production', 'environments/staging',
    'deployment/abc12345'."""
    if deployment_id is not None:
        return f"deployment/{_segment(deployment_id)}"
    env = environment or "production"
    if env in STANDARD_ENVIRONMENTS:
        return env
    return f"environments/{_segment(env)}"


def predict_url(
    gateway_url: str,
    model_id: str,
    *,
    environment: str | None = "production",
    deployment_id: str | None = None,
) -> str:
    """Gateway URL of a model's predict endpoint for an environment or one deployment."""
    path = environment_path(environment, deployment_id)
    return f"{gateway_url.rstrip('/')}/models/{_segment(model_id)}/{path}/predict"


def api_error_from_response(response: httpx.Response) -> ApiError:
    """ApiError from an error response: `{"error": {"code", "message"}}`, FastAPI's
    `{"detail": ...}`, or plain text."""
    status = response.status_code
    code = f"HTTP_{status}"
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or code)
        message = str(body["error"].get("message") or message)
    elif isinstance(body, dict) and "detail" in body:
        message = (
            json.dumps(body["detail"]) if not isinstance(body["detail"], str) else body["detail"]
        )
    elif response.text:
        message = response.text[:_MAX_ERROR_TEXT]
    return ApiError(status, code, message, request_id=response.headers.get(REQUEST_ID_HEADER))


def _items(body: Any, key: str) -> list[dict[str, Any]]:
    """A list endpoint's items whether the body is a bare list or `{key: [...]}`."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for candidate in (key, "data", "items"):
            if isinstance(body.get(candidate), list):
                return list(body[candidate])
    raise ApiError(
        200, "UNEXPECTED_RESPONSE", f"expected a list of {key}, got {type(body).__name__}"
    )


class PlinthClient(AsyncInferenceMixin):
    """Synchronous client of one control plane; sends `Authorization: Api-Key <key>`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Api-Key {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlinthClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise PlatformUnreachableError(
                self.base_url, f"timed out ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise PlatformUnreachableError(self.base_url, str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            raise api_error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "INVALID_JSON", "response is not JSON") from exc

    def _error_from(self, response: httpx.Response) -> Exception:
        return api_error_from_response(response)

    def _model_path(self, model_id: str) -> str:
        return f"/v1/models/{_segment(model_id)}"

    def _deployment_path(self, model_id: str, deployment_id: str) -> str:
        return f"{self._model_path(model_id)}/deployments/{_segment(deployment_id)}"

    # -- archives and deployments ------------------------------------------------------------

    def archive_exists(self, sha256: str) -> bool:
        try:
            self._send("HEAD", f"/v1/archives/{_segment(sha256)}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload_archive(
        self, path: Path | str, sha256: str, progress: ProgressCallback | None = None
    ) -> bool:
        """Upload a package archive unless the control plane has it; True when bytes were sent.

        The API plans the upload: straight to the blob store through presigned URLs (one PUT,
        or parts) followed by a complete call that verifies the stored bytes, or through the
        API's own PUT where the store has no URLs to hand out (``plinth up``)."""
        archive = Path(path)
        total = archive.stat().st_size
        plan = self._json("POST", f"/v1/archives/{_segment(sha256)}/uploads", json={"size": total})
        sender = UploadSender(archive, total, progress)
        if plan["mode"] == "stored":
            sender.report(total)
            return False
        if plan["mode"] == "api":
            self._send(
                "PUT",
                f"/v1/archives/{_segment(sha256)}",
                content=sender.chunks(0, total),
                headers={"Content-Type": "application/gzip", "Content-Length": str(total)},
                timeout=self._upload_timeout(),
            )
            return True
        etags: list[str] = []
        timeout = self._upload_timeout()
        if plan["mode"] == "multipart":
            for part in plan["parts"]:
                etags.append(
                    put_presigned(part["url"], sender, part["offset"], part["size"], timeout)
                )
        else:
            put_presigned(str(plan["url"]), sender, 0, total, timeout)
        upload_id = _segment(str(plan["upload_id"]))
        self._json(
            "POST",
            f"/v1/archives/{_segment(sha256)}/uploads/{upload_id}/complete",
            json={"size": total, "multipart_id": plan.get("multipart_id"), "etags": etags},
            timeout=self._upload_timeout(),
        )
        return True

    def _upload_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(max(self.timeout, 300.0))

    def create_deployment(
        self,
        model_name: str,
        archive_sha256: str,
        config: dict[str, Any],
        environment: str | None = None,
        promote: bool = False,
    ) -> dict[str, Any]:
        """POST /v1/deployments → `{"model_id", "deployment"}`."""
        body: dict[str, Any] = {
            "model_name": model_name,
            "archive_sha256": archive_sha256,
            "config": config,
            "promote": promote,
        }
        if environment is not None:
            body["environment"] = environment
        result: dict[str, Any] = self._json("POST", "/v1/deployments", json=body)
        return result

    def list_models(self) -> list[dict[str, Any]]:
        return _items(self._json("GET", "/v1/models"), "models")

    def get_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", self._model_path(model_id))
        return result

    def resolve_model_id(self, model: str) -> str:
        """The id of the model called `model`, where `model` is an id or a model name.

        An id wins over a name; a name shared by no model raises ApiError 404 naming both
        ways of referring to a model."""
        try:
            return str(self.get_model(model).get("id") or model)
        except ApiError as exc:
            if exc.status != 404:
                raise
        matches = [str(item["id"]) for item in self.list_models() if item.get("name") == model]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise PlinthError(
                f"{len(matches)} models are named {model!r}; give one of their ids: "
                + ", ".join(matches)
            )
        raise ApiError(
            404,
            "NOT_FOUND",
            f"no model has the id or the name {model!r} (`plinth models` lists them)",
        )

    def list_deployments(self, model_id: str) -> list[dict[str, Any]]:
        body = self._json("GET", f"{self._model_path(model_id)}/deployments")
        return _items(body, "deployments")

    def get_deployment(self, model_id: str, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", self._deployment_path(model_id, deployment_id))
        return result

    def wait_for_deployment(
        self,
        model_id: str,
        deployment_id: str,
        timeout: float = 900.0,
        poll: float = 1.0,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the deployment is ACTIVE or FAILED; returns it. `on_status` is called on
        every status change. Raises WaitTimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last_status: str | None = None
        while True:
            deployment = self.get_deployment(model_id, deployment_id)
            status = str(deployment.get("status"))
            if status != last_status:
                last_status = status
                if on_status is not None:
                    on_status(deployment)
            if status in FINAL_STATUSES:
                return deployment
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"deployment {deployment_id} is still {status} after {timeout:.0f} s",
                    last_status=status,
                )
            time.sleep(min(poll, remaining))

    def deployment_logs(self, model_id: str, deployment_id: str) -> dict[str, list[Any]]:
        """`{"build": [...], "replicas": [...]}` log lines of a deployment."""
        body = self._json("GET", f"{self._deployment_path(model_id, deployment_id)}/logs")
        if not isinstance(body, dict):
            return {"build": [], "replicas": []}
        return {key: list(body.get(key) or []) for key in ("build", "replicas")}

    def scaling_events(self, model_id: str, deployment_id: str) -> list[dict[str, Any]]:
        """The deployment's scaling history, oldest first: ``at``, ``from_replicas``,
        ``to_replicas``, ``reason``."""
        path = f"{self._deployment_path(model_id, deployment_id)}/scaling_events"
        body = self._json("GET", path)
        events = body.get("scaling_events") if isinstance(body, dict) else None
        return list(events or [])

    def activate(self, model_id: str, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            self._json("POST", f"{self._deployment_path(model_id, deployment_id)}/activate") or {}
        )
        return result

    def deactivate(self, model_id: str, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            self._json("POST", f"{self._deployment_path(model_id, deployment_id)}/deactivate") or {}
        )
        return result

    def delete_deployment(
        self, model_id: str, deployment_id: str, *, force: bool = False
    ) -> dict[str, Any]:
        """Stop and remove a deployment (409 while an environment serves it, unless force)."""
        params = {"force": "true"} if force else {}
        path = self._deployment_path(model_id, deployment_id)
        result: dict[str, Any] = self._json("DELETE", path, params=params) or {}
        return result

    def delete_model(self, model_id: str, *, force: bool = False) -> dict[str, Any]:
        """Remove a model with its deployments and environments (same refusal as above)."""
        params = {"force": "true"} if force else {}
        result: dict[str, Any] = self._json("DELETE", self._model_path(model_id), params=params)
        return result or {}

    def update_autoscaling(
        self, model_id: str, deployment_id: str, **settings: Any
    ) -> dict[str, Any]:
        """PATCH autoscaling settings (min_replica, max_replica, autoscaling_window, ...)."""
        path = f"{self._deployment_path(model_id, deployment_id)}/autoscaling_settings"
        result: dict[str, Any] = self._json("PATCH", path, json=settings) or {}
        return result

    # -- environments --------------------------------------------------------------------------

    def list_environments(self, model_id: str) -> list[dict[str, Any]]:
        body = self._json("GET", f"{self._model_path(model_id)}/environments")
        return _items(body, "environments")

    def get_environment(self, model_id: str, environment: str) -> dict[str, Any]:
        path = f"{self._model_path(model_id)}/environments/{_segment(environment)}"
        result: dict[str, Any] = self._json("GET", path)
        return result

    def create_environment(
        self, model_id: str, name: str, autoscaling_settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if autoscaling_settings is not None:
            body["autoscaling_settings"] = autoscaling_settings
        path = f"{self._model_path(model_id)}/environments"
        result: dict[str, Any] = self._json("POST", path, json=body)
        return result

    def promote(
        self, model_id: str, deployment_id: str, environment: str = "production"
    ) -> dict[str, Any]:
        """Promote a deployment into an environment (409 PROMOTION_IN_PROGRESS if one runs)."""
        path = f"{self._model_path(model_id)}/environments/{_segment(environment)}/promote"
        result: dict[str, Any] = (
            self._json("POST", path, json={"deployment_id": deployment_id}) or {}
        )
        return result

    def gateway_accepts_key(self, gateway_url: str) -> bool:
        """Whether the gateway at ``gateway_url`` answers and knows this client's API key,
        i.e. serves this platform's routing table (it refreshes its table on an unknown key)."""
        url = f"{gateway_url.rstrip('/')}/v1/models"
        try:
            response = httpx.get(url, headers=self._headers, timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def routing_table(self) -> dict[str, Any]:
        """The routing table gateways poll (`version`, `models`, ...)."""
        result: dict[str, Any] = self._json("GET", "/v1/routing") or {}
        return result

    # -- secrets and API keys -------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> dict[str, Any]:
        result: dict[str, Any] = (
            self._json("POST", "/v1/secrets", json={"name": name, "value": value}) or {}
        )
        return result

    def list_secrets(self) -> list[dict[str, Any]]:
        return _items(self._json("GET", "/v1/secrets"), "secrets")

    def delete_secret(self, name: str) -> None:
        self._send("DELETE", f"/v1/secrets/{_segment(name)}")

    def create_api_key(self, name: str) -> dict[str, Any]:
        """Create an API key; the response holds the key itself, shown only this once."""
        result: dict[str, Any] = self._json("POST", "/v1/api_keys", json={"name": name})
        return result

    def list_api_keys(self) -> list[dict[str, Any]]:
        return _items(self._json("GET", "/v1/api_keys"), "api_keys")

    def delete_api_key(self, prefix: str) -> None:
        self._send("DELETE", f"/v1/api_keys/{_segment(prefix)}")

    # -- clusters -------------------------------------------------------------------------------

    def list_clusters(self) -> list[dict[str, Any]]:
        return _items(self._json("GET", "/v1/clusters"), "clusters")

    def get_cluster(self, cluster_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/clusters/{_segment(cluster_id)}")
        return result

    def register_cluster(self, record: dict[str, Any]) -> dict[str, Any]:
        """Register a cluster (the record shape of `GET /v1/clusters/{id}`, without health)."""
        result: dict[str, Any] = self._json("POST", "/v1/clusters", json=record)
        return result

    def update_cluster(self, cluster_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        path = f"/v1/clusters/{_segment(cluster_id)}"
        result: dict[str, Any] = self._json("PATCH", path, json=changes)
        return result

    def cluster_action(self, cluster_id: str, action: str) -> dict[str, Any]:
        """`cordon`, `uncordon`, `drain` or `heartbeat`; returns the cluster's record."""
        path = f"/v1/clusters/{_segment(cluster_id)}/{_segment(action)}"
        result: dict[str, Any] = self._json("POST", path)
        return result

    def remove_cluster(self, cluster_id: str) -> None:
        self._send("DELETE", f"/v1/clusters/{_segment(cluster_id)}")

    def placements(self) -> dict[str, Any]:
        """The reconciler's last placement: `placements` and `cluster_health` changes."""
        result: dict[str, Any] = self._json("GET", "/v1/placements") or {}
        return result

    # -- inference (through the gateway, never the control plane) -------------------------------

    def predict(
        self,
        gateway_url: str,
        model_id: str,
        payload: Any,
        *,
        environment: str | None = "production",
        deployment_id: str | None = None,
        stream: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Call a model's predict endpoint; with `stream=True` returns an iterator of text
        chunks as the model produces them (the response closes when it is exhausted)."""
        url = predict_url(
            gateway_url, model_id, environment=environment, deployment_id=deployment_id
        )
        if stream:
            return self._stream(url, payload, timeout)
        with httpx.Client(headers=self._headers, timeout=timeout or self.timeout) as gateway:
            response = self._gateway_send(gateway, url, payload, timeout or self.timeout)
            try:
                return response.json()
            except ValueError:
                return response.text

    def _gateway_send(
        self, gateway: httpx.Client, url: str, payload: Any, timeout: float
    ) -> httpx.Response:
        try:
            response = gateway.post(url, json=payload)
        except httpx.ReadTimeout as exc:
            raise GatewayTimeoutError(url, timeout) from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise PlatformUnreachableError(url, reason, what="gateway") from exc
        if response.status_code >= 400:
            raise api_error_from_response(response)
        return response

    def _stream(self, url: str, payload: Any, timeout: float | None) -> Iterator[str]:
        limits = httpx.Timeout(timeout or self.timeout)
        with httpx.Client(headers=self._headers, timeout=limits) as gateway:
            try:
                with gateway.stream("POST", url, json=payload) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise api_error_from_response(response)
                    yield from response.iter_text()
            except httpx.ReadTimeout as exc:
                raise GatewayTimeoutError(url, timeout or self.timeout) from exc
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                raise PlatformUnreachableError(url, reason, what="gateway") from exc
