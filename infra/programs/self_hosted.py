"""``stacks/self-hosted``: Plinth inside a customer's existing VPC and account.

EKS (system + GPU node groups) in the given private subnets, a weight bucket, the
in-cluster platform, and the cross-account role the Plinth control plane assumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pydantic import Field

from infra.buckets import S3WeightBucket, S3WeightBucketArgs
from infra.eks import EksCluster, EksClusterArgs
from infra.node_autoscaling import ClusterAutoscalerChart
from infra.programs.common import (
    DEFAULT_GATEWAY_IMAGE,
    DEFAULT_NODE_AGENT_IMAGE,
    GpuNodeGroupConfig,
    SystemNodeGroupConfig,
    deploy_platform,
    export_all,
    standard_tags,
)
from infra.programs.config import StackConfig, aws_region
from infra.self_hosted import SelfHostedAccess, SelfHostedAccessArgs
from infra.weight_access import EksWeightReaders, EksWeightReadersArgs


class SelfHostedConfig(StackConfig):
    region: str = Field(description="From aws:region")
    existing_vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]+$")
    private_subnet_ids: list[str] = Field(min_length=2, description="EKS needs two AZs")
    cluster_name: str = "plinth"
    kubernetes_version: str = "1.33"
    admin_principal_arns: list[str] = Field(default_factory=list)
    system_node_group: SystemNodeGroupConfig = Field(default_factory=SystemNodeGroupConfig)
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(default_factory=list)
    control_plane_role_arn: str = Field(pattern=r"^arn:aws:iam::\d{12}:role/.+$")
    external_id: str = Field(min_length=16, description="Agreed with the control plane; secret")
    control_plane_url: str
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    node_agent_image: str = DEFAULT_NODE_AGENT_IMAGE


def build(config: SelfHostedConfig) -> dict[str, Any]:
    tags = standard_tags(config.region)
    cluster = EksCluster(
        config.cluster_name,
        EksClusterArgs(
            tags=tags,
            kubernetes_version=config.kubernetes_version,
            vpc_id=config.existing_vpc_id,
            private_subnet_ids=list(config.private_subnet_ids),
            admin_principal_arns=tuple(config.admin_principal_arns),
            system_node_group=config.system_node_group.spec(),
            gpu_node_groups=tuple(g.spec() for g in config.gpu_node_groups),
        ),
    )
    bucket = S3WeightBucket(f"{config.cluster_name}-weights", S3WeightBucketArgs(tags=tags))
    EksWeightReaders(
        f"{config.cluster_name}-weight-readers",
        EksWeightReadersArgs(
            tags=tags,
            cluster_name=cluster.cluster_name,
            bucket_arn=bucket.bucket_arn,
            kms_key_arn=bucket.kms_key_arn,
            pod_identity_agent=cluster.pod_identity_agent,
        ),
    )
    access = SelfHostedAccess(
        f"{config.cluster_name}-plinth",
        SelfHostedAccessArgs(
            tags=tags,
            control_plane_role_arn=config.control_plane_role_arn,
            external_id=pulumi.Output.secret(config.external_id),
            cluster_arn=cluster.cluster_arn,
            cluster_name=cluster.cluster_name,
            bucket_arn=bucket.bucket_arn,
            bucket_kms_key_arn=bucket.kms_key_arn,
        ),
    )
    deploy_platform(
        config.cluster_name,
        cluster.kubeconfig,
        {
            "tags": tags,
            "control_plane_url": config.control_plane_url,
            "gateway_image": config.gateway_image,
            "node_agent_image": config.node_agent_image,
            "cluster_autoscaler": ClusterAutoscalerChart(
                cluster_name=cluster.cluster_name,
                region=config.region,
                kubernetes_version=config.kubernetes_version,
            ),
        },
        depends_on=cluster,
    )
    return {
        "clusterName": cluster.cluster_name,
        "clusterArn": cluster.cluster_arn,
        "clusterEndpoint": cluster.endpoint,
        "accessRoleArn": access.role_arn,
        "weightBucketName": bucket.bucket_name,
        "weightBucketArn": bucket.bucket_arn,
    }


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs)."""
    del stack_dir  # paths in this stack's config are not relative to it
    return build(SelfHostedConfig.from_pulumi(region=aws_region()))


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
