"""Queued async work is autoscaler load: async_predict -> the backlog -> the reconciler tick.

A real ``Platform`` (SQLite metadata store and queue) with a fake clock and an in-memory
cluster. Requests are queued through ``AsyncRequestService`` as the ``async_predict`` route
queues them, and leave the queue as the worker takes them (``claim``), by cancel or by expiry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.domain.async_requests import parse_request
from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    ModelRecord,
)
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import FakeClock, InstantCluster

START = 1_000_000.0
SETTINGS = AutoscalingSettings(
    min_replica=0, max_replica=4, autoscaling_window=10, scale_down_delay=4
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def cluster() -> InstantCluster:
    return InstantCluster()


@pytest.fixture
def platform(tmp_path: Path, clock: FakeClock, cluster: InstantCluster) -> Iterator[Platform]:
    settings = Settings(state_dir=tmp_path / "state", run_background_workers=False)
    platform = Platform(settings, driver=cluster, clock=clock)
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    for dep_id in ("d1", "other"):
        platform.repo.create_deployment(
            DeploymentRecord(
                id=dep_id,
                model_id="m1",
                name=dep_id,
                status=DeploymentStatus.INACTIVE,
                created_at=0.0,
                status_changed_at=0.0,
                archive_sha256="0" * 64,
                config={"model_name": "m"},
                desired_replicas=0,
                autoscaling_settings=SETTINGS,
            )
        )
    yield platform
    platform.close()


def queue_async(platform: Platform, count: int, *, deployment_id: str = "d1") -> list[str]:
    body = json.dumps({"model_input": {"x": 1}, "max_time_in_queue_seconds": 60}).encode()
    spec = parse_request(body, check_webhook=lambda url: None)
    return [platform.async_requests.submit("m1", deployment_id, spec) for _ in range(count)]


def tick(platform: Platform, clock: FakeClock) -> None:
    clock.now += 1.0
    platform.reconcile_once()


def record(platform: Platform, deployment_id: str = "d1") -> DeploymentRecord:
    return platform.repo.get_deployment("m1", deployment_id)


def test_a_deep_async_queue_wakes_a_deployment_at_zero_and_scales_it_up(
    platform: Platform, clock: FakeClock, cluster: InstantCluster
) -> None:
    tick(platform, clock)
    assert record(platform).desired_replicas == 0  # nothing queued: stays at zero
    queue_async(platform, 3)
    tick(platform, clock)
    woken = record(platform)
    # 3 queued need ceil(3 / 0.7) = 5, clamped to max_replica 4.
    assert woken.desired_replicas == 4 and woken.status == DeploymentStatus.DEPLOYING
    assert cluster.counts["d1"] == 4  # the same tick scaled the cluster
    assert record(platform, "other").desired_replicas == 0  # another deployment's queue is its own
    event = platform.autoscaler.scaling_events("m1", "d1")[-1]
    assert (event.from_replicas, event.to_replicas) == (0, 4)
    assert "async backlog of 3 queued request(s)" in event.reason
    assert "at max_replica" in event.reason


def test_one_queued_request_wakes_one_replica_and_the_backlog_holds_it_up(
    platform: Platform, clock: FakeClock
) -> None:
    [request_id] = queue_async(platform, 1)
    tick(platform, clock)
    assert record(platform).desired_replicas == 2  # ceil(1 / 0.7)
    for _ in range(3 * SETTINGS.scale_down_delay):
        tick(platform, clock)
    assert record(platform).desired_replicas == 2  # still queued: no step down
    platform.async_requests.claim(request_id)  # the worker took it: the gateway counts it now
    for _ in range(4 * SETTINGS.scale_down_delay):
        tick(platform, clock)
    assert record(platform).desired_replicas == 0


def test_claimed_canceled_and_expired_requests_leave_the_backlog(
    platform: Platform, clock: FakeClock
) -> None:
    backlog = platform.async_requests.backlog
    ids = queue_async(platform, 4)
    assert backlog.count("m1", "d1", clock.now) == 4
    platform.async_requests.claim(ids[0])
    platform.async_requests.cancel(ids[1])
    assert backlog.count("m1", "d1", clock.now) == 2
    clock.now += 61.0  # past max_time_in_queue_seconds: not load any more, and purged
    assert backlog.count("m1", "d1", clock.now) == 0
    platform.async_requests.purge()  # expires the two (their entries are already gone)
    assert platform.async_requests.view(ids[2])["status"] == "EXPIRED"
    assert platform.store.scan("async_queued#m1/d1") == []


def test_a_deactivated_deployment_without_a_backlog_stays_down(
    platform: Platform, clock: FakeClock
) -> None:
    queue_async(platform, 2, deployment_id="other")
    for _ in range(3):
        tick(platform, clock)
    assert record(platform).desired_replicas == 0
    assert record(platform, "other").desired_replicas == 3
