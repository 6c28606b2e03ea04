"""Errors raised by the adapters (beyond the port-level ones in ``control_plane.ports``)."""

from __future__ import annotations

from control_plane.exceptions import BuildFailed, ControlPlaneError


class AdapterError(ControlPlaneError):
    """Base class of every adapter error (the domain catches ``ControlPlaneError``)."""


class InvalidKey(AdapterError, ValueError):
    """A store, queue or blob key that the adapter refuses (names the key and why)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class NotSerializable(AdapterError, TypeError):
    """A metadata value that cannot be stored as JSON."""

    def __init__(self, table: str, key: str, detail: str) -> None:
        super().__init__(f"{table}/{key}: value is not JSON-serialisable ({detail})")
        self.table = table
        self.key = key


class BuildError(AdapterError, BuildFailed):
    """Installing a deployment's requirements failed; ``output_tail`` holds pip's last lines."""


class ClusterError(AdapterError):
    """A cluster driver could not do what was asked."""
