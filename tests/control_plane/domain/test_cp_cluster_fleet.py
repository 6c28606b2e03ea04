"""PLINTH_CLUSTER=clusters: the reconciler runs the placement and drives each registered cluster
through its own driver; a failing or slow cluster is recorded and stalls no other."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import Cluster, GeoPoint
from control_plane.domain.placement_recorder import count_by_cluster
from control_plane.domain.placement_types import ReplicaCounts
from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    ModelRecord,
)
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec, ReplicaState
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import FakeClock, InstantCluster

CALL_TIMEOUT_S = 0.5


class BrokenCluster(InstantCluster):
    """Its API answers every call with an error."""

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        raise ConnectionError("connection refused by the cluster API")

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        raise ConnectionError("connection refused by the cluster API")


class StuckCluster(InstantCluster):
    """Its API never answers (until the test ends)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self._release = release

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        self._release.wait(30)
        return []


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def drivers(release: threading.Event) -> dict[str, InstantCluster]:
    return {
        "eu-1": InstantCluster(),
        "us-1": InstantCluster(),
        "us-2": InstantCluster(),
        "broken": BrokenCluster(),
        "stuck": StuckCluster(release),
    }


@pytest.fixture
def platform(tmp_path: Path, drivers: dict[str, InstantCluster]) -> Iterator[Platform]:
    settings = Settings(
        state_dir=tmp_path / "state",
        run_background_workers=False,
        cluster_kind="clusters",
        cluster_call_timeout_s=CALL_TIMEOUT_S,
    )
    platform = Platform(
        settings, clock=FakeClock(), cluster_drivers=lambda cluster: drivers[cluster.id]
    )
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    yield platform
    platform.close()


def register(platform: Platform, cluster_id: str, region: str, **fields: Any) -> None:
    registry = ClusterRegistry(platform.store)
    where = GeoPoint(50.0, 0.0) if region.startswith("eu") else GeoPoint(40.0, -75.0)
    registry.register(Cluster(cluster_id, "local", region, where, capacity={"cpu": 8}, **fields))
    registry.heartbeat(cluster_id, platform.clock())


def add_deployment(platform: Platform, dep_id: str, desired: int, **placement: Any) -> None:
    platform.repo.create_deployment(
        DeploymentRecord(
            id=dep_id,
            model_id="m1",
            name=dep_id,
            status=DeploymentStatus.ACTIVE,
            created_at=0.0,
            status_changed_at=0.0,
            archive_sha256="0" * 64,
            config={"model_name": "m", "placement": placement or None},
            desired_replicas=desired,
            autoscaling_settings=AutoscalingSettings(min_replica=desired, max_replica=desired),
        )
    )


def counts(drivers: dict[str, InstantCluster], dep_id: str) -> dict[str, int]:
    """Replicas per working cluster (the broken and stuck ones cannot be asked)."""
    return {
        cluster_id: driver.counts[dep_id]
        for cluster_id, driver in drivers.items()
        if type(driver) is InstantCluster and driver.counts.get(dep_id)
    }


def test_replicas_spread_over_clusters_with_their_cluster_and_region(
    platform: Platform, drivers: dict[str, InstantCluster]
) -> None:
    register(platform, "eu-1", "eu-west", labels={"residency": "eu"})
    register(platform, "us-1", "us-east", labels={"residency": "us"})
    add_deployment(platform, "d1", 2, min_clusters=2)
    for _ in range(3):
        platform.reconcile_once()
    assert counts(drivers, "d1") == {"eu-1": 1, "us-1": 1}
    recorded = platform.repo.all_observed_replicas()["m1/d1"]
    assert sorted((r["cluster_id"], r["region"], r["ready"]) for r in recorded) == [
        ("eu-1", "eu-west", True),
        ("us-1", "us-east", True),
    ]
    table = platform.routing.table()
    route = table.models["m1"].deployments["d1"]
    assert sorted(r.cluster for r in route.replicas) == ["eu-1", "us-1"]
    assert table.clusters["eu-1"].region == "eu-west" and table.clusters["eu-1"].healthy
    assert table.clusters["eu-1"].residency == "eu"


def test_residency_keeps_replicas_in_their_geography(
    platform: Platform, drivers: dict[str, InstantCluster]
) -> None:
    register(platform, "eu-1", "eu-west", labels={"residency": "eu"})
    register(platform, "us-1", "us-east", labels={"residency": "us"})
    register(platform, "us-2", "us-west", labels={"residency": "us"})
    add_deployment(platform, "d1", 3, residency="eu", min_clusters=2)
    for _ in range(3):
        platform.reconcile_once()
    assert counts(drivers, "d1") == {"eu-1": 3}
    route = platform.routing.table().models["m1"].deployments["d1"]
    assert route.residency == "eu"


def test_a_failing_and_a_stuck_cluster_stall_no_other(
    platform: Platform, drivers: dict[str, InstantCluster]
) -> None:
    register(platform, "broken", "us-east", priority=0)
    register(platform, "stuck", "us-east", priority=0)
    register(platform, "us-1", "us-east", priority=0)
    add_deployment(platform, "d1", 3, min_clusters=3)
    started = time.monotonic()
    for _ in range(4):
        platform.clock.now += 1  # type: ignore[attr-defined]
        platform.reconcile_once()
    # Four ticks, each waiting at most the call timeout for the stuck cluster.
    assert time.monotonic() - started < 4 * CALL_TIMEOUT_S + 3
    registry = ClusterRegistry(platform.store)
    assert "connection refused" in registry.get("broken").health.last_error
    assert "no answer within 0.5 s" in registry.get("stuck").health.last_error
    # Both are unhealthy for the placement now: every replica runs in the healthy cluster.
    assert counts(drivers, "d1") == {"us-1": 3}
    table = platform.routing.table()
    assert not table.clusters["broken"].healthy and not table.clusters["stuck"].healthy
    assert table.clusters["us-1"].healthy


def test_unschedulable_replicas_count_as_pending_for_lack_of_capacity() -> None:
    states = [
        ReplicaState("a", "d1", "http://a", ReplicaPhase.READY, cluster_id="eu-1"),
        ReplicaState("b", "d1", "", ReplicaPhase.STARTING, cluster_id="eu-1", unschedulable=True),
        ReplicaState("c", "d1", "", ReplicaPhase.STARTING, cluster_id="us-1"),
        ReplicaState("d", "d1", "", ReplicaPhase.FAILED, cluster_id="us-1"),
    ]
    assert count_by_cluster(states) == {
        "eu-1": ReplicaCounts(ready=1, pending_no_capacity=1),
        "us-1": ReplicaCounts(failed=1),
    }


class CrunchedCluster(InstantCluster):
    """Has room for one replica; the others wait for a node forever."""

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        return [
            ReplicaState(
                f"{deployment_id}-{i}",
                deployment_id,
                f"http://c{i}" if i == 0 else "",
                ReplicaPhase.READY if i == 0 else ReplicaPhase.STARTING,
                unschedulable=i > 0,
            )
            for i in range(self.counts.get(deployment_id, 0))
        ]


def test_a_capacity_crunch_moves_the_pending_replicas(tmp_path: Path) -> None:
    drivers = {"small": CrunchedCluster(), "big": InstantCluster()}
    settings = Settings(
        state_dir=tmp_path / "state", run_background_workers=False, cluster_kind="clusters"
    )
    clock = FakeClock()
    platform = Platform(settings, clock=clock, cluster_drivers=lambda c: drivers[c.id])
    try:
        platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
        register(platform, "small", "eu-west", priority=0)
        register(platform, "big", "eu-west", priority=10)
        add_deployment(platform, "d1", 3)
        registry = ClusterRegistry(platform.store)
        for _ in range(9):  # 90 s: past the 60 s crunch grace, and one tick to apply it
            for cluster_id in drivers:
                registry.heartbeat(cluster_id, clock.now)
            platform.reconcile_once()
            clock.now += 10
        assert drivers["small"].counts["d1"] == 1
        assert drivers["big"].counts["d1"] == 2
    finally:
        platform.close()


def test_outage_and_gradual_recovery_through_the_drivers(tmp_path: Path) -> None:
    drivers = {"a": InstantCluster(), "b": InstantCluster(), "c": InstantCluster()}
    settings = Settings(
        state_dir=tmp_path / "state", run_background_workers=False, cluster_kind="clusters"
    )
    clock = FakeClock()
    platform = Platform(settings, clock=clock, cluster_drivers=lambda c: drivers[c.id])
    registry = ClusterRegistry(platform.store)

    def run(seconds: int, beating: set[str]) -> dict[str, int]:
        for _ in range(seconds // 10):
            for cluster_id in beating:
                registry.heartbeat(cluster_id, clock.now)
            platform.reconcile_once()
            clock.now += 10
        return {cid: d.counts.get("d1", 0) for cid, d in drivers.items()}

    try:
        platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
        register(platform, "a", "eu-west", priority=0)  # preferred
        register(platform, "b", "us-east", priority=10)
        register(platform, "c", "us-west", priority=10)
        add_deployment(platform, "d1", 2, min_clusters=2)
        assert run(30, {"a", "b", "c"}) == {"a": 1, "b": 1, "c": 0}
        # a's heartbeats stop: past the 30 s timeout its replica is re-placed, and gateways
        # stop routing there.
        assert run(50, {"b", "c"}) == {"a": 0, "b": 1, "c": 1}
        assert not platform.routing.table().clusters["a"].healthy
        # Back, but held for 120 s: nothing returns yet.
        assert run(100, {"a", "b", "c"}) == {"a": 0, "b": 1, "c": 1}
        # After the hold, one move (make-before-break) back to the preferred cluster.
        assert run(60, {"a", "b", "c"}) == {"a": 1, "b": 1, "c": 0}
        assert platform.routing.table().clusters["a"].healthy
    finally:
        platform.close()


def test_one_tick_of_a_fresh_platform_applies_its_placement(tmp_path: Path) -> None:
    """A reconciler Lambda runs one tick per process: what it places must reach the drivers
    in that tick."""
    drivers = {"eu-1": InstantCluster(), "us-1": InstantCluster()}
    settings = Settings(
        state_dir=tmp_path / "state", run_background_workers=False, cluster_kind="clusters"
    )
    clock = FakeClock()
    first = Platform(settings, clock=clock, cluster_drivers=lambda c: drivers[c.id])
    first.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    register(first, "eu-1", "eu-west")
    register(first, "us-1", "us-east")
    add_deployment(first, "d1", 2, min_clusters=2)
    first.close()

    lambda_tick = Platform(settings, clock=clock, cluster_drivers=lambda c: drivers[c.id])
    try:
        lambda_tick.reconcile_once()
        # (before close: closing an InstantCluster forgets its replicas, unlike Kubernetes)
        assert {cid: d.counts.get("d1") for cid, d in drivers.items()} == {"eu-1": 1, "us-1": 1}
    finally:
        lambda_tick.close()
