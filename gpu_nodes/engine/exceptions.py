"""Errors raised by the built-in engine."""

from __future__ import annotations

from gpu_nodes.exceptions import GpuNodeError


class EngineError(GpuNodeError):
    """Base class for engine errors."""


class InvalidRequestError(EngineError, ValueError):
    """A request or its sampling parameters are invalid (the OpenAI layer maps this to 400)."""


class ModelLoadError(EngineError):
    """The checkpoint at model_path cannot be loaded (missing files, unsupported architecture)."""


class EngineDeadError(EngineError):
    """The engine's background loop failed; pending and new requests cannot complete."""
