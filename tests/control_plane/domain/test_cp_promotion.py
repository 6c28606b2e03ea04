"""Environments and promotion against the real SQLite store, with a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.domain import lifecycle
from control_plane.domain.environments import EnvironmentService
from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    EnvironmentRecord,
    ModelRecord,
)
from control_plane.domain.repository import Repository
from control_plane.exceptions import Conflict, PromotionInProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    store = SqliteMetadataStore(tmp_path / "plinth.db")
    repo = Repository(store)
    repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    for name in ("development", "production"):
        repo.create_environment(EnvironmentRecord(model_id="m1", name=name, created_at=0.0))
    return repo


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(repo: Repository, clock: FakeClock) -> EnvironmentService:
    # No drain: the replaced deployment retires at once (the drain: test_cp_promotion_drain).
    return EnvironmentService(repo, clock, promotion_timeout_s=600.0, promotion_drain_s=0.0)


def add_deployment(
    repo: Repository, dep_id: str, status: DeploymentStatus, desired: int = 1
) -> None:
    repo.create_deployment(
        DeploymentRecord(
            id=dep_id,
            model_id="m1",
            name=dep_id,
            status=status,
            created_at=0.0,
            status_changed_at=0.0,
            archive_sha256="0" * 64,
            config={},
            desired_replicas=desired,
        )
    )


def set_status(repo: Repository, dep_id: str, status: DeploymentStatus) -> None:
    repo.update_deployment("m1", dep_id, lambda dep: lifecycle.observe_status(dep, status, 0.0))


def test_promote_active_swaps_and_retires_previous(
    repo: Repository, service: EnvironmentService
) -> None:
    add_deployment(repo, "d1", DeploymentStatus.ACTIVE)
    add_deployment(repo, "d2", DeploymentStatus.ACTIVE)
    service.update_autoscaling("m1", "production", {"min_replica": 2, "max_replica": 3})

    first = service.promote("m1", "production", "d1")
    assert first.completed and first.environment.current_deployment_id == "d1"
    d1 = repo.get_deployment("m1", "d1")
    assert d1.autoscaling_settings.min_replica == 2 and d1.desired_replicas == 2

    second = service.promote("m1", "production", "d2")
    env = second.environment
    assert (env.current_deployment_id, env.previous_deployment_id) == ("d2", "d1")
    assert [h["deployment_id"] for h in env.history] == ["d1", "d2"]
    assert env.promotion is None
    retired = repo.get_deployment("m1", "d1")
    assert (retired.status, retired.desired_replicas) == (DeploymentStatus.INACTIVE, 0)
    assert repo.get_deployment("m1", "d2").desired_replicas == 2


def test_replaced_deployment_still_serving_elsewhere_is_kept(
    repo: Repository, service: EnvironmentService
) -> None:
    add_deployment(repo, "d1", DeploymentStatus.ACTIVE)
    add_deployment(repo, "d2", DeploymentStatus.ACTIVE)
    service.promote("m1", "development", "d1")
    service.promote("m1", "production", "d1")
    service.promote("m1", "production", "d2")
    kept = repo.get_deployment("m1", "d1")
    assert (kept.status, kept.desired_replicas) == (DeploymentStatus.ACTIVE, 1)


def test_rollback_to_inactive_waits_until_active(
    repo: Repository, service: EnvironmentService, clock: FakeClock
) -> None:
    add_deployment(repo, "d1", DeploymentStatus.ACTIVE)
    add_deployment(repo, "d2", DeploymentStatus.ACTIVE)
    service.promote("m1", "production", "d1")
    service.promote("m1", "production", "d2")  # d1 is now INACTIVE

    result = service.promote("m1", "production", "d1")
    assert not result.completed
    assert result.environment.current_deployment_id == "d2"  # unchanged until d1 is up
    assert result.environment.promotion is not None
    waking = repo.get_deployment("m1", "d1")
    assert waking.status == DeploymentStatus.DEPLOYING and waking.desired_replicas == 1
    assert waking.target_environment == "production"
    with pytest.raises(PromotionInProgress):
        service.promote("m1", "production", "d2")
    assert not service.complete_pending("m1", "d1")  # not ACTIVE yet

    set_status(repo, "d1", DeploymentStatus.ACTIVE)  # what the reconciler does
    assert service.complete_pending("m1", "d1")
    env = repo.get_environment("m1", "production")
    assert (env.current_deployment_id, env.previous_deployment_id, env.promotion) == (
        "d1",
        "d2",
        None,
    )
    assert repo.get_deployment("m1", "d1").target_environment is None
    assert repo.get_deployment("m1", "d2").status == DeploymentStatus.INACTIVE


def test_failed_target_releases_lock_and_changes_nothing(
    repo: Repository, service: EnvironmentService
) -> None:
    add_deployment(repo, "d1", DeploymentStatus.ACTIVE)
    add_deployment(repo, "d2", DeploymentStatus.INACTIVE, desired=0)
    service.promote("m1", "production", "d1")
    assert not service.promote("m1", "production", "d2").completed
    set_status(repo, "d2", DeploymentStatus.FAILED)
    service.abandon_pending("m1", "d2")
    env = repo.get_environment("m1", "production")
    assert (env.current_deployment_id, env.promotion) == ("d1", None)
    with pytest.raises(Conflict):
        service.promote("m1", "production", "d2")  # FAILED cannot be promoted


def test_stale_lock_is_taken_over(
    repo: Repository, service: EnvironmentService, clock: FakeClock
) -> None:
    add_deployment(repo, "d1", DeploymentStatus.INACTIVE, desired=0)
    add_deployment(repo, "d2", DeploymentStatus.ACTIVE)
    service.promote("m1", "production", "d1")
    with pytest.raises(PromotionInProgress):
        service.promote("m1", "production", "d2")
    clock.now += 601.0  # the holder never finished (crashed control plane)
    assert service.promote("m1", "production", "d2").completed


def test_concurrent_promotions_have_one_winner(
    repo: Repository, service: EnvironmentService
) -> None:
    for index in range(6):
        add_deployment(repo, f"d{index}", DeploymentStatus.INACTIVE, desired=0)
    barrier = threading.Barrier(6)
    outcomes: dict[str, str] = {}

    def promote(dep_id: str) -> None:
        barrier.wait(timeout=10)
        try:
            service.promote("m1", "production", dep_id)
            outcomes[dep_id] = "won"
        except PromotionInProgress:
            outcomes[dep_id] = "409"

    threads = [threading.Thread(target=promote, args=(f"d{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [dep for dep, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == 6 and len(winners) == 1
    env = repo.get_environment("m1", "production")
    assert env.promotion is not None and env.promotion.deployment_id == winners[0]
    brought_up = [d.id for d in repo.list_deployments("m1") if d.desired_replicas > 0]
    assert brought_up == winners  # losers changed nothing


def test_autoscaling_settings_validation_names_field() -> None:
    with pytest.raises(Exception, match="target_utilization_percentage"):
        AutoscalingSettings().with_changes({"target_utilization_percentage": 0})
    assert AutoscalingSettings(min_replica=0, max_replica=3).clamp(5) == 3
