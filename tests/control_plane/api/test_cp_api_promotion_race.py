"""Concurrent promotions over real HTTP: one winner, the others 409 PROMOTION_IN_PROGRESS."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    RunningControlPlane,
    upload_and_push,
    write_package,
)

pytestmark = pytest.mark.integration

RACERS = 8


def add_deployments(
    cp: RunningControlPlane, model_id: str, status: DeploymentStatus, count: int
) -> list[str]:
    """Built deployments (as the build worker leaves them), without starting replicas."""
    ids = []
    for index in range(count):
        dep_id = f"{status.value.lower()[:4]}{index:04d}"
        cp.platform.repo.create_deployment(
            DeploymentRecord(
                id=dep_id,
                model_id=model_id,
                name=dep_id,
                status=status,
                created_at=float(index),
                status_changed_at=0.0,
                archive_sha256="0" * 64,
                config={"model_name": "doubler"},
                desired_replicas=1 if status == DeploymentStatus.ACTIVE else 0,
            )
        )
        ids.append(dep_id)
    return ids


def race(url: str, model_id: str, deployment_ids: list[str]) -> list[httpx.Response]:
    """POST one promote per deployment id, all released at the same instant."""
    barrier = threading.Barrier(len(deployment_ids))
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def promote(dep_id: str) -> None:
        with httpx.Client(headers={"Authorization": f"Api-Key {ADMIN_KEY}"}, timeout=30) as c:
            barrier.wait(timeout=10)
            response = c.post(
                f"{url}/v1/models/{model_id}/environments/production/promote",
                json={"deployment_id": dep_id},
            )
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=promote, args=(dep,)) for dep in deployment_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@pytest.fixture
def cp_with_model(
    control_plane_factory: Callable[..., RunningControlPlane], tmp_path: Path
) -> tuple[RunningControlPlane, str]:
    cp = control_plane_factory()
    model_id = upload_and_push(cp.client, write_package(tmp_path), tmp_path / "a")["model_id"]
    return cp, model_id


def test_racing_promotions_of_scaled_down_deployments(
    cp_with_model: tuple[RunningControlPlane, str],
) -> None:
    cp, model_id = cp_with_model
    candidates = add_deployments(cp, model_id, DeploymentStatus.INACTIVE, RACERS)
    responses = race(cp.url, model_id, candidates)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] + [409] * (RACERS - 1), [r.text for r in responses]
    losers = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {error["code"] for error in losers} == {"PROMOTION_IN_PROGRESS"}
    winner = next(r.json() for r in responses if r.status_code == 202)
    env = cp.client.get(f"/v1/models/{model_id}/environments/production").json()
    assert env["promotion_in_progress"] and env["promotion"] == winner["promotion"]
    assert env["current_deployment_id"] is None  # swapped only once the winner is ACTIVE
    woken = [
        d["id"]
        for d in cp.client.get(f"/v1/models/{model_id}/deployments").json()["deployments"]
        if d["desired_replica_count"] > 0
    ]
    assert woken == [winner["promotion"]["deployment_id"]]  # losers changed nothing

    # While it is held, even a promotion of an ACTIVE deployment is refused.
    (active,) = add_deployments(cp, model_id, DeploymentStatus.ACTIVE, 1)
    refused = cp.client.post(f"/v1/models/{model_id}/deployments/{active}/promote")
    assert refused.status_code == 409


def test_racing_promotions_of_active_deployments_lose_no_update(
    cp_with_model: tuple[RunningControlPlane, str],
) -> None:
    """Instant swaps: every 200 is one history entry; every refusal is a clean 409."""
    cp, model_id = cp_with_model
    candidates = add_deployments(cp, model_id, DeploymentStatus.ACTIVE, RACERS)
    responses = race(cp.url, model_id, candidates)

    assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
    winners = [r for r in responses if r.status_code == 200]
    assert winners
    env = cp.client.get(f"/v1/models/{model_id}/environments/production").json()
    assert len(env["history"]) == len(winners) and not env["promotion_in_progress"]
    assert env["current_deployment_id"] == env["history"][-1]["deployment_id"]
    by_id = {
        d["id"]: d
        for d in cp.client.get(f"/v1/models/{model_id}/deployments").json()["deployments"]
    }
    promoted = {entry["deployment_id"] for entry in env["history"]}
    current = by_id[env["current_deployment_id"]]
    assert current["is_production"] and current["desired_replica_count"] == 1
    assert current["scale_down_at"] is None
    for dep_id in candidates:
        dep = by_id[dep_id]
        if dep_id == current["id"]:
            continue
        observed = (dep["status"], dep["desired_replica_count"], dep["scale_down_at"] is not None)
        if dep_id in promoted:  # replaced by a later winner: draining, then retired (kept)
            assert observed == ("ACTIVE", 1, True), dep
        else:  # lost the race: untouched
            assert observed == ("ACTIVE", 1, False), dep
