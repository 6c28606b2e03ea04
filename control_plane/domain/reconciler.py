"""The reconciler: applies the reconciler policy (observe the store and the cluster, decide, act).

One ``tick`` is one pass (the scheduled Lambda runs exactly one); ``run`` repeats it
every ``interval_s`` until stopped. Observed replicas are written to the store, which
is where the routing table reads them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from control_plane.domain import lifecycle
from control_plane.domain.autoscaler import Autoscaler
from control_plane.domain.build_log import BuildLogWriter
from control_plane.domain.cluster_fleet import ClusterFleet
from control_plane.domain.cold_starts import ColdStartRecorder
from control_plane.domain.environments import EnvironmentService
from control_plane.domain.package import replica_spec_for
from control_plane.domain.placement_recorder import PlacementRecorder
from control_plane.domain.placement_types import PlaceReplicas
from control_plane.domain.reconcile_policy import (
    AbandonPromotion,
    CompletePromotion,
    Decision,
    DeploymentObservation,
    Observation,
    ReconcilerPolicy,
    ReconcilerState,
    Retire,
    Scale,
    SetStatus,
)
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.domain.repository import Repository
from control_plane.domain.secrets import SecretService
from control_plane.exceptions import NotFound
from control_plane.ports.blob import BlobStore
from control_plane.ports.cluster import ClusterDriver, ReplicaPhase, ReplicaSpec, ReplicaState
from control_plane.ports.metrics import DeploymentPhase, NoMetrics, PlatformMetrics
from plinth.contracts.replica_env import WeightsDelivery

logger = logging.getLogger(__name__)

_FAILURE_LOG_LINES = 60


class Reconciler:
    def __init__(
        self,
        repo: Repository,
        driver: ClusterDriver,
        environments: EnvironmentService,
        secrets: SecretService,
        blobs: BlobStore,
        policy: ReconcilerPolicy,
        clock: Callable[[], float],
        *,
        weights: WeightsDelivery | None = None,
        metrics: PlatformMetrics | None = None,
        placement: PlacementRecorder | None = None,
        autoscaler: Autoscaler | None = None,
        fleet: ClusterFleet | None = None,
    ) -> None:
        self._repo = repo
        # Set: each registered cluster has its own driver, and the placement drives them.
        self._fleet = fleet
        self._metrics = metrics or NoMetrics()
        self._autoscaler = autoscaler  # None: counts change only by the API
        self._driver = driver
        self._weights = weights  # where replicas fetch mirrored weights
        self._environments = environments
        self._secrets = secrets
        self._blobs = blobs
        self._policy = policy
        self._clock = clock
        self._state = ReconcilerState()
        self._published: dict[str, list[dict[str, Any]]] = {}
        self._tick_lock = threading.Lock()
        self._placement = placement  # records placement over registered clusters
        self._cold_starts = ColdStartRecorder(repo.store, clock, self._metrics)

    def tick(self) -> list[Decision]:
        """One reconcile pass; returns the decisions it applied."""
        with self._tick_lock:
            deployments = {d.key: d for d in self._repo.list_deployments()}
            if self._fleet is not None:
                self._fleet.round([d.id for d in deployments.values()])
            observed = {
                key: self._observe_replicas(dep)
                for key, dep in deployments.items()
                if dep.status != DeploymentStatus.BUILDING
            }
            if self._autoscaler is not None:
                # The load's new counts first, so this same tick scales the cluster to them.
                deployments.update(self._autoscaler.tick(deployments, observed))
            observation = Observation(
                tuple(_observation(dep, observed.get(key, [])) for key, dep in deployments.items())
            )
            decisions, self._state = self._policy.decide(self._state, observation, self._clock())
            for decision in decisions:
                key = f"{decision.model_id}/{decision.deployment_id}"
                try:
                    self._apply(decision, deployments[key])
                except Exception:
                    logger.exception("reconciler: applying %s failed", decision)
                    self._forget(key)  # re-decide it next tick
            self._publish(observed)
            self._metrics.reconciled(
                [_phase(dep) for dep in deployments.values()],
                [_decision_kind(decision) for decision in decisions],
            )
            self._record_placement(list(deployments.values()), observed)
            self._cold_starts.record(deployments, observed)
            return decisions

    def run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("reconciler tick failed")
            stop.wait(interval_s)

    def _record_placement(
        self, deployments: list[DeploymentRecord], observed: dict[str, list[ReplicaState]]
    ) -> None:
        if self._placement is None:
            return
        try:
            if self._fleet is None:
                self._placement.tick(deployments, observed)
                return
            # The policy's counts (0 for a FAILED deployment), spread by the placement.
            decisions = self._placement.tick(deployments, observed, desired=self._state.applied)
        except Exception:  # recording placement must never stall reconciling replicas
            logger.exception("reconciler: placement over the registered clusters failed")
            return
        by_key = {dep.key: dep for dep in deployments}
        placed = [d for d in decisions if isinstance(d, PlaceReplicas)]
        for decision in placed:
            self._place(decision, by_key[f"{decision.model_id}/{decision.deployment_id}"])
        if placed and self._fleet is not None:
            self._fleet.apply()  # this tick, not the next: a Lambda tick has no next

    def _place(self, decision: PlaceReplicas, dep: DeploymentRecord) -> None:
        if self._fleet is None:
            return
        try:
            spec = replica_spec_for(dep, self._secrets.values_for, weights=self._weights)
        except Exception:
            logger.exception("reconciler: cannot build the replica spec of %s", dep.id)
            return
        self._fleet.place(decision.cluster_id, spec, decision.replicas)

    def _observe_replicas(self, dep: DeploymentRecord) -> list[ReplicaState]:
        try:
            return self._driver.replicas(dep.id)
        except Exception:
            logger.exception("reconciler: cannot observe replicas of %s", dep.id)
            return []

    def _apply(self, decision: Decision, observed: DeploymentRecord) -> None:
        if isinstance(decision, Scale):
            self._scale(decision)
        elif isinstance(decision, SetStatus):
            self._set_status(decision, observed)
        elif isinstance(decision, CompletePromotion):
            self._environments.complete_pending(decision.model_id, decision.deployment_id)
        elif isinstance(decision, AbandonPromotion):
            self._environments.abandon_pending(decision.model_id, decision.deployment_id)
        elif isinstance(decision, Retire):
            self._environments.retire_due(decision.model_id, decision.deployment_id)

    def _scale(self, decision: Scale) -> None:
        if self._fleet is not None:
            return  # the placement spreads the policy's count over the clusters
        dep = self._repo.get_deployment(decision.model_id, decision.deployment_id)
        spec = replica_spec_for(dep, self._secrets.values_for, weights=self._weights)
        self._driver.scale(spec, decision.replicas)
        if decision.replicas > 0:
            self._undo_if_deleted(spec)

    def _undo_if_deleted(self, spec: ReplicaSpec) -> None:
        """Stop what we just started when the deployment was deleted meanwhile.

        A deletion marks the record (no replicas), scales to zero and removes the record; a
        tick that read the record before the mark may scale up after that zero, and with the
        record gone no later tick would ever see those replicas. Checking after our own
        scale closes the window: either the deletion's zero comes after our scale, or this
        check sees its mark.
        """
        try:
            dep = self._repo.get_deployment(spec.model_id, spec.deployment_id)
        except NotFound:
            dep = None
        if dep is None or dep.desired_replicas == 0:
            logger.info("reconciler: %s was deleted or stopped while scaling", spec.deployment_id)
            self._driver.scale(spec, 0)

    def _set_status(self, decision: SetStatus, observed: DeploymentRecord) -> None:
        def change(dep: DeploymentRecord) -> bool:
            # Someone (activate, deactivate, a promotion) changed it since we looked: their
            # intent wins; the next tick decides again from the new record.
            if (dep.status, dep.desired_replicas) != (observed.status, observed.desired_replicas):
                return False
            lifecycle.observe_status(dep, decision.status, self._clock(), decision.message)
            return True

        updated = self._repo.update_deployment(decision.model_id, decision.deployment_id, change)
        if updated.status == DeploymentStatus.FAILED and decision.status == DeploymentStatus.FAILED:
            self._record_failure(decision)

    def _record_failure(self, decision: SetStatus) -> None:
        """Keep the replicas' last words in the build log: stopping them loses their logs."""
        try:
            replica_lines = self._driver.logs(decision.deployment_id, tail=_FAILURE_LOG_LINES)
        except Exception:
            logger.exception("cannot read replica logs of %s", decision.deployment_id)
            replica_lines = []
        writer = BuildLogWriter(self._blobs, decision.deployment_id)
        writer(f"FAILED: {decision.message}")
        for line in replica_lines:
            writer(f"replica: {line}")
        writer.close()

    def _forget(self, key: str) -> None:
        applied = dict(self._state.applied)
        applied.pop(key, None)
        self._state = ReconcilerState(applied=applied)

    def _publish(self, observed: dict[str, list[ReplicaState]]) -> None:
        regions = self._fleet.regions() if self._fleet is not None else {}
        for key, states in observed.items():
            replicas = [_replica_entry(state, regions) for state in states]
            if self._published.get(key) == replicas:
                continue
            model_id, deployment_id = key.split("/", 1)
            self._repo.put_observed_replicas(model_id, deployment_id, replicas)
            self._published[key] = replicas


def _observation(dep: DeploymentRecord, replicas: list[ReplicaState]) -> DeploymentObservation:
    return DeploymentObservation(
        model_id=dep.model_id,
        deployment_id=dep.id,
        status=dep.status,
        desired_replicas=dep.desired_replicas,
        status_changed_at=dep.status_changed_at,
        target_environment=dep.target_environment,
        replica_phases=tuple(r.phase for r in replicas),
        replica_messages=tuple(r.message for r in replicas),
        status_message=dep.status_message,
        retire_at=dep.retire_at,
    )


def _phase(dep: DeploymentRecord) -> DeploymentPhase:
    return DeploymentPhase(dep.model_id, dep.id, dep.status.value, dep.status_changed_at)


def _decision_kind(decision: Decision) -> str:
    """``SetStatus`` -> ``set_status``: a metrics label, one per decision class."""
    name = type(decision).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _replica_entry(state: ReplicaState, regions: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": state.replica_id,
        "url": state.url,
        "ready": state.phase == ReplicaPhase.READY,
        "phase": state.phase.value,
    }
    if state.cluster_id:  # per-cluster drivers: where it runs
        entry["cluster_id"] = state.cluster_id
        entry["region"] = regions.get(state.cluster_id, "")
    return entry
