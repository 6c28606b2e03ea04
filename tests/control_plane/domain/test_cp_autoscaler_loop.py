"""The autoscaler loop: load reports -> decide -> lifecycle -> cluster, with the scaling history.

Real SQLite store and load-report store (a ``Platform``) with a fake clock; the reconciler
ticks once a simulated second against an in-memory cluster whose replicas are READY as soon as
they are scaled. Reports go in as a gateway sends them (``Autoscaler.record_load``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.domain.autoscaler import MAX_SCALING_EVENTS, DeploymentLoad, ScalingEvent
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
    min_replica=0, max_replica=3, autoscaling_window=10, scale_down_delay=4
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def cluster() -> InstantCluster:
    return InstantCluster()


def _platform(state_dir: Path, clock: FakeClock, cluster: InstantCluster) -> Platform:
    settings = Settings(state_dir=state_dir, run_background_workers=False)
    return Platform(settings, driver=cluster, clock=clock)


@pytest.fixture
def platform(tmp_path: Path, clock: FakeClock, cluster: InstantCluster) -> Iterator[Platform]:
    platform = _platform(tmp_path / "state", clock, cluster)
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    cluster.counts["d1"] = 1
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
            autoscaling_settings=SETTINGS,
        )
    )
    yield platform
    platform.close()


def second(
    platform: Platform, clock: FakeClock, *, in_flight: int = 0, gateway: str = "g1"
) -> None:
    """One simulated second: a gateway's report, then a reconciler tick."""
    clock.now += 1.0
    load = DeploymentLoad("m1", "d1", in_flight=in_flight, arrivals=in_flight)
    platform.autoscaler.record_load(gateway, clock.now, [load])
    platform.reconcile_once()


def desired(platform: Platform) -> int:
    return platform.repo.get_deployment("m1", "d1").desired_replicas


def steps(platform: Platform) -> list[tuple[int, int]]:
    events = platform.autoscaler.scaling_events("m1", "d1")
    return [(e.from_replicas, e.to_replicas) for e in events]


def test_load_scales_up_at_once_then_down_in_steps_to_zero(
    platform: Platform, clock: FakeClock, cluster: InstantCluster
) -> None:
    second(platform, clock, in_flight=3)
    second(platform, clock, in_flight=3)
    assert desired(platform) == 3  # the panic window: 3 in flight need 5, clamped to 3
    assert cluster.counts["d1"] == 3  # the same tick scaled the cluster
    for _ in range(5):
        second(platform, clock, in_flight=3)
    assert desired(platform) == 3
    counts = []
    for _ in range(40):
        second(platform, clock)
        counts.append(desired(platform))
    assert counts[-1] == 0 and cluster.counts["d1"] == 0
    assert sorted(set(counts), reverse=True) == [3, 1, 0]  # half the excess per step
    record = platform.repo.get_deployment("m1", "d1")
    assert record.status == DeploymentStatus.INACTIVE
    assert steps(platform) == [(1, 3), (3, 1), (1, 0)]
    reasons = [e.reason for e in platform.autoscaler.scaling_events("m1", "d1")]
    assert reasons[0].startswith("scale up 1 -> 3") and "at max_replica" in reasons[0]
    assert reasons[1].startswith("scale down 3 -> 1") and "half the excess" in reasons[1]
    assert reasons[2].startswith("scale down 1 -> 0")


def test_a_step_down_waits_the_delay_each_time(platform: Platform, clock: FakeClock) -> None:
    for _ in range(3):
        second(platform, clock, in_flight=3)
    events_at: list[float] = []
    for _ in range(40):
        second(platform, clock)
    events = platform.autoscaler.scaling_events("m1", "d1")
    events_at = [e.at for e in events]
    assert events_at[2] - events_at[1] >= SETTINGS.scale_down_delay  # 3 -> 1, then 1 -> 0


def test_a_wake_at_zero_is_recorded_and_the_loop_takes_over(
    platform: Platform, clock: FakeClock, cluster: InstantCluster
) -> None:
    for _ in range(30):
        second(platform, clock)
    assert desired(platform) == 0
    platform.deployments.wake("m1", "d1")  # what the gateway's parked request does
    assert desired(platform) == 1
    second(platform, clock, in_flight=1)
    assert cluster.counts["d1"] == 1
    assert steps(platform)[-1] == (0, 1)
    assert "outside the autoscaler" in platform.autoscaler.scaling_events("m1", "d1")[-1].reason


def test_the_state_survives_a_control_plane_restart(
    platform: Platform, clock: FakeClock, cluster: InstantCluster, tmp_path: Path
) -> None:
    for _ in range(3):
        second(platform, clock, in_flight=3)
    for _ in range(3):  # the load stopped; the delay has begun, not ended
        second(platform, clock)
    assert desired(platform) == 3
    before, _ = platform.autoscaler._load_state("m1/d1")
    assert before is not None and before.below_since is not None
    restarted = _platform(tmp_path / "state", clock, cluster)
    try:
        while desired(restarted) == 3:
            second(restarted, clock)
        # The delay kept counting across the restart: the step came on time, not 4 s later.
        assert clock.now - before.below_since == SETTINGS.scale_down_delay
    finally:
        restarted.close()


def test_two_gateways_reports_add_up(platform: Platform, clock: FakeClock) -> None:
    for _ in range(12):
        clock.now += 1.0
        for gateway in ("g1", "g2"):
            load = DeploymentLoad("m1", "d1", in_flight=1, arrivals=1)
            platform.autoscaler.record_load(gateway, clock.now, [load])
        platform.reconcile_once()
    assert desired(platform) == 3  # 2 in flight need ceil(2 / 0.7) = 3


def test_an_api_change_wins_over_a_decision_and_min_replica_holds(
    platform: Platform, clock: FakeClock
) -> None:
    platform.deployments.update_autoscaling("m1", "d1", {"min_replica": 2})
    for _ in range(30):
        second(platform, clock)
    assert desired(platform) == 2


def test_unknown_deployments_in_a_report_are_skipped(platform: Platform, clock: FakeClock) -> None:
    loads = [DeploymentLoad("m1", "gone", in_flight=1), DeploymentLoad("m1", "d1", in_flight=1)]
    assert platform.autoscaler.record_load("g1", clock.now, loads) == 1


def test_the_history_keeps_the_last_events(platform: Platform) -> None:
    events = [ScalingEvent(float(i), i, i + 1, f"step {i}") for i in range(MAX_SCALING_EVENTS + 20)]
    state, _ = platform.autoscaler._load_state("m1/d1")
    from control_plane.domain.autoscaling import AutoscalerState

    platform.autoscaler._save_state("m1/d1", state or AutoscalerState(desired=1), events)
    kept = platform.autoscaler.scaling_events("m1", "d1")
    assert len(kept) == MAX_SCALING_EVENTS
    assert kept[-1].reason == f"step {MAX_SCALING_EVENTS + 19}"


def test_a_deactivate_and_the_wake_after_it_are_in_the_history(
    platform: Platform, clock: FakeClock
) -> None:
    second(platform, clock)
    platform.deployments.deactivate("m1", "d1")
    second(platform, clock)
    platform.deployments.wake("m1", "d1")
    second(platform, clock, in_flight=1)
    assert steps(platform) == [(1, 0), (0, 1)]
    reasons = [e.reason for e in platform.autoscaler.scaling_events("m1", "d1")]
    assert "deactivate" in reasons[0] and "wake" in reasons[1]


def test_a_change_made_between_the_decision_and_its_write_wins(
    platform: Platform, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = platform.repo
    original = repo.update_deployment

    def activate_first(model_id: str, deployment_id: str, change: Any) -> DeploymentRecord:
        # Another writer (here: new settings with min_replica 2) lands just before ours.
        monkeypatch.setattr(repo, "update_deployment", original)
        platform.deployments.update_autoscaling(model_id, deployment_id, {"min_replica": 2})
        return original(model_id, deployment_id, change)

    monkeypatch.setattr(repo, "update_deployment", activate_first)
    second(platform, clock, in_flight=3)
    second(platform, clock, in_flight=3)  # the autoscaler decides 3; the settings made it 2
    assert desired(platform) == 2
    assert steps(platform) == []  # the refused decision is not in the history
    second(platform, clock, in_flight=3)
    assert desired(platform) == 3
    assert steps(platform) == [(1, 2), (2, 3)]
