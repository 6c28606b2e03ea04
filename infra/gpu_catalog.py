"""The accelerator catalog as the infra components see it.

The data (accelerators, AWS instance types, GCP machine types, node labels and taints)
lives in :mod:`plinth.accelerators`, because the Kubernetes driver renders pod selectors
and tolerations from the same tables and runtime packages must not import ``infra``.
This module adds what only infra needs: lookups that fail with :class:`InfraConfigError`
naming the config field, and taints in the clouds' spelling (``NO_SCHEDULE``).
"""

from __future__ import annotations

from infra.exceptions import InfraConfigError
from plinth.accelerators import (
    AWS_GPU_INSTANCES,
    GCP_GPU_MACHINES,
    GPU_NODE_TAINTS,
    AwsGpuInstance,
    GcpGpuMachine,
    Taint,
    gpu_node_labels,
    gpu_pod_tolerations,
)

__all__ = [
    "AWS_GPU_INSTANCES",
    "GCP_GPU_MACHINES",
    "GPU_TAINT_KEY",
    "AwsGpuInstance",
    "GcpGpuMachine",
    "aws_gpu_instance",
    "cloud_taint_effect",
    "gcp_gpu_machine",
    "gpu_node_labels",
    "gpu_node_taints",
    "gpu_pod_tolerations",
]

GPU_TAINT_KEY = GPU_NODE_TAINTS[0].key
# EKS node groups and GKE node pools both spell taint effects this way.
_CLOUD_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}


def cloud_taint_effect(taint: Taint) -> str:
    return _CLOUD_EFFECTS[taint.effect]


def gpu_node_taints() -> tuple[Taint, ...]:
    return GPU_NODE_TAINTS


def aws_gpu_instance(instance_type: str, field: str) -> AwsGpuInstance:
    try:
        return AWS_GPU_INSTANCES[instance_type]
    except KeyError:
        known = ", ".join(sorted(AWS_GPU_INSTANCES))
        raise InfraConfigError(
            field, f"unknown GPU instance type {instance_type!r} ({known})"
        ) from None


def gcp_gpu_machine(machine_type: str, field: str) -> GcpGpuMachine:
    try:
        return GCP_GPU_MACHINES[machine_type]
    except KeyError:
        known = ", ".join(sorted(GCP_GPU_MACHINES))
        raise InfraConfigError(
            field, f"unknown GPU machine type {machine_type!r} ({known})"
        ) from None
