"""Placement policy, tick by tick with a fake clock (no I/O).

Each scenario is a table of ticks: what the clusters report at ``now`` and what the policy
must have placed after deciding. Unless a tick says otherwise, every replica placed on the
previous tick is reported ready and every cluster heartbeats at ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest

from control_plane.domain.clusters import Cluster, ClusterHealth, ClusterKind, GeoPoint
from control_plane.domain.placement import (
    ClusterObservation,
    DeploymentDemand,
    PlacementConstraints,
    PlacementDecision,
    PlacementObservation,
    PlacementPolicy,
    PlacementState,
    PlaceReplicas,
    ReplicaCounts,
    ReportShortfall,
    SetClusterHealth,
)

POLICY = PlacementPolicy(
    heartbeat_timeout_s=30.0,
    recovery_hold_s=120.0,
    crunch_grace_s=60.0,
    crunch_backoff_s=900.0,
    move_interval_s=60.0,
)
WHERE = {
    "us-east": GeoPoint(39.0, -77.5),
    "eu-west": GeoPoint(51.5, -0.1),
    "eu-central": GeoPoint(50.1, 8.7),
}


def cluster(
    cluster_id: str,
    region: str = "us-east",
    *,
    gpus: int = 8,
    priority: int = 100,
    kind: ClusterKind = ClusterKind.CLOUD,
    residency: str | None = None,
    max_gpus: int | None = None,
    spill_over_to: str | None = None,
) -> Cluster:
    return Cluster(
        id=cluster_id,
        cloud="aws" if kind == ClusterKind.CLOUD else "customer",
        region=region,
        location=WHERE[region],
        kind=kind,
        capacity={"H100": gpus},
        priority=priority,
        max_gpus=max_gpus,
        spill_over_to=spill_over_to,
        labels={"residency": residency} if residency else {},
    )


@dataclass(frozen=True)
class Tick:
    now: float
    expect: Mapping[str, int]  # the deployment's replicas per cluster after this tick
    desired: int | None = None  # None: as on the previous tick
    ready: Mapping[str, int] | None = None  # None: all placed last tick are ready
    pending: Mapping[str, int] = field(default_factory=dict)
    silent_since: Mapping[str, float] = field(default_factory=dict)  # last heartbeat
    cordoned: frozenset[str] = frozenset()
    draining: frozenset[str] = frozenset()
    health: tuple[SetClusterHealth, ...] | None = None  # None: not checked
    shortfall: tuple[int, str] | None = None  # None: not checked


@dataclass(frozen=True)
class Scenario:
    name: str
    clusters: tuple[Cluster, ...]
    ticks: tuple[Tick, ...]
    constraints: PlacementConstraints = field(default_factory=PlacementConstraints)


def observe(clusters: tuple[Cluster, ...], tick: Tick) -> tuple[ClusterObservation, ...]:
    observed = []
    for c in clusters:
        health = ClusterHealth(
            last_heartbeat=tick.silent_since.get(c.id, tick.now),
            cordoned=c.id in tick.cordoned or c.id in tick.draining,
            draining=c.id in tick.draining,
        )
        observed.append(ClusterObservation(replace(c, health=health)))
    return tuple(observed)


def run(scenario: Scenario) -> None:
    state = PlacementState()
    desired = 0
    for tick in scenario.ticks:
        desired = tick.desired if tick.desired is not None else desired
        placed = state.deployments["m1/d1"].applied if "m1/d1" in state.deployments else {}
        ready = tick.ready if tick.ready is not None else placed
        counts = {
            c: ReplicaCounts(ready=ready.get(c, 0), pending_no_capacity=tick.pending.get(c, 0))
            for c in set(placed) | set(ready) | set(tick.pending)
        }
        dep = DeploymentDemand(
            "m1", "d1", desired, "H100", 1, scenario.constraints, observed=counts
        )
        observation = PlacementObservation(observe(scenario.clusters, tick), (dep,))
        decisions, state = POLICY.decide(state, observation, tick.now)
        where = f"{scenario.name} @ t={tick.now}"
        assert dict(state.deployments["m1/d1"].applied) == dict(tick.expect), where
        if tick.health is not None:
            assert _of(decisions, SetClusterHealth) == list(tick.health), where
        if tick.shortfall is not None:
            assert state.deployments["m1/d1"].shortfall == tick.shortfall, where


def _of(decisions: list[PlacementDecision], kind: type) -> list[PlacementDecision]:
    return [d for d in decisions if isinstance(d, kind)]


EU = (
    cluster("us-1", "us-east", gpus=16),
    cluster("eu-1", "eu-west", gpus=2, residency="eu"),
    cluster("eu-2", "eu-central", gpus=2, residency="eu"),
)
RESIDENCY = Scenario(
    "residency: eu replicas stay in eu clusters, even when both are down",
    EU,
    (
        Tick(0, {"eu-1": 2, "eu-2": 1}, desired=3, shortfall=(0, "")),
        Tick(
            10,
            {"eu-1": 2, "eu-2": 2},
            desired=6,
            shortfall=(2, "not enough free H100 capacity in healthy clusters with residency eu"),
        ),
        Tick(20, {"eu-1": 2, "eu-2": 1}, desired=3, shortfall=(0, "")),
        Tick(
            60,
            {},
            silent_since={"eu-1": 20, "eu-2": 20},
            shortfall=(3, "every cluster with residency eu is unhealthy"),
        ),
        Tick(70, {}, silent_since={"eu-1": 20, "eu-2": 20}),
    ),
    PlacementConstraints(residency="eu"),
)
REGION_LOCK = Scenario(
    "region lock: only eu-west, never the other eu cluster",
    EU,
    (
        Tick(
            0,
            {"eu-1": 2},
            desired=3,
            shortfall=(1, "not enough free H100 capacity in healthy clusters in regions eu-west"),
        ),
        Tick(10, {"eu-1": 1}, desired=1, shortfall=(0, "")),
    ),
    PlacementConstraints(regions=frozenset({"eu-west"})),
)
ACTIVE_ACTIVE = Scenario(
    "active-active: min_clusters 2 spreads although one cluster is cheaper",
    (cluster("a", priority=10), cluster("b", priority=20), cluster("c", priority=20)),
    (
        Tick(0, {"a": 1, "b": 1}, desired=2),
        Tick(10, {"a": 3, "b": 1}, desired=4),
        Tick(20, {"a": 1}, desired=1),
        Tick(30, {"a": 1, "b": 1}, desired=2),
    ),
    PlacementConstraints(min_clusters=2),
)
ACTIVE_ACTIVE_ROOM = Scenario(
    "active-active: spread as far as capacity allows, then keeps it",
    (cluster("a", gpus=8), cluster("b", gpus=0)),
    ((Tick(0, {"a": 3}, desired=3)),),
    PlacementConstraints(min_clusters=2),
)
HYBRID = (
    cluster(
        "own",
        "eu-west",
        kind=ClusterKind.SELF_HOSTED,
        gpus=16,
        max_gpus=4,
        spill_over_to="spill",
        priority=0,
    ),
    cluster("cheap", priority=10),
    cluster("spill", priority=50),
)
HYBRID_SPILL = Scenario(
    "hybrid: self-hosted fills to max_gpus, spills to its target, spills back",
    HYBRID,
    (
        Tick(0, {"own": 3}, desired=3),
        Tick(10, {"own": 4, "spill": 2}, desired=6),
        Tick(20, {"own": 4, "spill": 8, "cheap": 2}, desired=14),
        Tick(30, {"own": 4, "spill": 1}, desired=5),
        Tick(40, {"own": 2}, desired=2),
    ),
)
CRUNCH = Scenario(
    "capacity crunch: replicas pending for lack of GPUs are re-placed after the grace",
    (cluster("a"), cluster("b")),
    (
        Tick(0, {"a": 2, "b": 2}, desired=4),
        Tick(10, {"a": 3, "b": 3}, desired=6),
        Tick(20, {"a": 3, "b": 3}, ready={"a": 2, "b": 3}, pending={"a": 1}),
        Tick(70, {"a": 3, "b": 3}, ready={"a": 2, "b": 3}, pending={"a": 1}),
        Tick(80, {"a": 2, "b": 4}, ready={"a": 2, "b": 3}, pending={"a": 1}),
        Tick(90, {"a": 2, "b": 4}),
        Tick(100, {"a": 2, "b": 6}, desired=8),  # a is capped at what it holds
        Tick(990, {"a": 2, "b": 6}),  # the cap lifts; nothing moves without a cause
        Tick(1000, {"a": 3, "b": 6}, desired=9),
    ),
)
OUTAGE = Scenario(
    "outage: re-placed within timeout + one tick; recovery after a steady hold, gradually",
    (cluster("a", priority=10), cluster("b", priority=20), cluster("c", priority=20)),
    (
        Tick(0, {"a": 3, "b": 1}, desired=4),
        Tick(40, {"a": 3, "b": 1}, silent_since={"a": 10}, health=()),
        Tick(
            50,
            {"b": 2, "c": 2},
            silent_since={"a": 10},
            health=(SetClusterHealth("a", False, "no heartbeat for 40 s"),),
        ),
        Tick(60, {"b": 2, "c": 2}, silent_since={"a": 10}),
        Tick(100, {"b": 2, "c": 2}),  # back, but not for long enough
        Tick(150, {"b": 2, "c": 2}, silent_since={"a": 100}),  # it blinked
        Tick(200, {"b": 2, "c": 2}, health=()),  # good again since 200
        Tick(310, {"b": 2, "c": 2}, health=()),
        Tick(
            320,
            {"a": 1, "b": 2, "c": 2},  # one move, old replica kept until the new one is ready
            health=(SetClusterHealth("a", True, "recovered"),),
        ),
        Tick(330, {"a": 1, "b": 2, "c": 1}),
        Tick(340, {"a": 1, "b": 2, "c": 1}),  # next move waits for move_interval_s
        Tick(380, {"a": 2, "b": 2, "c": 1}),
        Tick(390, {"a": 2, "b": 1, "c": 1}),
        Tick(450, {"a": 3, "b": 1, "c": 1}),
        Tick(460, {"a": 3, "b": 1}),
        Tick(600, {"a": 3, "b": 1}),  # settled: the spread keeps b
    ),
    PlacementConstraints(min_clusters=2),
)
CORDON = Scenario(
    "cordon: no new replicas there; drain: moved away once replacements are ready",
    (cluster("a"), cluster("b")),
    (
        Tick(0, {"a": 1, "b": 1}, desired=2),
        Tick(10, {"a": 1, "b": 2}, desired=3, cordoned=frozenset({"a"})),
        Tick(20, {"a": 1, "b": 3}, draining=frozenset({"a"})),
        Tick(30, {"a": 1, "b": 3}, draining=frozenset({"a"}), ready={"a": 1, "b": 2}),
        Tick(40, {"b": 3}, draining=frozenset({"a"})),
        Tick(50, {"b": 3}),  # uncordoned: nothing moves back without a cause
    ),
)
STABLE = Scenario(
    "stability: a new equal cluster or a scale-up moves nothing already running",
    (cluster("a", gpus=4), cluster("b", gpus=4)),
    (
        Tick(0, {"a": 2, "b": 1}, desired=3),
        Tick(10, {"a": 2, "b": 2}, desired=4),
        Tick(20, {"a": 2, "b": 2}),
        Tick(30, {"a": 2, "b": 2}),
    ),
)


@pytest.mark.parametrize(
    "scenario",
    [
        RESIDENCY,
        REGION_LOCK,
        ACTIVE_ACTIVE,
        ACTIVE_ACTIVE_ROOM,
        HYBRID_SPILL,
        CRUNCH,
        OUTAGE,
        CORDON,
        STABLE,
    ],
    ids=lambda s: s.name.split(":")[0],
)
def test_placement_scenario(scenario: Scenario) -> None:
    run(scenario)


def _two_deployments(
    clusters: tuple[Cluster, ...],
    observed: Mapping[str, Mapping[str, ReplicaCounts]],
    desired: tuple[int, int] = (1, 1),
) -> PlacementObservation:
    deps = tuple(
        DeploymentDemand("m1", dep_id, n, "H100", 2, observed=observed.get(dep_id, {}))
        for dep_id, n in zip(("d1", "d2"), desired, strict=True)
    )
    return PlacementObservation(tuple(ClusterObservation(c) for c in clusters), deps)


def _heard(c: Cluster, at: float, **health: object) -> Cluster:
    return replace(c, health=ClusterHealth(last_heartbeat=at, **health))  # type: ignore[arg-type]


def test_deployments_share_a_clusters_gpus() -> None:
    small = (_heard(cluster("a", gpus=4, priority=10), 0), _heard(cluster("b", gpus=4), 0))
    _, state = POLICY.decide(PlacementState(), _two_deployments(small, {}, (2, 2)), 0)
    # 2 GPUs per replica: a holds two replicas in all, the rest go to b.
    assert dict(state.deployments["m1/d1"].applied) == {"a": 2}
    assert dict(state.deployments["m1/d2"].applied) == {"b": 2}


def test_api_error_newer_than_the_heartbeat_marks_the_cluster() -> None:
    clusters = (_heard(cluster("a"), 5, last_error="503 from API", last_error_at=8),)
    decisions, state = POLICY.decide(PlacementState(), _two_deployments(clusters, {}), 10)
    assert _of(decisions, SetClusterHealth) == [
        SetClusterHealth("a", False, "cluster API error: 503 from API")
    ]
    assert state.deployments["m1/d1"].applied == {}
    assert _of(decisions, ReportShortfall)[0] == ReportShortfall(
        "m1", "d1", 1, "every cluster anywhere is unhealthy"
    )


def test_a_cluster_where_every_deployment_fails_is_marked() -> None:
    clusters = (_heard(cluster("a", priority=10), 0), _heard(cluster("b"), 0))
    _, state = POLICY.decide(PlacementState(), _two_deployments(clusters, {}), 0)
    assert state.deployments["m1/d1"].applied == {"a": 1}
    one_failing = {"d1": {"a": ReplicaCounts(failed=1)}, "d2": {"a": ReplicaCounts(ready=1)}}
    decisions, _ = POLICY.decide(state, _two_deployments(clusters, one_failing), 10)
    assert _of(decisions, SetClusterHealth) == []  # one broken model is not a broken cluster
    both = {"d1": {"a": ReplicaCounts(failed=1)}, "d2": {"a": ReplicaCounts(failed=1)}}
    decisions, state = POLICY.decide(state, _two_deployments(clusters, both), 10)
    assert _of(decisions, SetClusterHealth) == [
        SetClusterHealth("a", False, "every replica in the cluster failed")
    ]
    assert state.deployments["m1/d1"].applied == {"b": 1}


def test_regional_demand_weights_where_added_replicas_go() -> None:
    clusters = (_heard(cluster("us", "us-east"), 0), _heard(cluster("eu", "eu-west"), 0))
    dep = DeploymentDemand(
        "m1", "d1", 4, "H100", 1, demand_by_region={"eu-west": 3.0, "us-east": 1.0}
    )
    observation = PlacementObservation(tuple(ClusterObservation(c) for c in clusters), (dep,))
    _, state = POLICY.decide(PlacementState(), observation, 0)
    assert dict(state.deployments["m1/d1"].applied) == {"eu": 3, "us": 1}


def test_cluster_records_round_trip_and_reject_bad_values() -> None:
    from control_plane.exceptions import ValidationFailed

    own = cluster("own", "eu-west", kind=ClusterKind.SELF_HOSTED, max_gpus=4, spill_over_to="b")
    assert Cluster.from_dict(own.to_dict()) == own
    assert own.gpu_limit("H100") == 4 and own.gpu_limit("A10G") == 0
    assert round(WHERE["eu-west"].distance_km(WHERE["eu-central"])) == 637
    with pytest.raises(ValidationFailed, match=r"capacity\['H100'\] = -1"):
        replace(own, capacity={"H100": -1})
    with pytest.raises(ValidationFailed, match="lacks field 'region'"):
        Cluster.from_dict({"id": "x", "cloud": "aws", "location": {}})
    with pytest.raises(ValidationFailed, match="bad value"):
        Cluster.from_dict({**own.to_dict(), "kind": "mainframe"})


def test_a_recovered_cluster_is_sent_its_counts_again() -> None:
    # While a was unreachable its stop may never have arrived: on recovery the zero is re-sent.
    policy = replace(POLICY, recovery_hold_s=0.0)
    eu_only = DeploymentDemand(
        "m1", "d2", 1, "H100", 1, PlacementConstraints(residency="eu"), observed={}
    )
    us_dep = DeploymentDemand("m1", "d1", 1, "H100", 1, observed={})
    clusters = (cluster("a", priority=10), cluster("b"))

    def tick(now: float, a_heartbeat: float) -> list[PlacementDecision]:
        nonlocal state
        heard = (_heard(clusters[0], a_heartbeat), _heard(clusters[1], now))
        observed = tuple(ClusterObservation(c) for c in heard)
        decisions, state = policy.decide(
            state, PlacementObservation(observed, (us_dep, eu_only)), now
        )
        return decisions

    state = PlacementState()
    assert _of(tick(0, 0), PlaceReplicas) == [PlaceReplicas("m1", "d1", "a", 1)]
    assert _of(tick(40, 0), PlaceReplicas) == [
        PlaceReplicas("m1", "d1", "a", 0),
        PlaceReplicas("m1", "d1", "b", 1),
    ]
    assert _of(tick(50, 0), PlaceReplicas) == []
    # d2 (residency eu) is allowed in neither cluster, so nothing is sent for it.
    assert _of(tick(60, 60), PlaceReplicas) == [PlaceReplicas("m1", "d1", "a", 0)]
