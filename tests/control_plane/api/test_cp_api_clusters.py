"""/v1/clusters against a real control plane on loopback: records the registry reads back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import ClusterKind, DriverKind
from control_plane.domain.placement import PlacementPolicy
from control_plane.domain.placement_recorder import PlacementRecorder
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from tests.control_plane.api.cp_api_helpers import (
    INTERNAL_TOKEN,
    RunningControlPlane,
    start_control_plane,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    running, stop = start_control_plane(tmp_path_factory.mktemp("clusters-state"))
    yield running
    stop()


def body(cluster_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": cluster_id,
        "cloud": "aws",
        "region": "eu-west-1",
        "location": {"latitude": 53.3, "longitude": -6.3},
        "capacity": {"H100": 16},
        **fields,
    }


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    detail: dict[str, str] = response.json()["error"]
    return detail


def test_register_get_list_and_the_registry_reads_the_same_record(
    cp: RunningControlPlane,
) -> None:
    cloud = cp.client.post("/v1/clusters", json=body("eu-cloud", gpu_hour_cost=2.5))
    assert cloud.status_code == 201, cloud.text
    created = cp.client.post(
        "/v1/clusters",
        json=body(
            "acme-dc",
            cloud="acme",
            kind="self-hosted",
            max_gpus=8,
            spill_over_to="eu-cloud",
            labels={"residency": "eu"},
            driver={
                "kind": "kubernetes-assumed-role",
                "endpoint": "https://k8s.acme.example",
                "role_arn": "arn:aws:iam::123456789012:role/plinth-access",
            },
        ),
    )
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["health"] == {
        "last_heartbeat": None,
        "last_error": "",
        "last_error_at": None,
        "cordoned": False,
        "draining": False,
    }
    assert cp.client.get("/v1/clusters/acme-dc").json() == record
    listed = cp.client.get("/v1/clusters").json()["clusters"]
    assert [item["id"] for item in listed] == ["acme-dc", "eu-cloud"]

    stored = ClusterRegistry(cp.platform.store).get("acme-dc")
    assert stored.kind is ClusterKind.SELF_HOSTED and stored.residency == "eu"
    assert stored.spill_over_to == "eu-cloud" and stored.gpu_limit("H100") == 8
    assert stored.driver.kind is DriverKind.KUBERNETES_ASSUMED_ROLE
    assert stored.to_dict() == record


def test_bad_records_are_refused_naming_the_field(cp: RunningControlPlane) -> None:
    negative = cp.client.post("/v1/clusters", json=body("c1", capacity={"H100": -1}))
    assert "capacity.H100" in error_of(negative, 422)["message"]
    latitude = cp.client.post(
        "/v1/clusters", json=body("c1", location={"latitude": 91, "longitude": 0})
    )
    assert "location.latitude" in error_of(latitude, 422)["message"]
    kind = cp.client.post("/v1/clusters", json=body("c1", kind="eks"))
    assert "kind" in error_of(kind, 422)["message"]
    bad_id = cp.client.post("/v1/clusters", json=body("Not_An_Id"))
    assert "id" in error_of(bad_id, 422)["message"]
    secret = cp.client.post("/v1/clusters", json=body("c1", driver={"external_id": "s3cret"}))
    assert "driver.external_id" in error_of(secret, 422)["message"]

    nowhere = cp.client.post("/v1/clusters", json=body("c1", spill_over_to="missing"))
    assert "'missing' is not a registered cluster" in error_of(nowhere, 404)["message"]
    itself = cp.client.post("/v1/clusters", json=body("c1", spill_over_to="c1"))
    assert "names the cluster itself" in error_of(itself, 409)["message"]

    assert cp.client.post("/v1/clusters", json=body("c1")).status_code == 201
    taken = cp.client.post("/v1/clusters", json=body("c1"))
    assert "already registered" in error_of(taken, 409)["message"]
    assert cp.client.get("/v1/clusters").json()["clusters"][0]["id"] == "c1"


def test_patch_changes_only_the_fields_sent(cp: RunningControlPlane) -> None:
    cp.client.post("/v1/clusters", json=body("spill"))
    cp.client.post("/v1/clusters", json=body("dc", kind="self-hosted", max_gpus=4))
    cp.client.post("/v1/clusters/dc/cordon")

    patched = cp.client.patch(
        "/v1/clusters/dc", json={"capacity": {"A100": 8}, "spill_over_to": "spill"}
    )
    assert patched.status_code == 200, patched.text
    record = patched.json()
    assert record["capacity"] == {"A100": 8} and record["spill_over_to"] == "spill"
    assert record["max_gpus"] == 4 and record["kind"] == "self-hosted"
    assert record["health"]["cordoned"] is True  # health is not the patch's business

    cleared = cp.client.patch("/v1/clusters/dc", json={"max_gpus": None, "spill_over_to": None})
    assert cleared.json()["max_gpus"] is None and cleared.json()["spill_over_to"] is None
    null_cloud = cp.client.patch("/v1/clusters/dc", json={"cloud": None})
    assert "cloud" in error_of(null_cloud, 422)["message"]
    itself = cp.client.patch("/v1/clusters/dc", json={"spill_over_to": "dc"})
    assert "itself" in error_of(itself, 409)["message"]
    unknown = cp.client.patch("/v1/clusters/nope", json={"priority": 1})
    assert "'nope' not found" in error_of(unknown, 404)["message"]
    renamed = cp.client.patch("/v1/clusters/dc", json={"id": "other"})
    assert "id" in error_of(renamed, 422)["message"]


def test_cordon_drain_uncordon_and_remove(cp: RunningControlPlane) -> None:
    cp.client.post("/v1/clusters", json=body("c1"))
    cordoned = cp.client.post("/v1/clusters/c1/cordon").json()["health"]
    assert (cordoned["cordoned"], cordoned["draining"]) == (True, False)
    draining = cp.client.post("/v1/clusters/c1/drain").json()["health"]
    assert (draining["cordoned"], draining["draining"]) == (True, True)
    back = cp.client.post("/v1/clusters/c1/uncordon").json()["health"]
    assert (back["cordoned"], back["draining"]) == (False, False)
    assert ClusterRegistry(cp.platform.store).get("c1").health.cordoned is False

    assert cp.client.delete("/v1/clusters/c1").status_code == 204
    assert "'c1' not found" in error_of(cp.client.get("/v1/clusters/c1"), 404)["message"]
    error_of(cp.client.delete("/v1/clusters/c1"), 404)
    error_of(cp.client.post("/v1/clusters/c1/drain"), 404)


def test_heartbeat_takes_the_internal_token_and_nothing_else_does(
    cp: RunningControlPlane,
) -> None:
    cp.client.post("/v1/clusters", json=body("c1"))
    internal = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    beat = httpx.post(f"{cp.url}/v1/clusters/c1/heartbeat", headers=internal, timeout=30)
    assert beat.status_code == 200, beat.text
    first = beat.json()["health"]["last_heartbeat"]
    assert first is not None
    again = httpx.post(f"{cp.url}/v1/clusters/c1/heartbeat", headers=internal, timeout=30)
    assert again.json()["health"]["last_heartbeat"] >= first
    assert ClusterRegistry(cp.platform.store).get("c1").health.last_heartbeat is not None

    error_of(httpx.get(f"{cp.url}/v1/clusters", headers=internal, timeout=30), 401)
    error_of(httpx.post(f"{cp.url}/v1/clusters/c1/cordon", headers=internal, timeout=30), 401)
    error_of(httpx.post(f"{cp.url}/v1/clusters/c1/heartbeat", timeout=30), 401)
    unknown = httpx.post(f"{cp.url}/v1/clusters/zz/heartbeat", headers=internal, timeout=30)
    error_of(unknown, 404)


def test_placements_show_what_the_reconciler_recorded(cp: RunningControlPlane) -> None:
    assert cp.client.get("/v1/placements").json() == {"placements": [], "cluster_health": []}
    cp.client.post("/v1/clusters", json=body("c1", capacity={"H100": 2}))
    internal = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    httpx.post(f"{cp.url}/v1/clusters/c1/heartbeat", headers=internal, timeout=30)
    deployment = DeploymentRecord(
        id="d1",
        model_id="m1",
        name="d1",
        status=DeploymentStatus.ACTIVE,
        created_at=0.0,
        status_changed_at=0.0,
        archive_sha256="0" * 64,
        config={"model_name": "m", "resources": {"accelerator": "H100:2"}},
        desired_replicas=3,
    )
    recorder = PlacementRecorder(
        ClusterRegistry(cp.platform.store), cp.platform.store, PlacementPolicy(), cp.platform.clock
    )
    recorder.tick([deployment], {})
    (placed,) = cp.client.get("/v1/placements").json()["placements"]
    assert (placed["model_id"], placed["deployment_id"], placed["replicas"]) == (
        "m1",
        "d1",
        {"c1": 1},
    )
    assert placed["shortfall"]["missing"] == 2
    assert "not enough free H100 capacity" in placed["shortfall"]["reason"]
