"""Errors raised by the user-facing `plinth` package (spec, archive, client, CLI)."""

from __future__ import annotations


class PlinthError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(PlinthError, ValueError):
    """A package's config.yaml is invalid.

    `line` is the 1-based line in the YAML file (None when the config did not come from a file
    or the place is unknown); `field` is the dotted field path (e.g. "runtime.predict_concurrency").
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        errors: list[ConfigError] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.field = field
        # All problems found, when several were reported at once (this error is the first).
        self.errors: list[ConfigError] = errors if errors is not None else [self]


class ArchiveError(PlinthError):
    """A package archive could not be created or is unsafe to extract.

    `member` names the offending archive entry when there is one.
    """

    def __init__(self, message: str, *, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class ApiError(PlinthError):
    """The control plane answered with an error (`{"error": {"code", "message"}}`)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id  # the X-Request-Id the server answered with, if any


class PlatformUnreachableError(PlinthError):
    """The control plane or gateway could not be reached (connection refused, DNS, timeout)."""

    def __init__(self, url: str, reason: str, *, what: str = "control plane") -> None:
        super().__init__(f"cannot reach {what} at {url}: {reason}")
        self.url = url
        self.reason = reason
        self.what = what


class GatewayTimeoutError(PlinthError):
    """The gateway was reached but no answer came within the client's timeout."""

    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(
            f"no answer from {url} within {timeout_s:g} s (--timeout): the gateway was reached,"
            " the model may still be working"
        )
        self.url = url
        self.timeout_s = timeout_s


class ConfigWarning(UserWarning):
    """A config.yaml problem that is tolerated on load (unknown key, duplicate key) but is an
    error when loading strictly (`plinth push`)."""


class WaitTimeoutError(PlinthError):
    """A deployment did not reach a final status in time."""

    def __init__(self, message: str, *, last_status: str | None = None) -> None:
        super().__init__(message)
        self.last_status = last_status
