"""The accelerator catalog: the one source of GPU node labels, taints and pod placement.

Both sides of GPU scheduling read this module: ``infra/`` labels and taints the node
groups (EKS) and node pools (GKE) it creates, and the Kubernetes driver
(``control_plane.adapters.k8s_manifests``) renders the pod's ``nodeSelector`` and
``tolerations``. Keeping the names here, in the contracts package every plane may import,
is what makes a pod asking for ``H100`` land on a node labelled ``H100`` on either cloud.

Accelerator names follow Truss ``resources.accelerator`` (``A10G``, ``H100``, ``A100_40GB``);
lookups ignore case and treat ``-`` as ``_`` and accept a few other spellings
(``A100-80GB``). The machine tables list the GPU shapes the infra components can create:
instance types not listed are rejected at args validation, so a typo never reaches the
cloud API. EFA interface counts are the number of EFA network cards the AWS instance type
exposes (the EKS launch template attaches one per card, so NCCL gets the full fabric).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GPU_NODE_LABEL = "plinth.dev/gpu"  # value: the accelerator's catalog name, e.g. "H100"
GPU_COUNT_LABEL = "plinth.dev/gpu-count"
# NVIDIA's device plugin chart selects nodes by this label.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_RESOURCE = "nvidia.com/gpu"

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Taint:
    """A node taint in Kubernetes spelling (clouds spell the effect ``NO_SCHEDULE``)."""

    key: str
    value: str
    effect: TaintEffect


# Every GPU node carries these, so only pods that tolerate them (GPU workloads and the
# per-node platform agents) land on GPUs. GKE adds ``nvidia.com/gpu=present:NoSchedule``
# by itself; the tolerations below (operator Exists) admit both values.
GPU_NODE_TAINTS: tuple[Taint, ...] = (Taint(GPU_RESOURCE, "true", "NoSchedule"),)


@dataclass(frozen=True)
class Accelerator:
    name: str  # catalog name: the GPU_NODE_LABEL value on nodes and in pod selectors
    memory_gib: int
    aliases: tuple[str, ...] = ()


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator("T4", 16),
        Accelerator("L4", 24),
        Accelerator("A10G", 24),
        Accelerator("L40S", 48),
        Accelerator("A100_40GB", 40),
        Accelerator("A100", 80, aliases=("A100_80GB",)),
        Accelerator("H100", 80, aliases=("H100_80GB", "H100_MEGA")),
        Accelerator("H200", 141, aliases=("H200_141GB",)),
    )
}


@dataclass(frozen=True)
class AwsGpuInstance:
    accelerator: str  # an ACCELERATORS key
    gpus: int
    efa_interfaces: int  # 0: no EFA


AWS_GPU_INSTANCES: dict[str, AwsGpuInstance] = {
    "g4dn.xlarge": AwsGpuInstance("T4", 1, 0),
    "g4dn.12xlarge": AwsGpuInstance("T4", 4, 0),
    "g6.xlarge": AwsGpuInstance("L4", 1, 0),
    "g6.12xlarge": AwsGpuInstance("L4", 4, 0),
    "g5.xlarge": AwsGpuInstance("A10G", 1, 0),
    "g5.12xlarge": AwsGpuInstance("A10G", 4, 0),
    "g5.48xlarge": AwsGpuInstance("A10G", 8, 1),
    "g6e.xlarge": AwsGpuInstance("L40S", 1, 0),
    "g6e.48xlarge": AwsGpuInstance("L40S", 8, 4),
    "p4d.24xlarge": AwsGpuInstance("A100_40GB", 8, 4),
    "p4de.24xlarge": AwsGpuInstance("A100", 8, 4),
    "p5.48xlarge": AwsGpuInstance("H100", 8, 32),
    "p5e.48xlarge": AwsGpuInstance("H200", 8, 32),
    "p5en.48xlarge": AwsGpuInstance("H200", 8, 16),
}


@dataclass(frozen=True)
class GcpGpuMachine:
    accelerator: str  # an ACCELERATORS key
    accelerator_type: str  # guest accelerator type GKE expects
    gpus: int
    local_ssds: int  # local NVMe SSDs the machine type ships with (0: none required)


GCP_GPU_MACHINES: dict[str, GcpGpuMachine] = {
    "n1-standard-8": GcpGpuMachine("T4", "nvidia-tesla-t4", 1, 0),
    "g2-standard-8": GcpGpuMachine("L4", "nvidia-l4", 1, 0),
    "g2-standard-48": GcpGpuMachine("L4", "nvidia-l4", 4, 0),
    "a2-highgpu-1g": GcpGpuMachine("A100_40GB", "nvidia-tesla-a100", 1, 0),
    "a2-highgpu-8g": GcpGpuMachine("A100_40GB", "nvidia-tesla-a100", 8, 0),
    "a2-ultragpu-1g": GcpGpuMachine("A100", "nvidia-a100-80gb", 1, 1),
    "a2-ultragpu-8g": GcpGpuMachine("A100", "nvidia-a100-80gb", 8, 8),
    "a3-highgpu-8g": GcpGpuMachine("H100", "nvidia-h100-80gb", 8, 16),
    "a3-megagpu-8g": GcpGpuMachine("H100", "nvidia-h100-mega-80gb", 8, 16),
    "a3-ultragpu-8g": GcpGpuMachine("H200", "nvidia-h200-141gb", 8, 32),
}


def _normalise(name: str) -> str:
    return name.strip().upper().replace("-", "_")


def find_accelerator(name: str) -> Accelerator | None:
    """The catalog entry for a Truss accelerator name or alias (None when unknown)."""
    wanted = _normalise(name)
    for accelerator in ACCELERATORS.values():
        if wanted == accelerator.name or wanted in accelerator.aliases:
            return accelerator
    return None


def max_gpus_per_node(accelerator: str) -> int:
    """The most GPUs of ``accelerator`` one node of any catalog machine has."""
    counts = [m.gpus for m in AWS_GPU_INSTANCES.values() if m.accelerator == accelerator]
    counts += [m.gpus for m in GCP_GPU_MACHINES.values() if m.accelerator == accelerator]
    return max(counts, default=0)


def gpu_node_labels(accelerator: str, gpus: int) -> dict[str, str]:
    """Labels every GPU node of a group/pool carries (the pod selector is a subset)."""
    return {GPU_NODE_LABEL: accelerator, GPU_COUNT_LABEL: str(gpus), GPU_PRESENT_LABEL: "true"}


def gpu_pod_node_selector(accelerator: str) -> dict[str, str]:
    return {GPU_NODE_LABEL: accelerator}


def gpu_pod_tolerations() -> list[dict[str, str]]:
    """Tolerations (Kubernetes JSON) admitting every taint of ``GPU_NODE_TAINTS``."""
    return [{"key": t.key, "operator": "Exists", "effect": t.effect} for t in GPU_NODE_TAINTS]
