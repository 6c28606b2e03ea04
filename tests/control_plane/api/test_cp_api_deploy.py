"""Push -> build -> replicas -> ACTIVE -> promote -> rollback, with every real part:
SQLite store and queue, blob directory, venv builder (pip), local process driver and
the real model server. Plus the failure paths: a bad requirement and a failing load()."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.control_plane.api.cp_api_helpers import (
    INTERNAL_TOKEN,
    RunningControlPlane,
    start_control_plane,
    upload_and_push,
    wait_for,
    write_package,
)

pytestmark = pytest.mark.integration

DEPLOY_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    """One platform for the module: each test uses its own model, so they stay independent."""
    running, stop = start_control_plane(
        tmp_path_factory.mktemp("state"), run_background_workers=True, promotion_drain_s=1.0
    )
    yield running
    stop()


def deployment(cp: RunningControlPlane, model_id: str, dep_id: str) -> dict[str, Any]:
    response = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_status(cp: RunningControlPlane, model_id: str, dep_id: str, status: str) -> dict:
    def probe() -> dict[str, Any] | None:
        current = deployment(cp, model_id, dep_id)
        if current["status"] == "FAILED" and status != "FAILED":
            logs = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}/logs").json()
            raise AssertionError(f"deployment FAILED: {current['status_message']}\n{logs}")
        return current if current["status"] == status else None

    result: dict[str, Any] = wait_for(
        probe, timeout_s=DEPLOY_TIMEOUT_S, what=f"{dep_id} to be {status}"
    )
    return result


def environment(cp: RunningControlPlane, model_id: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cp.client.get(f"/v1/models/{model_id}/environments/{name}").json()
    return result


def predict_via_routing(cp: RunningControlPlane, model_id: str, env: str, x: int) -> dict:
    """What a gateway does: look the environment up in the routing table, call a replica."""

    def ready_replica() -> str | None:
        table = cp.client.get("/v1/routing").json()["models"][model_id]
        dep_id = table["environments"][env]
        replicas = table["deployments"][dep_id]["replicas"] if dep_id else []
        return next((r["url"] for r in replicas if r["ready"]), None)

    url = wait_for(ready_replica, timeout_s=30, what=f"a ready replica for {env}")
    response = httpx.post(f"{url}/v1/models/model:predict", json={"x": x}, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_push_promote_and_rollback(cp: RunningControlPlane, tmp_path: Path) -> None:
    cp.client.post("/v1/secrets", json={"name": "greeting", "value": "hi there"})
    v1 = write_package(tmp_path / "v1", secrets=["greeting"], metadata={"version": 1})
    pushed = upload_and_push(cp.client, v1, tmp_path / "a1")
    model_id, d1 = pushed["model_id"], pushed["deployment"]["id"]
    active = wait_status(cp, model_id, d1, "ACTIVE")
    assert active["is_development"] or wait_for(
        lambda: deployment(cp, model_id, d1)["is_development"], what="dev swap"
    )
    assert predict_via_routing(cp, model_id, "development", 21) == {
        "doubled": 42,
        "greeting": "hi there",  # the secret reached the replica
        "version": 1,
    }
    logs = cp.client.get(f"/v1/models/{model_id}/deployments/{d1}/logs").json()
    assert any("build finished" in line for line in logs["build"])
    assert logs["replicas"], "replica output is served"

    v2 = write_package(tmp_path / "v2", secrets=["greeting"], metadata={"version": 2})
    d2 = upload_and_push(cp.client, v2, tmp_path / "a2", promote=True)["deployment"]["id"]
    wait_status(cp, model_id, d2, "ACTIVE")
    wait_for(
        lambda: environment(cp, model_id, "production")["current_deployment_id"] == d2,
        what="production -> d2",
    )
    assert predict_via_routing(cp, model_id, "production", 1)["version"] == 2
    assert environment(cp, model_id, "development")["current_deployment_id"] == d1

    # Promote d1 (ACTIVE as development): immediate swap; d2 drains, then is retired to zero.
    response = cp.client.post(f"/v1/models/{model_id}/deployments/{d1}/promote")
    assert response.status_code == 200, response.text
    prod = response.json()
    assert (prod["current_deployment_id"], prod["previous_deployment_id"]) == (d1, d2)
    wait_status(cp, model_id, d2, "INACTIVE")
    wait_for(lambda: deployment(cp, model_id, d2)["active_replica_count"] == 0, what="d2 stopped")

    # Rollback = promote the previous deployment again: it is brought up first.
    response = cp.client.post(
        f"/v1/models/{model_id}/environments/production/promote", json={"deployment_id": d2}
    )
    assert response.status_code == 202, response.text
    assert response.json()["promotion_in_progress"] is True
    wait_for(
        lambda: environment(cp, model_id, "production")["current_deployment_id"] == d2,
        timeout_s=DEPLOY_TIMEOUT_S,
        what="rollback to d2",
    )
    prod = environment(cp, model_id, "production")
    assert prod["promotion_in_progress"] is False and prod["previous_deployment_id"] == d1
    assert [h["deployment_id"] for h in prod["history"]] == [d2, d1, d2]
    assert predict_via_routing(cp, model_id, "production", 2)["version"] == 2


def test_bad_requirement_fails_build_and_changes_nothing(
    cp: RunningControlPlane, tmp_path: Path
) -> None:
    good = write_package(tmp_path / "good", "pipfail")
    first = upload_and_push(cp.client, good, tmp_path / "a1", promote=True)
    model_id, d1 = first["model_id"], first["deployment"]["id"]
    wait_status(cp, model_id, d1, "ACTIVE")
    wait_for(
        lambda: environment(cp, model_id, "production")["current_deployment_id"] == d1,
        what="production -> d1",
    )

    bad = write_package(tmp_path / "bad", "pipfail", requirements=["plinth-no-such-package==9.9"])
    d2 = upload_and_push(cp.client, bad, tmp_path / "a2", promote=True)["deployment"]["id"]
    failed = wait_status(cp, model_id, d2, "FAILED")
    assert "plinth-no-such-package" in failed["status_message"]
    build_log = cp.client.get(f"/v1/models/{model_id}/deployments/{d2}/logs").json()["build"]
    assert any("No matching distribution" in line for line in build_log), build_log
    prod = environment(cp, model_id, "production")
    assert prod["current_deployment_id"] == d1 and prod["promotion_in_progress"] is False
    assert deployment(cp, model_id, d1)["status"] == "ACTIVE"


def test_failing_load_marks_deployment_failed(cp: RunningControlPlane, tmp_path: Path) -> None:
    package = write_package(tmp_path, "loadfail", metadata={"fail_load": True})
    pushed = upload_and_push(cp.client, package, tmp_path / "a")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    failed = wait_status(cp, model_id, dep_id, "FAILED")
    assert failed["status_message"].startswith("model failed to load")
    assert environment(cp, model_id, "development")["current_deployment_id"] != dep_id
    logs = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}/logs").json()
    assert any("FAILED" in line for line in logs["build"])
    # The replicas were stopped; their last lines were kept in the deployment's log.
    assert any("load exploded on purpose" in line for line in logs["build"]), logs


def test_deactivate_and_wake(cp: RunningControlPlane, tmp_path: Path) -> None:
    package = write_package(tmp_path, "sleepy")
    pushed = upload_and_push(cp.client, package, tmp_path / "a")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    wait_status(cp, model_id, dep_id, "ACTIVE")
    base = f"/v1/models/{model_id}/deployments/{dep_id}"
    assert cp.client.post(f"{base}/deactivate").json()["status"] == "INACTIVE"
    wait_for(lambda: deployment(cp, model_id, dep_id)["active_replica_count"] == 0, what="stop")
    # Gateways wake with the internal token.
    woken = httpx.post(
        f"{cp.url}{base}/wake", headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    )
    assert woken.status_code == 202 and woken.json()["status"] == "DEPLOYING"
    wait_status(cp, model_id, dep_id, "ACTIVE")


def replica_processes(cp: RunningControlPlane, dep_id: str) -> list[psutil.Process]:
    """The model-server processes the local driver runs for ``dep_id`` (its package dir)."""
    model_dir = str(cp.platform.settings.state_dir / "builds" / dep_id / "src")
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if model_dir in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_named_environment_settings_apply_to_pushed_deployment(
    cp: RunningControlPlane, tmp_path: Path
) -> None:
    first = upload_and_push(cp.client, write_package(tmp_path / "v1", "staged"), tmp_path / "a")
    model_id = first["model_id"]
    settings = {"min_replica": 2, "max_replica": 2}
    created = cp.client.post(
        f"/v1/models/{model_id}/environments",
        json={"name": "staging", "autoscaling_settings": settings},
    )
    assert created.status_code == 201, created.text
    pushed = upload_and_push(
        cp.client, write_package(tmp_path / "v2", "staged"), tmp_path / "b", environment="staging"
    )
    dep_id = pushed["deployment"]["id"]
    wait_for(
        lambda: environment(cp, model_id, "staging")["current_deployment_id"] == dep_id,
        timeout_s=DEPLOY_TIMEOUT_S,
        what="staging -> pushed deployment",
    )
    wait_for(
        lambda: deployment(cp, model_id, dep_id)["active_replica_count"] == 2,
        timeout_s=DEPLOY_TIMEOUT_S,
        what="two ready replicas (staging's min_replica)",
    )
    assert len(replica_processes(cp, dep_id)) == 2
    assert environment(cp, model_id, "development")["current_deployment_id"] != dep_id


def test_replica_crash_is_unhealthy_then_recovers(cp: RunningControlPlane, tmp_path: Path) -> None:
    pushed = upload_and_push(cp.client, write_package(tmp_path, "crashy"), tmp_path / "a")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    wait_status(cp, model_id, dep_id, "ACTIVE")
    (replica,) = replica_processes(cp, dep_id)
    replica.kill()
    seen: set[str] = set()

    def recovered() -> bool:
        status = deployment(cp, model_id, dep_id)["status"]
        seen.add(status)
        return "UNHEALTHY" in seen and status == "ACTIVE"

    wait_for(recovered, timeout_s=DEPLOY_TIMEOUT_S, interval_s=0.05, what="UNHEALTHY -> ACTIVE")
    assert replica_processes(cp, dep_id)[0].pid != replica.pid  # the driver restarted it
