"""Errors of the OpenAI layer; each maps to one HTTP status and OpenAI's error shape."""

from __future__ import annotations

from gpu_nodes.exceptions import GpuNodeError, openai_error_body


class OpenAIError(GpuNodeError):
    """Base: rendered as ``{"error": {"message", "type", "param", "code"}}``."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_body(self) -> dict[str, dict[str, str | None]]:
        return openai_error_body(
            self.message, error_type=self.error_type, param=self.param, code=self.code
        )


class InvalidRequest(OpenAIError):
    """A request field is missing, malformed or out of range (400)."""

    code = "invalid_value"


class ModelNotFound(OpenAIError):
    """The ``model`` field names no model served here (404)."""

    status_code = 404
    code = "model_not_found"


class NotSupported(OpenAIError):
    """The endpoint or feature exists in OpenAI's API but this model cannot serve it (400)."""

    code = "not_supported"


class EngineNotReady(OpenAIError):
    """The engine is still loading or failed to load (503)."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_not_ready"


class EngineUnavailable(GpuNodeError, RuntimeError):
    """The engine kind's runtime (vllm, tensorrt_llm, CUDA) is missing on this node."""


class EngineLoadError(GpuNodeError, RuntimeError):
    """The engine could not be constructed from the package's ``engine:`` section."""
