"""Cold-start phases: seconds per phase from a driver's timestamps, and the recorder that stores
each replica start once (deployment's last start, scaling history, metrics). Real SQLite store,
fake clock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from control_plane.domain.autoscaler import AUTOSCALER, ScalingEvent, append_scaling_event
from control_plane.domain.cold_starts import ColdStartRecord, ColdStartRecorder, last_cold_start
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.ports.cluster import ColdStart, ReplicaPhase, ReplicaState
from control_plane.ports.metrics import NoMetrics
from control_plane.ports.store import MetadataStore
from control_plane.settings import Settings
from control_plane.wiring import Platform
from tests.support.fakes import FakeClock

T0 = 1_000_000.0


@pytest.mark.parametrize(
    ("env", "weights", "expected"),
    [
        # local driver: every phase known
        (T0 + 2, T0 + 5, {"environment": 2.0, "weights": 3.0, "model_load": 4.0, "total": 9.0}),
        # Kubernetes: weights are fetched inside the load
        (T0 + 40, None, {"environment": 40.0, "weights": None, "model_load": -31.0, "total": 9.0}),
        (None, None, {"environment": None, "weights": None, "model_load": 9.0, "total": 9.0}),
    ],
)
def test_phase_seconds(
    env: float | None, weights: float | None, expected: dict[str, float | None]
) -> None:
    start = ColdStartRecord("r1", T0, env, weights, T0 + 9)
    seconds = start.phase_seconds()
    # A clock disagreement never makes a phase negative.
    assert seconds == {k: (max(v, 0.0) if v is not None else None) for k, v in expected.items()}


class RecordingMetrics(NoMetrics):
    def __init__(self) -> None:
        self.observed: list[tuple[str, dict[str, float]]] = []

    def replica_cold_start(self, model_id: str, phase_seconds: Mapping[str, float]) -> None:
        self.observed.append((model_id, dict(phase_seconds)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    platform = Platform(Settings(state_dir=tmp_path, run_background_workers=False), driver=None)
    yield platform.repo.store
    platform.close()


def _deployment(replicas: int = 2) -> DeploymentRecord:
    return DeploymentRecord(
        id="d1",
        model_id="m1",
        name="d1",
        status=DeploymentStatus.ACTIVE,
        created_at=0.0,
        status_changed_at=0.0,
        archive_sha256="0" * 64,
        config={"model_name": "m"},
        desired_replicas=replicas,
    )


def _replica(rid: str, phase: ReplicaPhase, loaded: float | None) -> ReplicaState:
    times = ColdStart(T0, T0 + 1.5, T0 + 2.0, loaded)
    return ReplicaState(rid, "d1", "http://r", phase, cold_start=times)


def _events(store: MetadataStore) -> list[ScalingEvent]:
    item = store.get(AUTOSCALER, "m1/d1")
    return [ScalingEvent.from_dict(e) for e in (item.value["events"] if item else [])]


def test_each_start_is_recorded_once_even_across_a_restart(store: MetadataStore) -> None:
    clock, metrics = FakeClock(T0 + 10), RecordingMetrics()
    recorder = ColdStartRecorder(store, clock, metrics)
    deployments = {"m1/d1": _deployment()}
    starting = {"m1/d1": [_replica("r1", ReplicaPhase.LOADING, None)]}
    recorder.record(deployments, starting)
    assert last_cold_start(store, "m1", "d1") is None and _events(store) == []

    ready = {"m1/d1": [_replica("r1", ReplicaPhase.READY, T0 + 6.0)]}
    for _ in range(3):  # tick after tick: one record
        recorder.record(deployments, ready)
    ColdStartRecorder(store, clock, metrics).record(deployments, ready)  # a restarted process
    last = last_cold_start(store, "m1", "d1")
    assert last == ColdStartRecord("r1", T0, T0 + 1.5, T0 + 2.0, T0 + 6.0)
    [event] = _events(store)
    assert (event.at, event.from_replicas, event.to_replicas) == (T0 + 10, 2, 2)
    assert event.cold_start == {"environment": 1.5, "weights": 0.5, "model_load": 4.0, "total": 6.0}
    assert "replica r1 cold start: environment 1.5 s, weights 0.5 s" in event.reason
    assert metrics.observed == [("m1", dict(event.cold_start))]

    # The same replica restarted (a new start) is a new cold start; it becomes the last one.
    clock.now += 30
    recorder.record(deployments, {"m1/d1": [_replica("r1", ReplicaPhase.READY, T0 + 35.0)]})
    assert [e.cold_start["total"] for e in _events(store) if e.cold_start] == [6.0, 35.0]
    assert last_cold_start(store, "m1", "d1").model_loaded_at == T0 + 35.0  # type: ignore[union-attr]


def test_history_events_keep_the_autoscaler_state(store: MetadataStore) -> None:
    store.put(AUTOSCALER, "m1/d1", {"state": {"desired": 3}, "events": []})
    append_scaling_event(store, "m1/d1", ScalingEvent(T0, 3, 3, "replica r9 cold start"))
    item = store.get(AUTOSCALER, "m1/d1")
    assert item is not None and item.value["state"] == {"desired": 3}
    assert [e["reason"] for e in item.value["events"]] == ["replica r9 cold start"]
