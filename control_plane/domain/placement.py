"""Placement policy: how many of a deployment's replicas run in which cluster.

Pure: ``decide(state, observation, now)`` returns decisions and the next state; an applier
drives each cluster's driver and writes cluster health. Tested tick by tick with a fake clock.

Rules, in order of precedence:
- residency and region locks, always (a locked deployment waits rather than leave);
- only healthy clusters get replicas; an unhealthy cluster's replicas are re-placed the tick
  it is marked (a heartbeat older than ``heartbeat_timeout_s``, an API error newer than the
  last heartbeat, or every replica there failed), so failover is bounded by the timeout plus
  one tick;
- a recovered cluster must stay healthy for ``recovery_hold_s`` before it is used again, and
  load returns one replica move per ``move_interval_s`` (no flapping);
- a capacity crunch (replicas pending for lack of GPUs longer than ``crunch_grace_s``) caps
  that cluster's accelerator at what is scheduled for ``crunch_backoff_s``; the pending
  replicas are re-placed like an outage's;
- spread over ``min_clusters`` clusters when room allows; Hybrid order (self-hosted up to
  ``max_gpus``, then its spill-over target), then priority and cost; clusters of equal
  preference share load, weighted by regional demand when it is known;
- stability: running replicas stay unless one of the causes above applies, and moves are
  make-before-break (the old replica stays until the new one is ready).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from control_plane.domain import placement_fit as fitting
from control_plane.domain.clusters import Cluster
from control_plane.domain.placement_health import track_health
from control_plane.domain.placement_types import (
    CapacityCap,
    ClusterObservation,
    ClusterTrack,
    DeploymentDemand,
    DeploymentTrack,
    PlacementConstraints,
    PlacementDecision,
    PlacementObservation,
    PlacementState,
    PlaceReplicas,
    ReplicaCounts,
    ReportShortfall,
    SetClusterHealth,
)

__all__ = [
    "CapacityCap",
    "ClusterObservation",
    "ClusterTrack",
    "DeploymentDemand",
    "DeploymentTrack",
    "PlaceReplicas",
    "PlacementConstraints",
    "PlacementDecision",
    "PlacementObservation",
    "PlacementPolicy",
    "PlacementState",
    "ReplicaCounts",
    "ReportShortfall",
    "SetClusterHealth",
]


GpuLedger = dict[tuple[str, str], int]  # (cluster, accelerator) -> free GPUs


@dataclass(frozen=True)
class PlacementPolicy:
    heartbeat_timeout_s: float = 30.0
    recovery_hold_s: float = 120.0
    crunch_grace_s: float = 60.0
    crunch_backoff_s: float = 900.0
    move_interval_s: float = 60.0

    def decide(
        self, state: PlacementState, observation: PlacementObservation, now: float
    ) -> tuple[list[PlacementDecision], PlacementState]:
        decisions: list[PlacementDecision] = []
        cluster_tracks, health_decisions = track_health(
            state.clusters, observation, state.deployments, now, self
        )
        decisions.extend(health_decisions)
        # A cluster back from an outage may still run replicas the control plane stopped
        # while it was unreachable: its counts are sent again, zeros included.
        recovered = frozenset(d.cluster_id for d in health_decisions if d.healthy)
        caps = self._caps(state, observation, now)
        free = _free_gpus(observation, state.deployments, caps)
        tracks: dict[str, DeploymentTrack] = {}
        for dep in sorted(observation.deployments, key=lambda d: d.key):
            previous = state.deployments.get(dep.key, DeploymentTrack())
            dep_decisions, tracks[dep.key] = self._place(
                dep, previous, observation, cluster_tracks, free, now, recovered
            )
            decisions.extend(dep_decisions)
        return decisions, PlacementState(clusters=cluster_tracks, deployments=tracks, caps=caps)

    def _caps(
        self, state: PlacementState, observation: PlacementObservation, now: float
    ) -> dict[tuple[str, str], CapacityCap]:
        """Keep unexpired caps; cap each (cluster, accelerator) whose replicas pend too long."""
        caps = {k: cap for k, cap in state.caps.items() if cap.until > now}
        scheduled: GpuLedger = {}
        crunched: set[tuple[str, str]] = set()
        for c in observation.clusters:
            for accelerator, gpus in c.gpus_used_elsewhere.items():
                key = (c.cluster.id, accelerator)
                scheduled[key] = scheduled.get(key, 0) + gpus
        for dep in observation.deployments:
            track = state.deployments.get(dep.key, DeploymentTrack())
            for cluster_id, placed in track.applied.items():
                pending = dep.observed.get(cluster_id, ReplicaCounts()).pending_no_capacity
                key = (cluster_id, dep.accelerator)
                scheduled[key] = scheduled.get(key, 0) + (placed - pending) * dep.gpus_per_replica
                since = track.pending_since.get(cluster_id)
                if pending > 0 and since is not None and now - since >= self.crunch_grace_s:
                    crunched.add(key)
        for key in crunched:
            gpus = max(0, scheduled.get(key, 0))
            if key in caps:
                gpus = min(gpus, caps[key].gpus)
            caps[key] = CapacityCap(gpus=gpus, until=now + self.crunch_backoff_s)
        return caps

    def _place(
        self,
        dep: DeploymentDemand,
        previous: DeploymentTrack,
        observation: PlacementObservation,
        cluster_tracks: Mapping[str, ClusterTrack],
        free: GpuLedger,
        now: float,
        recovered: frozenset[str],
    ) -> tuple[list[PlacementDecision], DeploymentTrack]:
        allowed = [c.cluster for c in observation.clusters if _allows(c.cluster, dep)]
        healthy = [c for c in allowed if cluster_tracks[c.id].healthy]
        ideal, last_move_at = self._ideal(dep, previous, healthy, free, now)
        applied = _with_extras(dep, ideal, previous.applied, {c.id for c in healthy})
        for cluster_id, n in applied.items():
            free[(cluster_id, dep.accelerator)] -= n * dep.gpus_per_replica
        resend = recovered & {c.id for c in allowed}
        decisions: list[PlacementDecision] = [
            PlaceReplicas(dep.model_id, dep.deployment_id, cluster_id, applied.get(cluster_id, 0))
            for cluster_id in sorted(set(applied) | set(previous.applied) | resend)
            if applied.get(cluster_id, 0) != previous.applied.get(cluster_id, 0)
            or cluster_id in resend
        ]
        shortfall = _shortfall(dep, sum(ideal.values()), allowed, healthy)
        if shortfall != previous.shortfall:
            decisions.append(ReportShortfall(dep.model_id, dep.deployment_id, *shortfall))
        pending_since = {
            cluster_id: previous.pending_since.get(cluster_id, now)
            for cluster_id, counts in dep.observed.items()
            if counts.pending_no_capacity > 0 and applied.get(cluster_id, 0) > 0
        }
        track = DeploymentTrack(ideal, applied, last_move_at, pending_since, shortfall)
        return decisions, track

    def _ideal(
        self,
        dep: DeploymentDemand,
        previous: DeploymentTrack,
        healthy: list[Cluster],
        free: GpuLedger,
        now: float,
    ) -> tuple[dict[str, int], float | None]:
        """The placement without extras: last tick's, fitted to this tick's demand and room,
        plus at most one move when things are calm. Returns it and the last move's time."""
        candidates = _candidates(dep, healthy, previous, free)
        spread = min(dep.constraints.min_clusters, dep.desired_replicas)
        ideal_before = {c: n for c, n in previous.ideal.items() if c in candidates}
        ideal = fitting.fit(ideal_before, dep.desired_replicas, list(candidates.values()), spread)
        if not self._may_move(dep, previous, ideal, now):
            return ideal, previous.last_move_at
        move = fitting.propose_move(ideal, list(candidates.values()), spread)
        if move is None:
            return ideal, previous.last_move_at
        source, target = move
        ideal[source] -= 1
        ideal[target] = ideal.get(target, 0) + 1
        return {c: n for c, n in ideal.items() if n > 0}, now

    def _may_move(
        self, dep: DeploymentDemand, previous: DeploymentTrack, ideal: Mapping[str, int], now: float
    ) -> bool:
        """Moves wait for calm: no extras kept from an earlier move, every replica of the
        placement ready, and ``move_interval_s`` since the last move."""
        if previous.applied != previous.ideal or dict(ideal) != dict(previous.ideal):
            return False
        if any(dep.observed.get(c, ReplicaCounts()).ready < n for c, n in ideal.items()):
            return False
        last = previous.last_move_at
        return last is None or now - last >= self.move_interval_s


def _allows(cluster: Cluster, dep: DeploymentDemand) -> bool:
    constraints = dep.constraints
    if constraints.residency is not None and cluster.residency != constraints.residency:
        return False
    if constraints.regions and cluster.region not in constraints.regions:
        return False
    return cluster.gpu_limit(dep.accelerator) >= dep.gpus_per_replica


def _free_gpus(
    observation: PlacementObservation,
    deployments: Mapping[str, DeploymentTrack],
    caps: Mapping[tuple[str, str], CapacityCap],
) -> GpuLedger:
    """Free GPUs per (cluster, accelerator) before this tick's placement."""
    free: GpuLedger = {}
    for c in observation.clusters:
        accelerators = set(c.cluster.capacity) | {d.accelerator for d in observation.deployments}
        for accelerator in accelerators:
            key = (c.cluster.id, accelerator)
            limit = c.cluster.gpu_limit(accelerator)
            if key in caps:
                limit = min(limit, caps[key].gpus)
            free[key] = limit - c.gpus_used_elsewhere.get(accelerator, 0)
    for dep in observation.deployments:
        for cluster_id, n in deployments.get(dep.key, DeploymentTrack()).applied.items():
            key = (cluster_id, dep.accelerator)
            if key in free:
                free[key] -= n * dep.gpus_per_replica
    return free


def _candidates(
    dep: DeploymentDemand, healthy: list[Cluster], previous: DeploymentTrack, free: GpuLedger
) -> dict[str, fitting.Candidate]:
    tiers = fitting.tiers(healthy)
    weights = fitting.demand_weights(healthy, dep.demand_by_region)
    candidates: dict[str, fitting.Candidate] = {}
    for cluster in healthy:
        if cluster.health.draining:
            continue
        own = previous.applied.get(cluster.id, 0)
        room = max(0, free[(cluster.id, dep.accelerator)] // dep.gpus_per_replica + own)
        if cluster.health.cordoned:  # no new replicas; the running ones may stay
            room = min(room, previous.ideal.get(cluster.id, 0))
        candidates[cluster.id] = fitting.Candidate(
            cluster.id, tiers[cluster.id], weights[cluster.id], room
        )
    return candidates


def _with_extras(
    dep: DeploymentDemand,
    ideal: Mapping[str, int],
    applied_before: Mapping[str, int],
    healthy: set[str],
) -> dict[str, int]:
    """Ideal plus the ready replicas it replaces, kept until enough of the ideal is ready."""
    ready_in_ideal = sum(
        min(dep.observed.get(c, ReplicaCounts()).ready, n) for c, n in ideal.items()
    )
    needed = max(0, dep.desired_replicas - ready_in_ideal)
    applied = dict(ideal)
    for cluster_id in sorted(applied_before):
        if needed == 0:
            break
        if cluster_id not in healthy:
            continue
        extra = applied_before[cluster_id] - ideal.get(cluster_id, 0)
        ready_extra = dep.observed.get(cluster_id, ReplicaCounts()).ready - ideal.get(cluster_id, 0)
        kept = max(0, min(extra, ready_extra, needed))
        if kept:
            applied[cluster_id] = applied.get(cluster_id, 0) + kept
            needed -= kept
    return applied


def _shortfall(
    dep: DeploymentDemand, placed: int, allowed: list[Cluster], healthy: list[Cluster]
) -> tuple[int, str]:
    missing = dep.desired_replicas - placed
    if missing <= 0:
        return 0, ""
    where = _constraint_text(dep)
    if not allowed:
        return missing, f"no cluster {where} has {dep.accelerator} capacity"
    if not healthy:
        return missing, f"every cluster {where} is unhealthy"
    return missing, f"not enough free {dep.accelerator} capacity in healthy clusters {where}"


def _constraint_text(dep: DeploymentDemand) -> str:
    parts = []
    if dep.constraints.residency is not None:
        parts.append(f"with residency {dep.constraints.residency}")
    if dep.constraints.regions:
        parts.append(f"in regions {', '.join(sorted(dep.constraints.regions))}")
    return " ".join(parts) if parts else "anywhere"
