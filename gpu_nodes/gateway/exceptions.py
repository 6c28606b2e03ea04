"""Gateway errors: each knows its HTTP status and stable code, and renders in two shapes.

Plinth's shape ``{"error": {"code", "message"}}`` for inference paths and OpenAI's
``{"error": {"message", "type", "param", "code"}}`` for the OpenAI-compatible paths.
"""

from __future__ import annotations

from typing import Any

from gpu_nodes.exceptions import GpuNodeError, openai_error_body


class GatewayError(GpuNodeError):
    status_code = 500
    code = "INTERNAL"
    openai_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def response_headers(self) -> dict[str, str]:
        """Extra headers of the error response (e.g. ``Retry-After``)."""
        return {}

    def body(self, *, openai: bool = False) -> dict[str, Any]:
        if openai:
            kind = "invalid_request_error" if self.status_code < 500 else "server_error"
            return openai_error_body(
                self.message,
                error_type=kind,
                param=self.param,
                code=self.openai_code or self.code.lower(),
            )
        return {"error": {"code": self.code, "message": self.message}}


class BadRequestError(GatewayError):
    status_code = 400
    code = "BAD_REQUEST"


class UnauthorizedError(GatewayError):
    status_code = 401
    code = "UNAUTHORIZED"  # the control plane's code for the same failure
    openai_code = "invalid_api_key"


class NotFoundError(GatewayError):
    status_code = 404
    code = "NOT_FOUND"


class ModelNotFoundError(NotFoundError):
    openai_code = "model_not_found"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    code = "METHOD_NOT_ALLOWED"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class NotImplementedYetError(GatewayError):
    status_code = 501
    code = "NOT_IMPLEMENTED"


class UpstreamError(GatewayError):
    status_code = 502
    code = "UPSTREAM_ERROR"


class NoReplicaError(GatewayError):
    status_code = 503
    code = "NO_REPLICA_AVAILABLE"


class ParkingBoundError(NoReplicaError):
    """A request parked past ``park_timeout_s``: the caller may retry after ``Retry-After``.

    The body names the bound that was hit (``bound``, the setting's name, and its ``limit``),
    so a client can tell a slow cold start from an overflowing queue.
    """

    bound = "park_timeout_s"

    def __init__(self, message: str, *, limit: float, retry_after_s: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

    def body(self, *, openai: bool = False) -> dict[str, Any]:
        body = super().body(openai=openai)
        body["error"].update(bound=self.bound, limit=self.limit)
        return body


class ParkedQueueFullError(ParkingBoundError):
    """The deployment already has ``max_parked_requests`` parked: refused without parking."""

    code = "PARKED_QUEUE_FULL"
    bound = "max_parked_requests"


class RoutingUnavailableError(GatewayError):
    status_code = 503
    code = "ROUTING_TABLE_UNAVAILABLE"


class WakeFailedError(GatewayError):
    status_code = 503
    code = "WAKE_FAILED"


class NoClusterAvailableError(GatewayError):
    """Multi-cluster: no healthy cluster allowed by the deployment's residency can serve it."""

    status_code = 503
    code = "NO_CLUSTER_AVAILABLE"


class ClusterUnreachableError(GatewayError):
    """Another cluster's gateway refused the connection (the request was not sent)."""

    status_code = 502
    code = "CLUSTER_UNREACHABLE"
