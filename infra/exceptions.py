"""Errors raised by the Pulumi components and stack programs (before anything is created)."""

from __future__ import annotations

from plinth.exceptions import PlinthError


class InfraError(PlinthError):
    """Base class of every infra error."""


class InfraConfigError(InfraError, ValueError):
    """Component args or stack config are invalid; the message names the field and value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PolicyViolationError(InfraError):
    """Raised by ``policies.enforce`` when recorded resources break a rule."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("policy violations:\n  " + "\n  ".join(violations))
        self.violations = violations
