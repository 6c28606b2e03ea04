"""A deletion that lands while a reconciler tick is scaling the deployment orphans nothing.

The tick reads the record (one replica wanted), the deletion then runs to completion (mark,
scale to zero, remove the record), and only then does the tick's scale reach the cluster.
Without a check after its own scale the replica would run forever: no record is left for a
later tick to see. Real SQLite store, in-memory cluster whose scale call lets the deletion
slip in at exactly that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control_plane.domain.records import DeploymentRecord, DeploymentStatus, ModelRecord
from control_plane.ports.cluster import ReplicaSpec
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import FakeClock, InstantCluster


class DeletionSlipsIn(InstantCluster):
    """Runs ``before_first_scale_up`` between the tick's read and its scale landing."""

    def __init__(self) -> None:
        super().__init__()
        self.before_first_scale_up: Callable[[], object] | None = None
        self.calls: list[int] = []

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        hook, self.before_first_scale_up = self.before_first_scale_up, None
        if replicas > 0 and hook is not None:
            hook()
        self.calls.append(replicas)
        super().scale(spec, replicas)


@pytest.fixture
def cluster() -> DeletionSlipsIn:
    return DeletionSlipsIn()


@pytest.fixture
def platform(tmp_path: Path, cluster: DeletionSlipsIn) -> Iterator[Platform]:
    settings = Settings(state_dir=tmp_path / "state", run_background_workers=False)
    platform = Platform(settings, driver=cluster, clock=FakeClock(1_000.0))
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    platform.repo.create_deployment(
        DeploymentRecord(
            id="d1",
            model_id="m1",
            name="d1",
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


def test_deletion_during_a_scale_up_leaves_no_replica(
    platform: Platform, cluster: DeletionSlipsIn
) -> None:
    cluster.before_first_scale_up = lambda: platform.deletion.delete_deployment(
        "m1", "d1", force=True
    )
    platform.reconcile_once()
    assert cluster.calls == [0, 1, 0]  # the deletion's zero, the stale scale, its undo
    assert cluster.replicas("d1") == []
    assert platform.repo.list_deployments() == []
    platform.reconcile_once()  # nothing left for later ticks to do
    assert cluster.calls == [0, 1, 0]


def test_a_scale_up_with_no_deletion_is_kept(platform: Platform, cluster: DeletionSlipsIn) -> None:
    platform.reconcile_once()
    assert cluster.calls == [1]
    assert len(cluster.replicas("d1")) == 1
