"""GcpNetwork + GkeCluster under Pulumi mocks: private nodes, Workload Identity, A3 pools."""

from __future__ import annotations

import pytest

from infra.exceptions import InfraConfigError
from infra.gcp_network import GcpNetwork, GcpNetworkArgs
from infra.gke import GkeCluster, GkeClusterArgs, GpuNodePoolSpec
from infra.policies import check


def _program(tags, pools):
    def program():
        network = GcpNetwork("net", GcpNetworkArgs(tags=tags, region="europe-west4"))
        cluster = GkeCluster(
            "plinth",
            GkeClusterArgs(
                tags=tags,
                project="plinth-prod",
                region="europe-west4",
                network=network.network_id,
                subnetwork=network.subnetwork_self_link,
                gpu_node_pools=pools,
            ),
        )
        return {"endpoint": cluster.endpoint, "pool": cluster.workload_pool}

    return program


POOLS = (
    GpuNodePoolSpec(
        "h100", zones=("europe-west4-b",), reservation="specific", reservation_name="res-a3"
    ),
    GpuNodePoolSpec("spot", spot=True, compact_placement=False),
)


def test_cluster_private_nodes_and_workload_identity(run, tags) -> None:
    result = run(_program(tags, POOLS))
    cluster = result.one("gcp:container/cluster:Cluster", "plinth-cluster").inputs
    assert cluster["privateClusterConfig"]["enablePrivateNodes"] is True
    assert cluster["workloadIdentityConfig"]["workloadPool"] == "plinth-prod.svc.id.goog"
    assert cluster["removeDefaultNodePool"] is True
    assert cluster["ipAllocationPolicy"]["clusterSecondaryRangeName"] == "pods"
    assert result.outputs["pool"] == "plinth-prod.svc.id.goog"
    subnet = result.one("gcp:compute/subnetwork:Subnetwork", "net-nodes").inputs
    assert subnet["privateIpGoogleAccess"] is True
    assert {r["rangeName"] for r in subnet["secondaryIpRanges"]} == {"pods", "services"}
    assert result.of_type("gcp:compute/routerNat:RouterNat")  # private nodes still need egress


def test_a3_pool_accelerators_driver_reservation_placement_taint(run, tags) -> None:
    result = run(_program(tags, POOLS))
    pool = result.one("gcp:container/nodePool:NodePool", "plinth-gpu-h100").inputs
    config = pool["nodeConfig"]
    assert config["machineType"] == "a3-highgpu-8g"
    (accelerator,) = config["guestAccelerators"]
    assert accelerator["type"] == "nvidia-h100-80gb" and accelerator["count"] == 8
    assert accelerator["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "LATEST"
    assert config["reservationAffinity"] == {
        "consumeReservationType": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name",
        "values": ["res-a3"],
    }
    assert pool["placementPolicy"] == {"type": "COMPACT"}
    assert config["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert pool["autoscaling"]["totalMinNodeCount"] == 0
    assert pool["nodeLocations"] == ["europe-west4-b"]
    assert config["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
    spot = result.one("gcp:container/nodePool:NodePool", "plinth-gpu-spot").inputs
    assert spot["nodeConfig"]["spot"] is True
    assert spot["nodeConfig"]["reservationAffinity"]["consumeReservationType"] == "NO_RESERVATION"
    assert "placementPolicy" not in spot
    assert check(result.resources) == []


def test_node_service_account_has_only_node_roles(run, tags) -> None:
    result = run(_program(tags, ()))
    roles = {m.inputs["role"] for m in result.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles == {
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        "roles/artifactregistry.reader",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"machine_type": "a9-gpu"}, "gpu_node_pools[p].machine_type"),
        ({"reservation": "specific"}, "gpu_node_pools[p].reservation_name"),
        ({"spot": True, "reservation": "any"}, "gpu_node_pools[p].spot"),
        ({"max_nodes": 0}, "gpu_node_pools[p].max_nodes"),
    ],
)
def test_bad_pool_specs_name_the_field(kwargs, field) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        GpuNodePoolSpec("p", **kwargs)
    assert excinfo.value.field == field


def test_overlapping_network_ranges_are_rejected(tags) -> None:
    with pytest.raises(InfraConfigError, match="overlaps"):
        GcpNetworkArgs(tags=tags, region="r", nodes_cidr="10.16.0.0/20")
