"""Conditional environment writes lose to a writer that committed after the read, every time.

No thread race: the other writer commits at a chosen point (between the first writer's read
and its conditional write), against every metadata store adapter (SQLite; DynamoDB on moto).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from control_plane.domain.environments import EnvironmentService
from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    EnvironmentRecord,
    ModelRecord,
    PromotionLock,
)
from control_plane.domain.repository import ENVIRONMENTS, Repository
from control_plane.exceptions import PromotionInProgress
from control_plane.ports.store import MetadataStore, VersionConflict


class CommitFirst:
    """The real store, except that before the next conditional write to ``table`` another
    writer's change (``interloper``) is committed, once."""

    def __init__(self, store: MetadataStore, table: str, interloper: Callable[[], None]) -> None:
        self._store = store
        self._table = table
        self._interloper: Callable[[], None] | None = interloper

    def put(self, table: str, key: str, value: dict[str, Any], **kwargs: Any) -> int:
        if table == self._table and kwargs.get("expected_version") and self._interloper:
            interloper, self._interloper = self._interloper, None
            interloper()
        return self._store.put(table, key, value, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def seed(store: MetadataStore) -> Repository:
    repo = Repository(store)
    repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    repo.create_environment(EnvironmentRecord(model_id="m1", name="production", created_at=0.0))
    for dep_id in ("d1", "d2"):
        repo.create_deployment(
            DeploymentRecord(
                id=dep_id,
                model_id="m1",
                name=dep_id,
                status=DeploymentStatus.INACTIVE,
                created_at=0.0,
                status_changed_at=0.0,
                archive_sha256="0" * 64,
                config={},
            )
        )
    return repo


def test_stale_conditional_write_raises_and_keeps_the_newer_write(
    metadata_store: MetadataStore,
) -> None:
    repo = seed(metadata_store)
    first = repo.get_environment("m1", "production")
    second = repo.get_environment("m1", "production")
    second.promotion = PromotionLock(deployment_id="d2", started_at=1.0)
    repo.put_environment_if_unchanged(second)  # the other writer commits first

    first.promotion = PromotionLock(deployment_id="d1", started_at=2.0)
    with pytest.raises(VersionConflict):
        repo.put_environment_if_unchanged(first)
    stored = repo.get_environment("m1", "production")
    assert stored.promotion == PromotionLock(deployment_id="d2", started_at=1.0)
    assert stored.version == second.version == first.version + 1


def test_promotion_that_read_before_another_committed_gets_409_and_changes_nothing(
    metadata_store: MetadataStore,
) -> None:
    other = seed(metadata_store)

    def another_promotion_commits() -> None:
        env = other.get_environment("m1", "production")
        env.promotion = PromotionLock(deployment_id="d2", started_at=5.0)
        other.put_environment_if_unchanged(env)

    store = CommitFirst(metadata_store, ENVIRONMENTS, another_promotion_commits)
    service = EnvironmentService(
        Repository(store),  # type: ignore[arg-type]
        lambda: 10.0,
        promotion_timeout_s=600.0,
        promotion_drain_s=0.0,
    )
    with pytest.raises(PromotionInProgress, match="changed during the promotion"):
        service.promote("m1", "production", "d1")
    env = other.get_environment("m1", "production")
    assert env.promotion == PromotionLock(deployment_id="d2", started_at=5.0)
    d1 = other.get_deployment("m1", "d1")
    assert (d1.status, d1.desired_replicas, d1.target_environment) == (
        DeploymentStatus.INACTIVE,
        0,
        None,
    )


def test_read_modify_write_retries_and_keeps_both_changes(metadata_store: MetadataStore) -> None:
    other = seed(metadata_store)

    def another_writer_commits() -> None:
        env = other.get_environment("m1", "production")
        env.promotion = PromotionLock(deployment_id="d2", started_at=5.0)
        other.put_environment_if_unchanged(env)

    repo = Repository(CommitFirst(metadata_store, ENVIRONMENTS, another_writer_commits))  # type: ignore[arg-type]
    calls = 0

    def change(env: EnvironmentRecord) -> None:
        nonlocal calls
        calls += 1
        env.autoscaling_settings = AutoscalingSettings(min_replica=1, max_replica=2)

    updated = repo.update_environment("m1", "production", change)
    assert calls == 2  # the first attempt read a version that was gone by its write
    stored = other.get_environment("m1", "production")
    assert stored.autoscaling_settings.min_replica == 1
    assert stored.promotion == PromotionLock(deployment_id="d2", started_at=5.0)
    assert updated.version == stored.version
