"""Errors of the AWS Lambda entry points."""

from __future__ import annotations

from plinth.exceptions import PlinthError


class LambdaError(PlinthError):
    """Base class of lambda entry point errors (plane base)."""


class InvalidEventError(LambdaError, ValueError):
    """The event does not have the shape this handler is wired to (names the problem)."""


class AsyncProcessingUnavailable(LambdaError):
    """The control plane has no async request processing to hand SQS records to."""
