"""Promotion drain: a replaced deployment keeps serving for ``promotion_drain_s``, then is retired.

Real SQLite store and services (a ``Platform``) with a fake clock; the reconcile loop runs tick
by tick against an in-memory cluster whose replicas are READY as soon as they are scaled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.domain.reconcile_policy import ReconcilerPolicy, Retire, Scale
from control_plane.domain.reconciler import Reconciler
from control_plane.domain.records import (
    DeploymentRecord,
    DeploymentStatus,
    EnvironmentRecord,
    ModelRecord,
)
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import START, FakeClock, InstantCluster

DRAIN_S = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cluster() -> InstantCluster:
    return InstantCluster()


@pytest.fixture
def platform(tmp_path: Path, clock: FakeClock, cluster: InstantCluster) -> Iterator[Platform]:
    settings = Settings(
        state_dir=tmp_path / "state", run_background_workers=False, promotion_drain_s=DRAIN_S
    )
    platform = Platform(settings, driver=cluster, clock=clock)
    repo = platform.repo
    repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    for name in ("development", "production"):
        repo.create_environment(EnvironmentRecord(model_id="m1", name=name, created_at=0.0))
    for dep_id in ("d1", "d2"):  # both ACTIVE with one READY replica
        cluster.counts[dep_id] = 1
        repo.create_deployment(
            DeploymentRecord(
                id=dep_id,
                model_id="m1",
                name=dep_id,
                status=DeploymentStatus.ACTIVE,
                created_at=0.0,
                status_changed_at=0.0,
                archive_sha256="0" * 64,
                config={"model_name": "m"},
                desired_replicas=1,
            )
        )
    yield platform
    platform.close()


def loop_of(platform: Platform) -> Reconciler:
    return Reconciler(
        platform.repo,
        platform.driver,
        platform.environments,
        platform.secrets,
        platform.blobs,
        ReconcilerPolicy(),
        platform.clock,
    )


def dep(platform: Platform, dep_id: str) -> DeploymentRecord:
    return platform.repo.get_deployment("m1", dep_id)


def state(platform: Platform, dep_id: str) -> tuple[DeploymentStatus, int, float | None]:
    record = dep(platform, dep_id)
    return record.status, record.desired_replicas, record.retire_at


def swap_d1_for_d2(platform: Platform) -> None:
    assert platform.environments.promote("m1", "production", "d1").completed
    assert platform.environments.promote("m1", "production", "d2").completed


def test_replaced_deployment_drains_then_loop_retires_it(
    platform: Platform, clock: FakeClock, cluster: InstantCluster
) -> None:
    loop = loop_of(platform)
    swap_d1_for_d2(platform)
    env = platform.repo.get_environment("m1", "production")
    assert env.current_deployment_id == "d2"
    # d1 keeps its replicas and ACTIVE while gateways may still route to it.
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, START + DRAIN_S)
    assert loop.tick() == [Scale("m1", "d1", 1), Scale("m1", "d2", 1)]  # restart: re-sent
    routing = platform.routing.content().models["m1"]
    assert routing.environments["production"] == "d2"
    assert [r.ready for r in routing.deployments["d1"].replicas] == [True]

    clock.now = START + DRAIN_S - 0.1
    assert loop.tick() == []
    assert cluster.counts["d1"] == 1

    clock.now = START + DRAIN_S
    assert loop.tick() == [Retire("m1", "d1")]
    assert state(platform, "d1") == (DeploymentStatus.INACTIVE, 0, None)
    assert cluster.counts["d1"] == 1  # the scale-down is decided from the stored record

    clock.now += 1.0
    assert loop.tick() == [Scale("m1", "d1", 0)]
    assert cluster.counts == {"d1": 0, "d2": 1}
    assert loop.tick() == []  # observes (and publishes) the stopped replicas
    assert platform.routing.content().models["m1"].deployments["d1"].replicas == []


def test_rollback_during_drain_is_immediate_and_cancels_retirement(
    platform: Platform, clock: FakeClock, cluster: InstantCluster
) -> None:
    loop = loop_of(platform)
    swap_d1_for_d2(platform)
    loop.tick()
    clock.now = START + DRAIN_S / 2
    rollback = platform.environments.promote("m1", "production", "d1")
    assert rollback.completed  # d1 never stopped: no waiting for it to come up
    assert rollback.environment.current_deployment_id == "d1"
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, None)
    assert state(platform, "d2") == (DeploymentStatus.ACTIVE, 1, clock.now + DRAIN_S)

    clock.now = START + DRAIN_S  # d1's old deadline passes: nothing happens to it
    assert loop.tick() == []
    clock.now = START + DRAIN_S / 2 + DRAIN_S
    assert loop.tick() == [Retire("m1", "d2")]
    assert loop.tick() == [Scale("m1", "d2", 0)]
    assert cluster.counts == {"d1": 1, "d2": 0}
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, None)


def test_rollback_after_the_drain_brings_the_deployment_up_first(
    platform: Platform, clock: FakeClock
) -> None:
    loop = loop_of(platform)
    swap_d1_for_d2(platform)
    clock.now = START + DRAIN_S
    assert Retire("m1", "d1") in loop.tick()
    rollback = platform.environments.promote("m1", "production", "d1")
    assert not rollback.completed  # d1 was stopped: the swap waits until it is ACTIVE
    assert rollback.environment.current_deployment_id == "d2"
    assert state(platform, "d1") == (DeploymentStatus.DEPLOYING, 1, None)
    assert state(platform, "d2") == (DeploymentStatus.ACTIVE, 1, None)  # keeps serving


def test_activate_cancels_the_drain_but_wake_does_not(platform: Platform, clock: FakeClock) -> None:
    swap_d1_for_d2(platform)
    woken = platform.deployments.wake("m1", "d1")
    assert woken.retire_at == START + DRAIN_S  # a gateway wake keeps the drain going
    activated = platform.deployments.activate("m1", "d1")
    assert (activated.status, activated.desired_replicas, activated.retire_at) == (
        DeploymentStatus.ACTIVE,
        1,
        None,
    )
    clock.now = START + 2 * DRAIN_S
    assert loop_of(platform).tick() == [Scale("m1", "d1", 1), Scale("m1", "d2", 1)]
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, None)


def test_deactivate_during_drain_stops_at_once(platform: Platform) -> None:
    swap_d1_for_d2(platform)
    stopped = platform.deployments.deactivate("m1", "d1")
    assert (stopped.status, stopped.desired_replicas, stopped.retire_at) == (
        DeploymentStatus.INACTIVE,
        0,
        None,
    )


def test_retire_due_keeps_a_deployment_that_serves_again(
    platform: Platform, clock: FakeClock
) -> None:
    swap_d1_for_d2(platform)
    environments = platform.environments
    clock.now = START + 1.0
    assert not environments.retire_due("m1", "d1")  # not due yet: unchanged
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, START + DRAIN_S)
    # The development environment took d1 over (a promotion whose join we simulate by
    # writing the environment directly): the retirement is dropped, even when due.
    platform.repo.update_environment(
        "m1", "development", lambda env: setattr(env, "current_deployment_id", "d1")
    )
    clock.now = START + DRAIN_S + 1.0
    assert not environments.retire_due("m1", "d1")
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, None)


def test_serving_again_ends_the_drain_and_zero_drain_retires_at_once(
    tmp_path: Path, platform: Platform, clock: FakeClock
) -> None:
    swap_d1_for_d2(platform)
    platform.environments.promote("m1", "development", "d1")  # d1 serves development now
    assert state(platform, "d1") == (DeploymentStatus.ACTIVE, 1, None)
    clock.now += 3.0
    platform.environments.promote("m1", "development", "d2")  # d1 replaced again
    assert dep(platform, "d1").retire_at == clock.now + DRAIN_S

    immediate = Platform(
        Settings(state_dir=tmp_path / "state", run_background_workers=False, promotion_drain_s=0),
        clock=clock,
    )
    try:
        immediate.environments.promote("m1", "development", "d1")
        assert immediate.environments.promote("m1", "development", "d2").completed
        assert state(immediate, "d1") == (DeploymentStatus.INACTIVE, 0, None)
    finally:
        immediate.close()
