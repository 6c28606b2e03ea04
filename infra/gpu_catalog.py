"""GPU machine shapes the components know: GPUs per node and EFA interfaces (AWS).

EFA interface counts are the maximum number of EFA network cards the instance type
exposes; the EKS launch template attaches one EFA interface per network card so NCCL
can use the full fabric bandwidth (p5: 32 x 100 Gbps). Instance types not listed here
are rejected at args validation, so a typo never reaches the cloud API.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.exceptions import InfraConfigError

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"


@dataclass(frozen=True)
class AwsGpuInstance:
    gpu_product: str  # value of the plinth.dev/gpu node label
    gpus: int
    efa_interfaces: int  # 0: no EFA


AWS_GPU_INSTANCES: dict[str, AwsGpuInstance] = {
    "p5.48xlarge": AwsGpuInstance("H100", 8, 32),
    "p5e.48xlarge": AwsGpuInstance("H200", 8, 32),
    "p5en.48xlarge": AwsGpuInstance("H200", 8, 16),
    "p4d.24xlarge": AwsGpuInstance("A100-40GB", 8, 4),
    "p4de.24xlarge": AwsGpuInstance("A100-80GB", 8, 4),
    "g5.48xlarge": AwsGpuInstance("A10G", 8, 1),
    "g5.xlarge": AwsGpuInstance("A10G", 1, 0),
    "g6.xlarge": AwsGpuInstance("L4", 1, 0),
    "g6e.xlarge": AwsGpuInstance("L40S", 1, 0),
}


@dataclass(frozen=True)
class GcpGpuMachine:
    gpu_product: str
    accelerator_type: str  # guest accelerator type GKE expects
    gpus: int
    local_ssds: int  # local NVMe SSDs the machine type ships with (0: none required)


GCP_GPU_MACHINES: dict[str, GcpGpuMachine] = {
    "a3-highgpu-8g": GcpGpuMachine("H100", "nvidia-h100-80gb", 8, 16),
    "a3-megagpu-8g": GcpGpuMachine("H100-MEGA", "nvidia-h100-mega-80gb", 8, 16),
    "a3-ultragpu-8g": GcpGpuMachine("H200", "nvidia-h200-141gb", 8, 32),
    "a2-ultragpu-1g": GcpGpuMachine("A100-80GB", "nvidia-a100-80gb", 1, 1),
    "g2-standard-8": GcpGpuMachine("L4", "nvidia-l4", 1, 0),
}


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
