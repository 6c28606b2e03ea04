"""Reconciler policy: desired replicas + observed replica phases -> actions.

Pure: ``decide(state, observation, now)`` returns decisions and the next state; the loop
in ``reconciler`` applies them. Tested tick by tick with a fake clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control_plane.domain.records import DeploymentStatus
from control_plane.ports.cluster import ReplicaPhase


@dataclass(frozen=True)
class DeploymentObservation:
    model_id: str
    deployment_id: str
    status: DeploymentStatus
    desired_replicas: int
    status_changed_at: float
    target_environment: str | None
    replica_phases: tuple[ReplicaPhase, ...] = ()
    replica_messages: tuple[str, ...] = ()
    # Set while the deployment drains after a promotion replaced it (see environments.py).
    retire_at: float | None = None
    # The record's current status_message (loading progress is refreshed while it changes).
    status_message: str = ""

    @property
    def key(self) -> str:
        return f"{self.model_id}/{self.deployment_id}"


@dataclass(frozen=True)
class Observation:
    deployments: tuple[DeploymentObservation, ...]


@dataclass(frozen=True)
class ReconcilerState:
    # Replica count last sent to the driver per deployment key; empty after a restart,
    # so the first tick re-sends every desired count (drivers treat it as idempotent).
    applied: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Scale:
    model_id: str
    deployment_id: str
    replicas: int


@dataclass(frozen=True)
class SetStatus:
    model_id: str
    deployment_id: str
    status: DeploymentStatus
    message: str = ""


@dataclass(frozen=True)
class CompletePromotion:
    model_id: str
    deployment_id: str


@dataclass(frozen=True)
class AbandonPromotion:
    model_id: str
    deployment_id: str


@dataclass(frozen=True)
class Retire:
    """The drain is over: scale the replaced deployment to zero (the applier re-checks that
    no environment took it back meanwhile; the scale-down follows on the next tick)."""

    model_id: str
    deployment_id: str


Decision = Scale | SetStatus | CompletePromotion | AbandonPromotion | Retire


@dataclass(frozen=True)
class ReconcilerPolicy:
    # No READY replica this long after the last status change (DEPLOYING, LOADING_MODEL) -> FAILED.
    load_timeout_s: float = 900.0

    def decide(
        self, state: ReconcilerState, observation: Observation, now: float
    ) -> tuple[list[Decision], ReconcilerState]:
        decisions: list[Decision] = []
        applied: dict[str, int] = {}
        for dep in observation.deployments:
            dep_decisions, replicas = self._decide_one(state, dep, now)
            decisions.extend(dep_decisions)
            if replicas is not None:
                applied[dep.key] = replicas
        return decisions, ReconcilerState(applied=applied)

    def _decide_one(
        self, state: ReconcilerState, dep: DeploymentObservation, now: float
    ) -> tuple[list[Decision], int | None]:
        if dep.status == DeploymentStatus.BUILDING:
            return [], None
        if dep.status == DeploymentStatus.FAILED:
            return _stop_failed(state, dep) + _retire_if_due(dep, now), 0
        status, message = self._next_status(dep, now)
        desired = 0 if status == DeploymentStatus.FAILED else dep.desired_replicas
        status_change: list[Decision] = []
        progress_changed = (
            status == DeploymentStatus.LOADING_MODEL and message != dep.status_message
        )
        if status != dep.status or progress_changed:
            status_change.append(SetStatus(dep.model_id, dep.deployment_id, status, message))
        scale: list[Decision] = []
        if state.applied.get(dep.key) != desired:
            scale.append(Scale(dep.model_id, dep.deployment_id, desired))
        # A FAILED deployment's status (and replica logs) are saved before it is stopped.
        failing = status == DeploymentStatus.FAILED
        decisions = status_change + scale if failing else scale + status_change
        if dep.target_environment is not None:
            if status == DeploymentStatus.ACTIVE:
                decisions.append(CompletePromotion(dep.model_id, dep.deployment_id))
            elif status == DeploymentStatus.FAILED:
                decisions.append(AbandonPromotion(dep.model_id, dep.deployment_id))
        else:
            decisions.extend(_retire_if_due(dep, now))
        return decisions, desired

    def _next_status(self, dep: DeploymentObservation, now: float) -> tuple[DeploymentStatus, str]:
        phases = dep.replica_phases
        if dep.desired_replicas == 0:
            return DeploymentStatus.INACTIVE, ""
        if ReplicaPhase.READY in phases:
            return DeploymentStatus.ACTIVE, ""
        if dep.status in (DeploymentStatus.ACTIVE, DeploymentStatus.UNHEALTHY):
            return DeploymentStatus.UNHEALTHY, "no replica is ready"
        if phases and all(p == ReplicaPhase.FAILED for p in phases):
            detail = next((m for m in dep.replica_messages if m), "replica failed")
            return DeploymentStatus.FAILED, f"model failed to load: {detail}"
        waiting = dep.status if dep.status != DeploymentStatus.INACTIVE else None
        if waiting is not None and now - dep.status_changed_at > self.load_timeout_s:
            return (
                DeploymentStatus.FAILED,
                f"no replica became ready within {self.load_timeout_s:.0f} s",
            )
        if ReplicaPhase.LOADING in phases:
            # e.g. "fetching weights 120/512 MB" from a replica still fetching weights.
            loading = zip(phases, dep.replica_messages, strict=False)
            progress = next((m for p, m in loading if p == ReplicaPhase.LOADING and m), "")
            return DeploymentStatus.LOADING_MODEL, progress
        if dep.status == DeploymentStatus.LOADING_MODEL:
            return DeploymentStatus.LOADING_MODEL, ""
        return DeploymentStatus.DEPLOYING, ""


def _retire_if_due(dep: DeploymentObservation, now: float) -> list[Decision]:
    if dep.retire_at is None or now < dep.retire_at:
        return []
    return [Retire(dep.model_id, dep.deployment_id)]


def _stop_failed(state: ReconcilerState, dep: DeploymentObservation) -> list[Decision]:
    decisions: list[Decision] = []
    has_replicas = any(p != ReplicaPhase.STOPPED for p in dep.replica_phases)
    if state.applied.get(dep.key) != 0 and has_replicas:
        decisions.append(Scale(dep.model_id, dep.deployment_id, 0))
    if dep.target_environment is not None:
        decisions.append(AbandonPromotion(dep.model_id, dep.deployment_id))
    return decisions
