"""Metrics port: what the domain tells the platform's metrics, and what a scrape reads.

The domain reports events (a build ended, a reconcile pass decided) and never imports the
metrics library; the Prometheus adapter (``adapters/prometheus_metrics.py``) turns them into
``/metrics``. ``NoMetrics`` is the default, so the domain runs without any adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DeploymentPhase:
    """A deployment's status as one reconcile pass read it."""

    model_id: str
    deployment_id: str
    status: str  # a DeploymentStatus value
    status_changed_at: float  # epoch seconds


@dataclass(frozen=True)
class DeploymentReplicas:
    """Desired and ready replica counts of one deployment, read from the store at scrape time."""

    model_id: str
    deployment_id: str
    desired: int
    ready: int


class PlatformMetrics(Protocol):
    def build_finished(self, seconds: float, outcome: str) -> None:
        """A build ended; ``outcome`` is ``succeeded`` or ``failed``."""
        ...

    def reconciled(self, phases: Sequence[DeploymentPhase], decision_kinds: Sequence[str]) -> None:
        """One reconcile pass: the statuses it read and the kinds of decisions it made."""
        ...

    def replica_cold_start(self, model_id: str, phase_seconds: Mapping[str, float]) -> None:
        """A replica finished starting: seconds per phase (environment, weights, model_load,
        total; a phase the driver cannot see is left out)."""
        ...


class NoMetrics:
    def build_finished(self, seconds: float, outcome: str) -> None:
        pass

    def reconciled(self, phases: Sequence[DeploymentPhase], decision_kinds: Sequence[str]) -> None:
        pass

    def replica_cold_start(self, model_id: str, phase_seconds: Mapping[str, float]) -> None:
        pass
