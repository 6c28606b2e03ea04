"""The reconciler runs placement over the registered clusters and records it, driving
nothing new: the platform's one driver scales exactly as without clusters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.domain.cluster_registry import CLUSTERS, ClusterRegistry
from control_plane.domain.clusters import Cluster, GeoPoint
from control_plane.domain.placement_recorder import (
    CLUSTER_HEALTH_PREFIX,
    PLACEMENTS,
    attribute_replicas,
    replica_resources,
)
from control_plane.domain.placement_types import ReplicaCounts
from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    ModelRecord,
)
from control_plane.ports.cluster import ReplicaPhase, ReplicaState
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import FakeClock, InstantCluster


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def driver() -> InstantCluster:
    return InstantCluster()


@pytest.fixture
def platform(tmp_path: Path, clock: FakeClock, driver: InstantCluster) -> Iterator[Platform]:
    settings = Settings(state_dir=tmp_path / "state", run_background_workers=False)
    platform = Platform(settings, driver=driver, clock=clock)
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    yield platform
    platform.close()


def add_deployment(platform: Platform, dep_id: str, desired: int, **config: Any) -> None:
    platform.repo.create_deployment(
        DeploymentRecord(
            id=dep_id,
            model_id="m1",
            name=dep_id,
            status=DeploymentStatus.ACTIVE,
            created_at=0.0,
            status_changed_at=0.0,
            archive_sha256="0" * 64,
            config={"model_name": "m", **config},
            desired_replicas=desired,
            # The autoscaler runs in the same tick: bounds that keep the count as it is.
            autoscaling_settings=AutoscalingSettings(
                min_replica=desired, max_replica=max(desired, 1)
            ),
        )
    )


def register(platform: Platform, cluster_id: str, capacity: dict[str, int], **fields: Any) -> None:
    registry = ClusterRegistry(platform.store)
    cluster = Cluster(cluster_id, "local", "here", GeoPoint(0, 0), capacity=capacity, **fields)
    registry.register(cluster)
    registry.heartbeat(cluster_id, platform.clock())


def placement_of(platform: Platform, key: str) -> dict[str, Any] | None:
    item = platform.store.get(PLACEMENTS, key)
    return None if item is None else dict(item.value)


def test_without_registered_clusters_nothing_is_recorded(
    platform: Platform, driver: InstantCluster
) -> None:
    add_deployment(platform, "d1", 2)
    platform.reconcile_once()
    assert driver.counts == {"d1": 2}
    assert platform.store.scan(PLACEMENTS) == []


def test_one_cluster_records_where_the_driver_runs_them(
    platform: Platform, driver: InstantCluster, clock: FakeClock
) -> None:
    register(platform, "local", {"cpu": 8})
    add_deployment(platform, "d1", 2)
    platform.reconcile_once()
    assert driver.counts == {"d1": 2}  # today's behaviour, unchanged
    first = placement_of(platform, "m1/d1")
    assert first is not None and first["replicas"] == {"local": 2}

    clock.now += 5
    ClusterRegistry(platform.store).heartbeat("local", clock.now)
    platform.reconcile_once()
    assert placement_of(platform, "m1/d1") == first  # stable: nothing new decided

    def three_replicas(dep: DeploymentRecord) -> bool:
        dep.desired_replicas = 3
        dep.autoscaling_settings = AutoscalingSettings(min_replica=3, max_replica=3)
        return True

    platform.repo.update_deployment("m1", "d1", three_replicas)
    clock.now += 5
    ClusterRegistry(platform.store).heartbeat("local", clock.now)
    platform.reconcile_once()
    assert driver.counts == {"d1": 3}
    recorded = placement_of(platform, "m1/d1")
    assert recorded is not None and recorded["replicas"] == {"local": 3}


def test_shortfall_and_cluster_health_are_recorded(platform: Platform, clock: FakeClock) -> None:
    register(platform, "gpu", {"H100": 2})
    add_deployment(platform, "d1", 2, resources={"accelerator": "H100:2"})
    platform.reconcile_once()
    recorded = placement_of(platform, "m1/d1")
    assert recorded is not None and recorded["replicas"] == {"gpu": 1}
    assert recorded["shortfall"]["missing"] == 1
    assert "not enough free H100 capacity" in recorded["shortfall"]["reason"]

    clock.now += 120  # no heartbeat since: the cluster is marked unhealthy
    platform.reconcile_once()
    health = platform.store.get(PLACEMENTS, f"{CLUSTER_HEALTH_PREFIX}gpu")
    assert health is not None and health.value["healthy"] is False
    assert "no heartbeat for 120 s" in health.value["reason"]
    recorded = placement_of(platform, "m1/d1")
    assert recorded is not None and recorded["replicas"] == {"gpu": 0}
    assert "every cluster anywhere is unhealthy" in recorded["shortfall"]["reason"]


def test_a_broken_cluster_record_does_not_stall_reconciling(
    platform: Platform, driver: InstantCluster
) -> None:
    platform.store.put(CLUSTERS, "broken", {"id": "broken"})  # no cloud, region, location
    add_deployment(platform, "d1", 1)
    platform.reconcile_once()
    assert driver.counts == {"d1": 1}
    assert platform.store.scan(PLACEMENTS) == []


def test_replica_resources_and_attribution() -> None:
    assert replica_resources({}) == ("cpu", 1)
    assert replica_resources({"resources": {"accelerator": "H100:4"}}) == ("H100", 4)
    assert replica_resources({"resources": {"accelerator": "L4"}}) == ("L4", 1)

    def states(ready: int, failed: int = 0) -> list[ReplicaState]:
        phases = [ReplicaPhase.READY] * ready + [ReplicaPhase.FAILED] * failed
        return [ReplicaState(f"r{i}", "d", "", phase) for i, phase in enumerate(phases)]

    assert attribute_replicas(states(3), {"a": 1, "b": 2}, ["a", "b"]) == {
        "a": ReplicaCounts(ready=1),
        "b": ReplicaCounts(ready=2),
    }
    assert attribute_replicas(states(2, failed=1), {}, ["b", "a"]) == {
        "a": ReplicaCounts(ready=2, failed=1)
    }
    assert attribute_replicas([], {"a": 1}, ["a"]) == {}
