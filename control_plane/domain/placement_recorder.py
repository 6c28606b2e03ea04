"""Placement over the registered clusters, run by the reconciler and recorded, not yet applied.

Each reconcile tick, when at least one cluster is registered, the placement policy sees
every deployment's desired replicas and the clusters' records, and decides how many
replicas go where. This step records those decisions (the ``placements`` table, one item
per deployment, and a ``cluster-health/<id>`` item per health change) without driving
anything: the platform's one cluster driver still runs every replica, so one registered
cluster is today's behaviour, unchanged. No cluster registered: nothing runs.

Which cluster runs which of today's replicas is not reported yet (one driver), so the
replicas the driver reports are attributed to the clusters in the order of the last
placement; with one cluster that is exact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.placement import PlacementPolicy
from control_plane.domain.placement_types import (
    ClusterObservation,
    DeploymentDemand,
    PlacementDecision,
    PlacementObservation,
    PlacementState,
    PlaceReplicas,
    ReplicaCounts,
    ReportShortfall,
    SetClusterHealth,
)
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.ports.cluster import ReplicaPhase, ReplicaState
from control_plane.ports.store import MetadataStore

logger = logging.getLogger(__name__)

PLACEMENTS = "placements"
CLUSTER_HEALTH_PREFIX = "cluster-health/"
CPU = "cpu"


def replica_resources(config: Mapping[str, Any]) -> tuple[str, int]:
    """(accelerator type, GPUs per replica) from a package config; ("cpu", 1) without GPUs."""
    accelerator = (config.get("resources") or {}).get("accelerator")
    if not accelerator:
        return CPU, 1
    gpu_type, _, count = str(accelerator).partition(":")
    return gpu_type, int(count) if count.isdigit() and int(count) > 0 else 1


def attribute_replicas(
    states: Sequence[ReplicaState], placed: Mapping[str, int], clusters: Sequence[str]
) -> dict[str, ReplicaCounts]:
    """Spread the driver's replicas over the clusters: each up to what it was last placed,
    in cluster order, the rest to the first cluster."""
    ready = sum(1 for s in states if s.phase == ReplicaPhase.READY)
    failed = sum(1 for s in states if s.phase == ReplicaPhase.FAILED)
    counts: dict[str, ReplicaCounts] = {}
    order = sorted(clusters, key=lambda c: (placed.get(c, 0) == 0, c))
    for cluster_id in order:
        share = min(ready, placed.get(cluster_id, 0))
        ready -= share
        counts[cluster_id] = ReplicaCounts(ready=share)
    if order and (ready or failed):
        first = counts[order[0]]
        counts[order[0]] = ReplicaCounts(ready=first.ready + ready, failed=failed)
    return {cluster_id: c for cluster_id, c in counts.items() if c != ReplicaCounts()}


class PlacementRecorder:
    def __init__(
        self,
        registry: ClusterRegistry,
        store: MetadataStore,
        policy: PlacementPolicy,
        clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._store = store
        self._policy = policy
        self._clock = clock
        self._state = PlacementState()
        self._lock = threading.Lock()

    def tick(
        self,
        deployments: Sequence[DeploymentRecord],
        observed: Mapping[str, Sequence[ReplicaState]],
    ) -> list[PlacementDecision]:
        """Decide and record; returns the decisions (none without registered clusters)."""
        with self._lock:
            clusters = self._registry.list()
            if not clusters:
                return []
            cluster_ids = [c.id for c in clusters]
            demands = tuple(
                self._demand(dep, observed.get(dep.key, ()), cluster_ids)
                for dep in deployments
                if dep.status != DeploymentStatus.BUILDING
            )
            observation = PlacementObservation(
                clusters=tuple(ClusterObservation(c) for c in clusters), deployments=demands
            )
            now = self._clock()
            decisions, self._state = self._policy.decide(self._state, observation, now)
            self._record(decisions, now)
            return decisions

    def _demand(
        self, dep: DeploymentRecord, states: Sequence[ReplicaState], clusters: Sequence[str]
    ) -> DeploymentDemand:
        accelerator, gpus = replica_resources(dep.config)
        track = self._state.deployments.get(dep.key)
        placed = dict(track.applied) if track else {}
        return DeploymentDemand(
            model_id=dep.model_id,
            deployment_id=dep.id,
            desired_replicas=dep.desired_replicas,
            accelerator=accelerator,
            gpus_per_replica=gpus,
            observed=attribute_replicas(states, placed, clusters),
        )

    def _record(self, decisions: Sequence[PlacementDecision], now: float) -> None:
        for decision in decisions:
            try:
                if isinstance(decision, SetClusterHealth):
                    self._store.put(
                        PLACEMENTS,
                        f"{CLUSTER_HEALTH_PREFIX}{decision.cluster_id}",
                        {"healthy": decision.healthy, "reason": decision.reason, "at": now},
                    )
                elif isinstance(decision, PlaceReplicas | ReportShortfall):
                    self._record_deployment(decision, now)
            except Exception:
                logger.exception("placement: recording %s failed", decision)

    def _record_deployment(self, decision: PlaceReplicas | ReportShortfall, now: float) -> None:
        key = f"{decision.model_id}/{decision.deployment_id}"
        item = self._store.get(PLACEMENTS, key)
        value: dict[str, Any] = dict(item.value) if item else {"replicas": {}}
        if isinstance(decision, PlaceReplicas):
            value["replicas"] = {
                **value.get("replicas", {}),
                decision.cluster_id: decision.replicas,
            }
        else:
            value["shortfall"] = {"missing": decision.missing, "reason": decision.reason}
        value["updated_at"] = now
        self._store.put(PLACEMENTS, key, value)


def read_placements(store: MetadataStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(deployment placements, cluster health changes) as last recorded, by key."""
    placements: list[dict[str, Any]] = []
    health: list[dict[str, Any]] = []
    for item in store.scan(PLACEMENTS):
        if item.key.startswith(CLUSTER_HEALTH_PREFIX):
            cluster_id = item.key[len(CLUSTER_HEALTH_PREFIX) :]
            health.append({"cluster_id": cluster_id, **item.value})
            continue
        model_id, _, deployment_id = item.key.partition("/")
        placements.append(
            {
                "model_id": model_id,
                "deployment_id": deployment_id,
                "replicas": dict(item.value.get("replicas", {})),
                "shortfall": item.value.get("shortfall"),
                "updated_at": item.value.get("updated_at"),
            }
        )
    return placements, health
