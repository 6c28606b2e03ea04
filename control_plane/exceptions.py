"""Errors of the control plane's domain. Each has a stable ``code``.

The HTTP status of each code is decided in one place: ``control_plane.api.errors``.
Ports and adapters raise subclasses of :class:`ControlPlaneError` too, so the domain
catches the plane's base, never an adapter's class.
"""

from __future__ import annotations

from plinth.exceptions import PlinthError


class ControlPlaneError(PlinthError):
    """Base of every error the control plane raises on purpose (plane base)."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(ControlPlaneError):
    """A ``PLINTH_*`` variable has a bad value."""

    code = "SETTINGS"


class NotFound(ControlPlaneError):
    code = "NOT_FOUND"


class ValidationFailed(ControlPlaneError):
    """Input is well-formed but not acceptable (names the field and value)."""

    code = "VALIDATION"


class Conflict(ControlPlaneError):
    code = "CONFLICT"


class PromotionInProgress(Conflict):
    code = "PROMOTION_IN_PROGRESS"


class Unauthorized(ControlPlaneError):
    code = "UNAUTHORIZED"


class ArchiveInvalid(ControlPlaneError):
    code = "ARCHIVE_INVALID"


class HashMismatch(ControlPlaneError):
    code = "HASH_MISMATCH"


class PayloadTooLarge(ControlPlaneError):
    code = "PAYLOAD_TOO_LARGE"


class BuildFailed(ControlPlaneError):
    """Building a deployment's Python environment failed (the environment builder's error);
    ``output_tail`` holds the installer's last lines."""

    code = "BUILD_FAILED"

    def __init__(self, message: str, output_tail: list[str]) -> None:
        super().__init__(message)
        self.output_tail = output_tail


class AdapterUnavailable(ControlPlaneError):
    """The settings ask for an adapter this installation does not have."""

    code = "ADAPTER_UNAVAILABLE"


class RetryLater(ControlPlaneError):
    """An async request's next model attempt is due in ``delay_s``; raised instead of
    sleeping where the worker must not wait (the SQS Lambda): the caller hides the message
    of ``queue`` for that long and reports it as a batch item failure."""

    code = "RETRY_LATER"

    def __init__(self, request_id: str, queue: str, delay_s: float) -> None:
        super().__init__(f"async request {request_id!r}: next attempt in {delay_s:g}s")
        self.queue = queue
        self.delay_s = delay_s
