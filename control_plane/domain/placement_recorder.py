"""Placement over the registered clusters, run by the reconciler and recorded.

Each reconcile tick, when at least one cluster is registered, the placement policy sees
every deployment's desired replicas and the clusters' records, and decides how many
replicas go where. This step records those decisions (the ``placements`` table, one item
per deployment, and a ``cluster-health/<id>`` item per health change). With
``PLINTH_CLUSTER=clusters`` the reconciler also applies them, each cluster through its own
driver (``cluster_fleet.py``), and the drivers say where each replica runs. Otherwise the
platform's one driver runs every replica and they are attributed to the clusters in the
order of the last placement (exact with one cluster). No cluster registered: nothing runs.
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
    PlacementConstraints,
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


def placement_constraints(config: Mapping[str, Any]) -> PlacementConstraints:
    """The package's ``placement`` section (residency, regions, min_clusters)."""
    section = config.get("placement") or {}
    residency = section.get("residency")
    return PlacementConstraints(
        residency=str(residency) if residency else None,
        regions=frozenset(str(r) for r in section.get("regions") or ()),
        min_clusters=max(1, int(section.get("min_clusters") or 1)),
    )


def count_by_cluster(states: Sequence[ReplicaState]) -> dict[str, ReplicaCounts]:
    """Ready, unschedulable and failed replicas per cluster, from drivers that say where each
    runs."""
    ready: dict[str, int] = {}
    pending: dict[str, int] = {}
    failed: dict[str, int] = {}
    for state in states:
        if state.phase == ReplicaPhase.READY:
            counter = ready
        elif state.phase == ReplicaPhase.FAILED:
            counter = failed
        elif state.unschedulable:
            counter = pending
        else:
            continue
        counter[state.cluster_id] = counter.get(state.cluster_id, 0) + 1
    return {
        cid: ReplicaCounts(
            ready=ready.get(cid, 0),
            pending_no_capacity=pending.get(cid, 0),
            failed=failed.get(cid, 0),
        )
        for cid in set(ready) | set(pending) | set(failed)
    }


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
        desired: Mapping[str, int] | None = None,
    ) -> list[PlacementDecision]:
        """Decide and record; returns the decisions (none without registered clusters).

        ``desired`` (by deployment key) overrides the records' counts: the reconciler policy's
        (0 for a FAILED deployment whose record still asks for replicas)."""
        with self._lock:
            clusters = self._registry.list()
            if not clusters:
                return []
            cluster_ids = [c.id for c in clusters]
            demands = tuple(
                self._demand(
                    dep,
                    observed.get(dep.key, ()),
                    cluster_ids,
                    dep.desired_replicas if desired is None else desired.get(dep.key, 0),
                )
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
        self,
        dep: DeploymentRecord,
        states: Sequence[ReplicaState],
        clusters: Sequence[str],
        desired: int,
    ) -> DeploymentDemand:
        accelerator, gpus = replica_resources(dep.config)
        track = self._state.deployments.get(dep.key)
        placed = dict(track.applied) if track else {}
        if any(s.cluster_id for s in states):  # per-cluster drivers say where
            counts = count_by_cluster(states)
        else:
            counts = attribute_replicas(states, placed, clusters)
        constraints = placement_constraints(dep.config)
        if desired > 0:  # active-active: one replica in each of min_clusters at least
            desired = max(desired, constraints.min_clusters)
        return DeploymentDemand(
            model_id=dep.model_id,
            deployment_id=dep.id,
            desired_replicas=desired,
            accelerator=accelerator,
            gpus_per_replica=gpus,
            constraints=constraints,
            observed=counts,
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
