"""DELETE of deployments and models over HTTP against a running control plane: refused while
an environment serves one (nothing changes), forced through, replicas stopped, routes and
records gone, and archives deleted only when no other deployment uses them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from control_plane.ports.cluster import ReplicaPhase
from tests.control_plane.api.cp_api_helpers import (
    INTERNAL_TOKEN,
    RunningControlPlane,
    build_archive,
    start_control_plane,
    upload_and_push,
    wait_for,
    write_package,
)

pytestmark = pytest.mark.integration

DEPLOY_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    """Builds and replicas run: deployments get to ACTIVE and serve environments."""
    running, stop = start_control_plane(
        tmp_path_factory.mktemp("state"), run_background_workers=True
    )
    yield running
    stop()


@pytest.fixture
def idle_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    """No workers: pushed deployments stay BUILDING and serve nothing."""
    running, stop = start_control_plane(tmp_path_factory.mktemp("idle-state"))
    yield running
    stop()


def get(cp: RunningControlPlane, path: str) -> dict[str, Any]:
    response = cp.client.get(path)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_active(cp: RunningControlPlane, model_id: str, dep_id: str) -> None:
    def active() -> bool:
        status = get(cp, f"/v1/models/{model_id}/deployments/{dep_id}")["status"]
        assert status != "FAILED", f"{dep_id} FAILED"
        return bool(status == "ACTIVE")

    wait_for(active, timeout_s=DEPLOY_TIMEOUT_S, what=f"{dep_id} ACTIVE")


def routes(cp: RunningControlPlane, model_id: str) -> dict[str, Any]:
    response = cp.client.get("/v1/routing", headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["models"].get(model_id, {})
    return result


def replica_pids(cp: RunningControlPlane, dep_id: str) -> list[int]:
    """Process ids of the deployment's replica servers, found by their listening port."""
    ports = {int(state.url.rsplit(":", 1)[1]) for state in cp.platform.driver.replicas(dep_id)}
    return [
        conn.pid
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN
        and conn.laddr
        and conn.laddr.port in ports
        and conn.pid
    ]


def push(
    cp: RunningControlPlane, package: Path, work_dir: Path, **fields: Any
) -> tuple[str, str, str]:
    """(model id, deployment id, archive sha256) of a push of ``package``."""
    pushed = upload_and_push(cp.client, package, work_dir, **fields)
    sha256 = build_archive(package, work_dir / "again").sha256
    return pushed["model_id"], pushed["deployment"]["id"], sha256


def replicas_stopped(cp: RunningControlPlane, dep_id: str, timeout_s: float = 40.0) -> None:
    """A deleted deployment's replicas drain (nothing is in flight here) and then stop."""
    deadline = time.monotonic() + timeout_s
    while (left := cp.platform.driver.replicas(dep_id)) != []:
        assert all(r.phase is ReplicaPhase.DRAINING for r in left), left
        assert time.monotonic() < deadline, f"still running: {left}"
        time.sleep(0.2)


def archive_stored(cp: RunningControlPlane, sha256: str) -> bool:
    return cp.client.head(f"/v1/archives/{sha256}").status_code == 200


def test_a_served_deployment_is_refused_then_forced(
    cp: RunningControlPlane, tmp_path: Path
) -> None:
    package = write_package(tmp_path, "delserved")
    model_id, dep_id, sha256 = push(cp, package, tmp_path / "a1", promote=True)
    path = f"/v1/models/{model_id}/deployments/{dep_id}"
    wait_active(cp, model_id, dep_id)
    wait_for(
        lambda: (
            get(cp, f"/v1/models/{model_id}/environments/production")["current_deployment_id"]
            == dep_id
        ),
        what="production serves it",
    )
    pids = wait_for(lambda: replica_pids(cp, dep_id), what="a replica process")
    extracted = cp.platform.settings.state_dir / "builds" / dep_id
    assert extracted.is_dir()
    before = get(cp, path)

    refused = cp.client.delete(path)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "CONFLICT"
    assert "production" in refused.json()["error"]["message"]
    assert get(cp, path)["status"] == before["status"] == "ACTIVE"
    prod = get(cp, f"/v1/models/{model_id}/environments/production")
    assert prod["current_deployment_id"] == dep_id
    assert routes(cp, model_id)["environments"]["production"] == dep_id
    assert all(psutil.pid_exists(pid) for pid in pids)
    assert archive_stored(cp, sha256)

    forced = cp.client.delete(path, params={"force": "true"})
    assert forced.status_code == 200, forced.text
    body = forced.json()
    assert body["deployment_id"] == dep_id and body["archive_deleted"] is True
    assert set(body["environments_cleared"]) >= {"production"}
    assert cp.client.get(path).status_code == 404
    prod = get(cp, f"/v1/models/{model_id}/environments/production")
    assert prod["current_deployment_id"] is None  # serves nothing, no silent fallback
    table = routes(cp, model_id)
    assert dep_id not in table["deployments"]
    assert table["environments"]["production"] is None
    replicas_stopped(cp, dep_id)
    wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids), what="replicas stopped")
    assert not archive_stored(cp, sha256)
    assert not extracted.exists()


def test_a_served_model_is_refused_then_forced(cp: RunningControlPlane, tmp_path: Path) -> None:
    package = write_package(tmp_path, "delmodel")
    pushed = upload_and_push(cp.client, package, tmp_path / "a1")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    wait_active(cp, model_id, dep_id)
    wait_for(
        lambda: routes(cp, model_id).get("environments", {}).get("development") == dep_id,
        what="development serves it",
    )

    refused = cp.client.delete(f"/v1/models/{model_id}")
    assert refused.status_code == 409, refused.text
    assert "development" in refused.json()["error"]["message"]
    assert get(cp, f"/v1/models/{model_id}")["deployments_count"] == 1

    forced = cp.client.delete(f"/v1/models/{model_id}", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    body = forced.json()
    assert body["name"] == "delmodel"
    assert [dep["deployment_id"] for dep in body["deployments"]] == [dep_id]
    assert set(body["environments"]) == {"development", "production"}
    assert cp.client.get(f"/v1/models/{model_id}").status_code == 404
    assert cp.client.get(f"/v1/models/{model_id}/environments").status_code == 404
    assert routes(cp, model_id) == {}
    replicas_stopped(cp, dep_id)


def test_an_archive_is_kept_while_another_deployment_uses_it(
    idle_cp: RunningControlPlane, tmp_path: Path
) -> None:
    package = write_package(tmp_path, "delshared")
    model_id, first, sha256 = push(idle_cp, package, tmp_path / "a1")
    _, second, sha256_again = push(idle_cp, package, tmp_path / "a2")
    assert sha256_again == sha256
    base = f"/v1/models/{model_id}/deployments"

    response = idle_cp.client.delete(f"{base}/{first}")
    assert response.status_code == 200, response.text
    assert response.json()["archive_deleted"] is False
    assert archive_stored(idle_cp, sha256)

    response = idle_cp.client.delete(f"{base}/{second}")
    assert response.status_code == 200, response.text
    assert response.json()["archive_deleted"] is True
    assert not archive_stored(idle_cp, sha256)
    assert get(idle_cp, base)["deployments"] == []


def test_unknown_ids_are_404_and_a_deleted_name_is_free_again(
    idle_cp: RunningControlPlane, tmp_path: Path
) -> None:
    package = write_package(tmp_path, "delname")
    model_id = upload_and_push(idle_cp.client, package, tmp_path / "a1")["model_id"]
    for path in (
        "/v1/models/nope",
        "/v1/models/nope/deployments/nope",
        f"/v1/models/{model_id}/deployments/nope",
    ):
        response = idle_cp.client.delete(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"

    assert idle_cp.client.delete(f"/v1/models/{model_id}").status_code == 200
    assert [m["name"] for m in get(idle_cp, "/v1/models")["models"]] == []
    again = upload_and_push(idle_cp.client, package, tmp_path / "a2")["model_id"]
    assert again != model_id
