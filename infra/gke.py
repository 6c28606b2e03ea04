"""GKE cluster with private nodes, Workload Identity and A3 GPU node pools.

GPU pools (``a3-highgpu-8g``: 8 x ``nvidia-h100-80gb``) install the driver through GKE's
``gpu_driver_installation_config``, consume a reservation when one is named, use a compact
placement policy (nodes close together for NCCL), scale from 0, and carry the
``nvidia.com/gpu=true:NoSchedule`` taint like the EKS groups, so the same pod tolerations
work on both clouds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_gcp as gcp

from infra.exceptions import InfraConfigError
from infra.gcp_network import PODS_RANGE, SERVICES_RANGE
from infra.gpu_catalog import (
    cloud_taint_effect,
    gcp_gpu_machine,
    gpu_node_labels,
    gpu_node_taints,
)
from infra.tags import StandardTags

NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/artifactregistry.reader",
)
ReservationKind = Literal["none", "any", "specific"]


@dataclass(frozen=True)
class GpuNodePoolSpec:
    name: str
    machine_type: str = "a3-highgpu-8g"
    max_nodes: int = 2
    min_nodes: int = 0
    zones: Sequence[str] = ()  # empty: the cluster's zones
    reservation: ReservationKind = "none"
    reservation_name: str | None = None
    compact_placement: bool = True
    driver_version: Literal["DEFAULT", "LATEST"] = "LATEST"
    spot: bool = False

    def __post_init__(self) -> None:
        where = f"gpu_node_pools[{self.name}]"
        gcp_gpu_machine(self.machine_type, f"{where}.machine_type")
        if not 0 <= self.min_nodes <= self.max_nodes or self.max_nodes < 1:
            raise InfraConfigError(f"{where}.max_nodes", "need 0 <= min <= max and max >= 1")
        if self.reservation == "specific" and not self.reservation_name:
            raise InfraConfigError(
                f"{where}.reservation_name", "required for a specific reservation"
            )
        if self.reservation not in ("none", "any", "specific"):
            raise InfraConfigError(f"{where}.reservation", f"unknown kind {self.reservation!r}")
        if self.spot and self.reservation != "none":
            raise InfraConfigError(f"{where}.spot", "spot nodes cannot consume a reservation")


@dataclass(frozen=True)
class GkeClusterArgs:
    tags: StandardTags
    project: str
    region: str
    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]
    master_ipv4_cidr_block: str = "172.16.0.0/28"
    private_endpoint: bool = False
    master_authorized_cidrs: Sequence[str] = ()
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    system_machine_type: str = "n2-standard-8"
    system_max_nodes: int = 3
    gpu_node_pools: Sequence[GpuNodePoolSpec] = field(default_factory=tuple)
    deletion_protection: bool = True

    def __post_init__(self) -> None:
        if not self.project:
            raise InfraConfigError("project", "must not be empty")
        names = [p.name for p in self.gpu_node_pools]
        if len(names) != len(set(names)):
            raise InfraConfigError("gpu_node_pools", f"duplicate names in {names}")


class GkeCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]
    node_service_account: pulumi.Output[str]
    workload_pool: str

    def __init__(
        self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:gke:GkeCluster", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.workload_pool = f"{args.project}.svc.id.goog"
        nodes_sa = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=f"{name}-nodes"[:30],
            display_name=f"GKE nodes of {name}",
            project=args.project,
            opts=child,
        )
        member = nodes_sa.email.apply(lambda email: f"serviceAccount:{email}")
        for role in NODE_ROLES:
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.rsplit('.', 1)[-1]}",
                project=args.project,
                role=role,
                member=member,
                opts=child,
            )
        cluster = self._cluster()
        self._system_pool(cluster, nodes_sa.email)
        for spec in args.gpu_node_pools:
            self._gpu_pool(cluster, nodes_sa.email, spec)

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.ca_certificate = cluster.master_auth.apply(
            lambda auth: auth.cluster_ca_certificate or ""
        )
        self.node_service_account = nodes_sa.email
        self.register_outputs({"cluster_name": self.cluster_name, "endpoint": self.endpoint})

    def _cluster(self) -> gcp.container.Cluster:
        args = self._args
        authorized = gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=[
                gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(cidr_block=cidr)
                for cidr in args.master_authorized_cidrs
            ]
        )
        return gcp.container.Cluster(
            f"{self._name}-cluster",
            name=self._name,
            project=args.project,
            location=args.region,
            network=args.network,
            subnetwork=args.subnetwork,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE,
                services_secondary_range_name=SERVICES_RANGE,
            ),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=args.private_endpoint,
                master_ipv4_cidr_block=args.master_ipv4_cidr_block,
            ),
            master_authorized_networks_config=authorized,
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=self.workload_pool
            ),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            # Pools autoscale between their limits (``_gpu_pool``); this profile removes idle
            # nodes sooner than GKE's "BALANCED" default, which matters at GPU prices.
            cluster_autoscaling=gcp.container.ClusterClusterAutoscalingArgs(
                autoscaling_profile="OPTIMIZE_UTILIZATION"
            ),
            # Node pools are managed separately; GKE insists on creating a default one first.
            remove_default_node_pool=True,
            initial_node_count=1,
            enable_shielded_nodes=True,
            deletion_protection=args.deletion_protection,
            resource_labels=args.tags.gcp("gke"),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]),
        )

    def _node_config(
        self,
        email: pulumi.Input[str],
        machine_type: str,
        labels: dict[str, str],
        gpu: GpuNodePoolSpec | None = None,
    ) -> gcp.container.NodePoolNodeConfigArgs:
        common: dict[str, Any] = {
            "service_account": email,
            "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            "workload_metadata_config": gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                mode="GKE_METADATA"
            ),
            "shielded_instance_config": gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_integrity_monitoring=True
            ),
            "resource_labels": self._args.tags.gcp("gke"),
        }
        if gpu is None:
            return gcp.container.NodePoolNodeConfigArgs(
                machine_type=machine_type, labels=labels, **common
            )
        machine = gcp_gpu_machine(machine_type, "machine_type")
        return gcp.container.NodePoolNodeConfigArgs(
            machine_type=machine_type,
            labels={**labels, **gpu_node_labels(machine.accelerator, machine.gpus)},
            spot=gpu.spot or None,
            guest_accelerators=[
                gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=machine.accelerator_type,
                    count=machine.gpus,
                    gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version=gpu.driver_version
                    ),
                )
            ],
            ephemeral_storage_local_ssd_config=(
                gcp.container.NodePoolNodeConfigEphemeralStorageLocalSsdConfigArgs(
                    local_ssd_count=machine.local_ssds
                )
                if machine.local_ssds
                else None
            ),
            reservation_affinity=_reservation_affinity(gpu),
            taints=[
                gcp.container.NodePoolNodeConfigTaintArgs(
                    key=taint.key, value=taint.value, effect=cloud_taint_effect(taint)
                )
                for taint in gpu_node_taints()
            ],
            **common,
        )

    def _system_pool(self, cluster: gcp.container.Cluster, email: pulumi.Input[str]) -> None:
        gcp.container.NodePool(
            f"{self._name}-system",
            cluster=cluster.id,
            location=self._args.region,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                min_node_count=1, max_node_count=self._args.system_max_nodes
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=self._node_config(
                email, self._args.system_machine_type, {"plinth.dev/pool": "system"}
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _gpu_pool(
        self, cluster: gcp.container.Cluster, email: pulumi.Input[str], spec: GpuNodePoolSpec
    ) -> gcp.container.NodePool:
        node_config = self._node_config(
            email, spec.machine_type, {"plinth.dev/pool": spec.name}, gpu=spec
        )
        return gcp.container.NodePool(
            f"{self._name}-gpu-{spec.name}",
            cluster=cluster.id,
            location=self._args.region,
            node_locations=list(spec.zones) or None,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=spec.min_nodes,
                total_max_node_count=spec.max_nodes,
                location_policy="ANY",
            ),
            placement_policy=(
                gcp.container.NodePoolPlacementPolicyArgs(type="COMPACT")
                if spec.compact_placement
                else None
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            node_config=node_config,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _reservation_affinity(
    spec: GpuNodePoolSpec,
) -> gcp.container.NodePoolNodeConfigReservationAffinityArgs:
    if spec.reservation == "specific":
        return gcp.container.NodePoolNodeConfigReservationAffinityArgs(
            consume_reservation_type="SPECIFIC_RESERVATION",
            key="compute.googleapis.com/reservation-name",
            values=[spec.reservation_name or ""],
        )
    kind = "ANY_RESERVATION" if spec.reservation == "any" else "NO_RESERVATION"
    return gcp.container.NodePoolNodeConfigReservationAffinityArgs(consume_reservation_type=kind)
