"""Draining in the local driver, against real model servers: the least busy replica is the one
removed, a busy one being removed finishes its requests before it stops, and the drain timeout
bounds how long that may take."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from control_plane.adapters.local_cluster import LocalProcessDriver
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec, ReplicaState

pytestmark = pytest.mark.integration

SLEEPY_MODEL = """
import os
import time


class Model:
    def __init__(self, **kwargs):
        pass

    def predict(self, model_input):
        time.sleep(float(model_input.get("sleep", 0)))
        return {"pid": os.getpid()}
"""


@pytest.fixture
def spec(tmp_path: Path) -> ReplicaSpec:
    root = tmp_path / "sleepy"
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text("model_name: sleepy\nruntime:\n  predict_concurrency: 4\n")
    (root / "model" / "model.py").write_text(textwrap.dedent(SLEEPY_MODEL))
    return ReplicaSpec("dep-d", "m-d", str(root), sys.executable)


def _driver(tmp_path: Path, *, drain_timeout_s: float) -> LocalProcessDriver:
    return LocalProcessDriver(
        tmp_path / "state", poll_interval_s=0.1, drain_settle_s=0.2, drain_timeout_s=drain_timeout_s
    )


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[LocalProcessDriver]:
    d = _driver(tmp_path, drain_timeout_s=30)
    yield d
    d.close()


def _wait_for(
    driver: LocalProcessDriver, check: Callable[[list[ReplicaState]], bool], timeout_s: float = 45
) -> list[ReplicaState]:
    deadline = time.monotonic() + timeout_s
    while not check(states := driver.replicas("dep-d")):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; replicas: {states}")
        time.sleep(0.05)
    return states


def _ready(count: int) -> Callable[[list[ReplicaState]], bool]:
    return lambda ss: len(ss) == count and all(s.phase is ReplicaPhase.READY for s in ss)


def _predict(pool: ThreadPoolExecutor, url: str, sleep: float) -> Future[httpx.Response]:
    return pool.submit(
        httpx.post, f"{url}/v1/models/model:predict", json={"sleep": sleep}, timeout=60
    )


def _in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("plinth_replica_in_flight_requests "):
            return float(line.split()[1])
    return 0.0


def test_the_idle_replica_goes_and_a_busy_one_finishes_before_it_stops(
    driver: LocalProcessDriver, spec: ReplicaSpec
) -> None:
    driver.scale(spec, 3)
    oldest, middle, newest = _wait_for(driver, _ready(3))
    times = oldest.cold_start  # the driver's start time, then the server's own phases
    assert times is not None and times.model_loaded_at is not None
    assert times.environment_ready_at is not None and times.weights_ready_at is not None
    assert times.scheduled_at < times.environment_ready_at
    assert times.environment_ready_at <= times.weights_ready_at <= times.model_loaded_at
    with ThreadPoolExecutor(4) as pool:
        # The oldest and the newest are busy: the idle middle one is removed first.
        held = [_predict(pool, r.url, 4) for r in (oldest, newest)]
        _until(lambda: _in_flight(oldest.url) and _in_flight(newest.url))
        driver.scale(spec, 2)
        assert [s.replica_id for s in driver.replicas("dep-d")][:2] == [
            oldest.replica_id,
            newest.replica_id,
        ]
        _wait_for(driver, lambda ss: middle.replica_id not in {s.replica_id for s in ss})
        driver.scale(spec, 1)  # both busy: the newest drains, and finishes its request first
        draining = {s.replica_id: s.phase for s in driver.replicas("dep-d")}
        assert draining == {
            oldest.replica_id: ReplicaPhase.READY,
            newest.replica_id: ReplicaPhase.DRAINING,
        }
        newest_pid = psutil.Process(_server_pid(newest)).pid
        answers = [future.result() for future in held]
    assert [a.status_code for a in answers] == [200, 200]
    _wait_for(driver, lambda ss: [s.replica_id for s in ss] == [oldest.replica_id], timeout_s=10)
    _until(lambda: not psutil.pid_exists(newest_pid))
    assert "drained after" in "\n".join(driver.logs("dep-d"))


def test_scaling_up_again_keeps_a_draining_replica(
    driver: LocalProcessDriver, spec: ReplicaSpec
) -> None:
    driver.scale(spec, 2)
    first, second = _wait_for(driver, _ready(2))
    with ThreadPoolExecutor(2) as pool:
        held = [_predict(pool, r.url, 3) for r in (first, second)]
        _until(lambda: _in_flight(first.url) and _in_flight(second.url))
        driver.scale(spec, 1)  # both busy: the newest drains
        assert driver.replicas("dep-d")[1].phase is ReplicaPhase.DRAINING
        driver.scale(spec, 2)  # the draining one is warm: it is taken back, nothing starts
        assert [(s.replica_id, s.phase) for s in driver.replicas("dep-d")] == [
            (first.replica_id, ReplicaPhase.READY),
            (second.replica_id, ReplicaPhase.READY),
        ]
        assert [future.result().status_code for future in held] == [200, 200]


def test_the_drain_timeout_bounds_a_request_that_never_ends(
    tmp_path: Path, spec: ReplicaSpec
) -> None:
    driver = _driver(tmp_path, drain_timeout_s=1.0)
    try:
        driver.scale(spec, 1)
        (replica,) = _wait_for(driver, _ready(1))
        with ThreadPoolExecutor(1) as pool:
            held = _predict(pool, replica.url, 60)
            _until(lambda: _in_flight(replica.url))
            started = time.monotonic()
            driver.scale(spec, 0)
            _wait_for(driver, lambda ss: ss == [], timeout_s=20)
            assert time.monotonic() - started < 15
            with pytest.raises(httpx.TransportError):
                held.result()
        assert "drain timeout (1s) expired with 1 in flight" in "\n".join(driver.logs("dep-d"))
    finally:
        driver.close()


def _server_pid(state: ReplicaState) -> int:
    response = httpx.post(f"{state.url}/v1/models/model:predict", json={}, timeout=30)
    return int(response.json()["pid"])


def _until(condition: Callable[[], object], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
