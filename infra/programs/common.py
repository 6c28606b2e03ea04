"""Pieces several stack programs share: GPU group config models, tags, cross-stack outputs."""

from __future__ import annotations

from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field

from infra.eks import GpuNodeGroupSpec, SystemNodeGroupSpec
from infra.gke import GpuNodePoolSpec
from infra.platform import ClusterPlatform, ClusterPlatformArgs
from infra.programs.config import StackConfig
from infra.tags import StandardTags
from plinth.contracts.images import GATEWAY_IMAGE, NODE_AGENT_IMAGE

PROJECT_TAG = "plinth"
DEFAULT_GATEWAY_IMAGE = GATEWAY_IMAGE
DEFAULT_NODE_AGENT_IMAGE = NODE_AGENT_IMAGE


class GpuNodeGroupConfig(StackConfig):
    """One EKS GPU node group (``gpuNodeGroups`` list item)."""

    name: str = Field(description="Node group suffix, e.g. h100")
    instance_type: str = Field(description="GPU instance type, e.g. p5.48xlarge (H100)")
    max_size: int = Field(ge=1)
    min_size: int = Field(default=0, ge=0)
    desired_size: int = Field(default=0, ge=0)
    capacity: Literal["on-demand", "capacity-block", "capacity-reservation"] = "on-demand"
    capacity_reservation_id: str | None = None
    subnet_index: int = Field(default=0, ge=0)
    disk_size_gib: int = Field(default=500, ge=50)

    def spec(self) -> GpuNodeGroupSpec:
        return GpuNodeGroupSpec(
            name=self.name,
            instance_type=self.instance_type,
            max_size=self.max_size,
            min_size=self.min_size,
            desired_size=self.desired_size,
            capacity=self.capacity,
            capacity_reservation_id=self.capacity_reservation_id,
            subnet_index=self.subnet_index,
            disk_size_gib=self.disk_size_gib,
        )


class SystemNodeGroupConfig(StackConfig):
    instance_types: list[str] = Field(default_factory=lambda: ["m7i.xlarge"])
    min_size: int = Field(default=2, ge=1)
    desired_size: int = Field(default=2, ge=1)
    max_size: int = Field(default=6, ge=1)

    def spec(self) -> SystemNodeGroupSpec:
        return SystemNodeGroupSpec(
            instance_types=tuple(self.instance_types),
            min_size=self.min_size,
            desired_size=self.desired_size,
            max_size=self.max_size,
        )


class GpuNodePoolConfig(StackConfig):
    """One GKE GPU node pool (``gpuNodePools`` list item)."""

    name: str
    machine_type: str = "a3-highgpu-8g"
    max_nodes: int = Field(default=2, ge=1)
    min_nodes: int = Field(default=0, ge=0)
    zones: list[str] = Field(default_factory=list)
    reservation: Literal["none", "any", "specific"] = "none"
    reservation_name: str | None = None
    compact_placement: bool = True
    spot: bool = False

    def spec(self) -> GpuNodePoolSpec:
        return GpuNodePoolSpec(
            name=self.name,
            machine_type=self.machine_type,
            max_nodes=self.max_nodes,
            min_nodes=self.min_nodes,
            zones=tuple(self.zones),
            reservation=self.reservation,
            reservation_name=self.reservation_name,
            compact_placement=self.compact_placement,
            spot=self.spot,
        )


def standard_tags(region: str) -> StandardTags:
    return StandardTags(project=PROJECT_TAG, stack=pulumi.get_stack(), region=region)


def required_output(reference: pulumi.StackReference, output: str) -> pulumi.Output[str]:
    """One output of another stack as a string; the deployment fails if it is missing."""
    return reference.require_output(output).apply(str)


def export_all(outputs: dict[str, object]) -> None:
    for name, value in outputs.items():
        pulumi.export(name, value)


def deploy_platform(
    name: str,
    kubeconfig: pulumi.Input[str],
    args_without_provider: dict[str, Any],
    depends_on: pulumi.Resource,
) -> ClusterPlatform:
    """The in-cluster platform through an explicit provider built from ``kubeconfig``."""
    provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, enable_server_side_apply=True)
    return ClusterPlatform(
        name,
        ClusterPlatformArgs(provider=provider, **args_without_provider),
        opts=pulumi.ResourceOptions(depends_on=[depends_on]),
    )
