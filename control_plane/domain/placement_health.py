"""Cluster health as placement sees it: healthy now, or not, and since when.

A cluster goes unhealthy the first tick a signal says so (the heartbeat timeout already is
the debounce). It comes back only after its signals stay good for ``recovery_hold_s``, so a
cluster that blinks does not pull replicas back and forth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from control_plane.domain.clusters import Cluster
from control_plane.domain.placement_types import (
    ClusterTrack,
    DeploymentTrack,
    PlacementObservation,
    SetClusterHealth,
)

# "Every replica there failed" marks the cluster only when the failures span this many
# deployments: one broken model failing everywhere is the deployment's problem, not the cluster's.
MIN_DEPLOYMENTS_FAILING = 2


class HealthTimings(Protocol):
    @property
    def heartbeat_timeout_s(self) -> float: ...

    @property
    def recovery_hold_s(self) -> float: ...


def track_health(
    previous: Mapping[str, ClusterTrack],
    observation: PlacementObservation,
    deployments: Mapping[str, DeploymentTrack],
    now: float,
    timings: HealthTimings,
) -> tuple[dict[str, ClusterTrack], list[SetClusterHealth]]:
    failing = _clusters_with_all_replicas_failed(observation, deployments)
    tracks: dict[str, ClusterTrack] = {}
    decisions: list[SetClusterHealth] = []
    for c in observation.clusters:
        cluster = c.cluster
        problem = _problem(cluster, now, timings.heartbeat_timeout_s, cluster.id in failing)
        before = previous.get(cluster.id)
        track = _next_track(before, problem, now, timings.recovery_hold_s)
        was_healthy = before.healthy if before is not None else True
        if was_healthy != track.healthy:
            decisions.append(SetClusterHealth(cluster.id, track.healthy, track.reason))
        tracks[cluster.id] = track
    return tracks, decisions


def _next_track(
    before: ClusterTrack | None, problem: str, now: float, hold_s: float
) -> ClusterTrack:
    if problem:
        return ClusterTrack(healthy=False, reason=problem)
    if before is None or before.healthy:
        return ClusterTrack(healthy=True)
    good_since = before.good_since if before.good_since is not None else now
    if now - good_since >= hold_s:
        return ClusterTrack(healthy=True, reason="recovered")
    return ClusterTrack(healthy=False, reason=before.reason, good_since=good_since)


def _problem(cluster: Cluster, now: float, timeout_s: float, all_failed: bool) -> str:
    heartbeat = cluster.health.last_heartbeat
    if heartbeat is None:
        return "no heartbeat yet"
    if now - heartbeat > timeout_s:
        return f"no heartbeat for {now - heartbeat:.0f} s"
    error_at = cluster.health.last_error_at
    if error_at is not None and error_at > heartbeat:
        return f"cluster API error: {cluster.health.last_error or 'unknown'}"
    if all_failed:
        return "every replica in the cluster failed"
    return ""


def _clusters_with_all_replicas_failed(
    observation: PlacementObservation, deployments: Mapping[str, DeploymentTrack]
) -> set[str]:
    failing_deployments: dict[str, int] = {}
    has_ready: set[str] = set()
    for dep in observation.deployments:
        placed = deployments[dep.key].applied if dep.key in deployments else {}
        for cluster_id, counts in dep.observed.items():
            if counts.ready > 0:
                has_ready.add(cluster_id)
            elif counts.failed > 0 and placed.get(cluster_id, 0) > 0:
                failing_deployments[cluster_id] = failing_deployments.get(cluster_id, 0) + 1
    return {
        cluster_id
        for cluster_id, n in failing_deployments.items()
        if n >= MIN_DEPLOYMENTS_FAILING and cluster_id not in has_ready
    }
