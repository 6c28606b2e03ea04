"""Errors of the model server.

``InputError`` is the one users raise from their own Model code to say "bad request":
the server answers with its ``status_code`` (400 by default) instead of a 500.
"""

from __future__ import annotations

from gpu_nodes.exceptions import GpuNodeError


class ModelServerError(GpuNodeError):
    """Base class of every model server error."""


class PackageError(ModelServerError):
    """The package directory is unusable (missing config.yaml, missing model file or class)."""


class WeightsFetchError(PackageError):
    """The deployment's mirrored weights (``PLINTH_WEIGHTS_*``) could not be fetched."""


class SecretNotFoundError(ModelServerError, KeyError):
    """A secret the model asked for is not declared, or declared but not provided."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.message


class InputError(ModelServerError):
    """Raised by user code (or the server) when the request input is invalid: answered as 4xx."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class ResultNotSerializableError(ModelServerError):
    """predict/postprocess returned something that cannot be encoded as JSON."""


class PredictTimeoutError(ModelServerError):
    """A predict request ran past ``runtime.predict_timeout``: answered 504."""


class ReplicaBusyError(ModelServerError):
    """An async call found no predict_concurrency slot free of sync traffic: answered 429."""
