"""Placement invariants over random histories (hypothesis): outages, cordons, drains and
demand changes in any order never break residency, capacity or health, and a quiet world
settles (no flapping)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.domain.clusters import Cluster, ClusterHealth, ClusterKind, GeoPoint
from control_plane.domain.placement import (
    ClusterObservation,
    DeploymentDemand,
    PlacementConstraints,
    PlacementObservation,
    PlacementPolicy,
    PlacementState,
    ReplicaCounts,
)

POLICY = PlacementPolicy(
    heartbeat_timeout_s=30.0, recovery_hold_s=60.0, move_interval_s=20.0, crunch_grace_s=30.0
)
TICK_S = 10.0
CLUSTERS = (
    Cluster("own", "dc", "eu-central", GeoPoint(50.1, 8.7), ClusterKind.SELF_HOSTED,
            {"H100": 8}, priority=0, max_gpus=4, spill_over_to="eu", labels={"residency": "eu"}),
    Cluster("eu", "aws", "eu-west", GeoPoint(51.5, -0.1), capacity={"H100": 6},
            labels={"residency": "eu"}),
    Cluster("us", "aws", "us-east", GeoPoint(39.0, -77.5), capacity={"H100": 8}, priority=10),
    Cluster("us2", "gcp", "us-east", GeoPoint(39.0, -77.5), capacity={"H100": 4}, priority=10),
)  # fmt: skip
DEPLOYMENTS = (
    ("global", PlacementConstraints(min_clusters=2), 1),
    ("eu-only", PlacementConstraints(residency="eu"), 2),
)

# One tick of the world: desired replicas per deployment, and per cluster whether it is
# down (no heartbeat), cordoned, or draining.
world_tick = st.tuples(
    st.tuples(st.integers(0, 12), st.integers(0, 6)),
    st.lists(st.sampled_from(["up", "down", "cordoned", "draining"]), min_size=4, max_size=4),
)


def _observe(
    ticks: list[tuple[tuple[int, int], list[str]]],
) -> list[tuple[PlacementState, PlacementObservation]]:
    """Run the policy over ``ticks``; every placed replica is ready on the next tick."""
    state, history = PlacementState(), []
    silent_since: dict[str, float] = {}
    for i, (desired, flags) in enumerate(ticks):
        now = i * TICK_S
        clusters = []
        for c, flag in zip(CLUSTERS, flags, strict=True):
            if flag == "down":  # heartbeats stop, from the tick before the first "down"
                silent_since.setdefault(c.id, now - TICK_S)
            else:
                silent_since.pop(c.id, None)
            beat = silent_since.get(c.id, now)
            health = ClusterHealth(
                last_heartbeat=beat, cordoned=flag in ("cordoned", "draining"),
                draining=flag == "draining",
            )  # fmt: skip
            clusters.append(ClusterObservation(replace(c, health=health)))
        deps = []
        for (name, constraints, gpus), n in zip(DEPLOYMENTS, desired, strict=True):
            track = state.deployments.get(f"m/{name}")
            placed = track.applied if track else {}
            up = {c.id for c, f in zip(CLUSTERS, flags, strict=True) if f != "down"}
            observed = {c: ReplicaCounts(ready=k) for c, k in placed.items() if c in up}
            deps.append(DeploymentDemand("m", name, n, "H100", gpus, constraints, observed))
        observation = PlacementObservation(tuple(clusters), tuple(deps))
        _, state = POLICY.decide(state, observation, now)
        history.append((state, observation))
    return history


def _check(state: PlacementState, observation: PlacementObservation) -> None:
    by_id = {c.cluster.id: c.cluster for c in observation.clusters}
    used: dict[str, int] = {}
    for dep in observation.deployments:
        track = state.deployments[dep.key]
        assert sum(track.ideal.values()) <= dep.desired_replicas
        for cluster_id, n in track.applied.items():
            cluster = by_id[cluster_id]
            assert n > 0
            assert state.clusters[cluster_id].healthy, f"{dep.key} on unhealthy {cluster_id}"
            if dep.constraints.residency:
                assert cluster.residency == dep.constraints.residency
            used[cluster_id] = used.get(cluster_id, 0) + n * dep.gpus_per_replica
        for cluster_id, n in track.ideal.items():
            assert not by_id[cluster_id].health.draining or n == 0
    for cluster_id, gpus in used.items():
        assert gpus <= by_id[cluster_id].gpu_limit("H100"), f"{cluster_id} over capacity"


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(world_tick, min_size=1, max_size=25))
def test_random_histories_keep_the_invariants_and_settle(
    ticks: list[tuple[tuple[int, int], list[str]]],
) -> None:
    desired = ticks[-1][0]
    quiet = [(desired, ["up"] * 4)] * 40  # the world heals and demand stays put
    history = _observe(ticks + quiet)
    for state, observation in history:
        _check(state, observation)
    for key in ("m/global", "m/eu-only"):
        last = [dict(state.deployments[key].applied) for state, _ in history[-5:]]
        assert all(p == last[0] for p in last), f"{key} still changing in a quiet world"
    final, observation = history[-1]
    for dep in observation.deployments:
        track = final.deployments[dep.key]
        assert track.applied == track.ideal  # no extras left over
        room = sum(
            c.cluster.gpu_limit("H100") // dep.gpus_per_replica
            for c in observation.clusters
            if c.cluster.residency == (dep.constraints.residency or c.cluster.residency)
        )
        if dep.desired_replicas <= room // 2:  # plenty of room: all placed, spread honoured
            assert sum(track.ideal.values()) == dep.desired_replicas
            spread = min(dep.constraints.min_clusters, dep.desired_replicas)
            assert len(track.ideal) >= spread
