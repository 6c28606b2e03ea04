"""``stacks/aws-region``: network + EKS (system and GPU node groups) + weight bucket + platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from infra.aws_network import AwsNetwork, AwsNetworkArgs
from infra.buckets import S3WeightBucket, S3WeightBucketArgs
from infra.cluster_access import EksNamespaceEditor, EksNamespaceEditorArgs
from infra.eks import EksCluster, EksClusterArgs
from infra.node_autoscaling import ClusterAutoscalerChart
from infra.platform import DEVICE_PLUGIN_VERSION
from infra.programs.cluster_registration import (
    ClusterRegistrationConfig,
    aws_capacity,
    cloud_cluster_record,
    register_cluster,
)
from infra.programs.common import (
    DEFAULT_GATEWAY_IMAGE,
    DEFAULT_NODE_AGENT_IMAGE,
    GpuNodeGroupConfig,
    SystemNodeGroupConfig,
    deploy_platform,
    export_all,
    required_output,
    standard_tags,
)
from infra.programs.config import StackConfig, aws_region
from infra.registries import EcrModelRegistry, ModelRegistryArgs
from infra.weight_access import EksWeightReaders, EksWeightReadersArgs


class AwsRegionConfig(StackConfig):
    region: str = Field(description="From aws:region")
    cluster_name: str = "plinth"
    kubernetes_version: str = "1.33"
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = 3
    single_nat_gateway: bool = False
    endpoint_public_access: bool = False
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_principal_arns: list[str] = Field(default_factory=list)
    system_node_group: SystemNodeGroupConfig = Field(default_factory=SystemNodeGroupConfig)
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(default_factory=list)
    weight_bucket_name: str | None = None
    control_plane_stack: str = Field(
        description="Stack (org/project/stack) whose apiUrl output the gateways poll"
    )
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    node_agent_image: str = DEFAULT_NODE_AGENT_IMAGE
    gateway_service_type: str = "LoadBalancer"
    device_plugin_version: str = DEVICE_PLUGIN_VERSION
    cluster_registration: ClusterRegistrationConfig | None = Field(
        default=None, description="How the cluster is registered with the control plane"
    )


def build(config: AwsRegionConfig) -> dict[str, Any]:
    tags = standard_tags(config.region)
    network = AwsNetwork(
        config.cluster_name,
        AwsNetworkArgs(
            tags=tags,
            region=config.region,
            cidr_block=config.vpc_cidr,
            az_count=config.az_count,
            single_nat_gateway=config.single_nat_gateway,
            cluster_name=config.cluster_name,
        ),
    )
    cluster = EksCluster(
        config.cluster_name,
        EksClusterArgs(
            tags=tags,
            kubernetes_version=config.kubernetes_version,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            endpoint_public_access=config.endpoint_public_access,
            public_access_cidrs=tuple(config.public_access_cidrs),
            admin_principal_arns=tuple(config.admin_principal_arns),
            system_node_group=config.system_node_group.spec(),
            gpu_node_groups=tuple(g.spec() for g in config.gpu_node_groups),
        ),
    )
    bucket = S3WeightBucket(
        f"{config.cluster_name}-weights",
        S3WeightBucketArgs(tags=tags, bucket_name=config.weight_bucket_name),
    )
    # Deployment images, pushed by the in-cluster build consumer, pulled by digest here.
    registry = EcrModelRegistry(f"{config.cluster_name}-models", ModelRegistryArgs(tags=tags))
    control_plane = pulumi.StackReference(config.control_plane_stack)
    # The control plane mirrors weights into its blob bucket (weights/); the node caches and
    # replicas read them there with their own Pod Identity, never through the API Lambda.
    EksWeightReaders(
        f"{config.cluster_name}-weight-readers",
        EksWeightReadersArgs(
            tags=tags,
            cluster_name=cluster.cluster_name,
            bucket_arn=required_output(control_plane, "blobBucketArn"),
            kms_key_arn=required_output(control_plane, "blobKmsKeyArn"),
            pod_identity_agent=cluster.pod_identity_agent,
        ),
    )
    # The reconciler applies replicas in the platform namespace (and nowhere else).
    EksNamespaceEditor(
        f"{config.cluster_name}-reconciler",
        EksNamespaceEditorArgs(
            tags=tags,
            cluster_name=cluster.cluster_name,
            principal_arn=required_output(control_plane, "reconcilerRoleArn"),
        ),
        opts=pulumi.ResourceOptions(depends_on=[cluster]),
    )
    platform = deploy_platform(
        config.cluster_name,
        cluster.kubeconfig,
        {
            "tags": tags,
            "control_plane_url": required_output(control_plane, "apiUrl"),
            "gateway_image": config.gateway_image,
            "node_agent_image": config.node_agent_image,
            "cluster_autoscaler": ClusterAutoscalerChart(
                cluster_name=cluster.cluster_name,
                region=config.region,
                kubernetes_version=config.kubernetes_version,
            ),
            "gateway_service_type": config.gateway_service_type,
            "device_plugin_version": config.device_plugin_version,
            # Node caches fill from the blob bucket with their Pod Identity (above).
            # Gateways present the control plane's token, read from its Secrets Manager secret.
            "internal_token": internal_token_of(control_plane),
            "weights_origin_url": required_output(control_plane, "blobBucketName").apply(
                lambda name: f"s3://{name}"
            ),
        },
        depends_on=cluster,
    )
    cluster_id = register_region_cluster(
        config, control_plane, cluster.endpoint, platform.namespace
    )
    return {
        "clusterId": cluster_id,
        "vpcId": network.vpc_id,
        "privateSubnetIds": network.private_subnet_ids,
        "clusterName": cluster.cluster_name,
        "clusterArn": cluster.cluster_arn,
        "clusterEndpoint": cluster.endpoint,
        "oidcIssuer": cluster.oidc_issuer,
        "kubeconfig": pulumi.Output.secret(cluster.kubeconfig),
        "weightBucketName": bucket.bucket_name,
        "weightBucketArn": bucket.bucket_arn,
        "modelRegistryUrl": registry.repository_url,
        "platformNamespace": platform.namespace,
    }


def internal_token_of(
    control_plane: pulumi.StackReference, provider: aws.Provider | None = None
) -> pulumi.Output[str]:
    """The control plane's internal token, read from its secret in the control plane's region
    (the ARN says which; ``provider``: AWS credentials where the stack has no default, as on
    GCP); it stays a Pulumi secret."""
    arn = required_output(control_plane, "internalTokenSecretArn")
    version = aws.secretsmanager.get_secret_version_output(
        secret_id=arn,
        region=arn.apply(lambda value: value.split(":")[3]),
        opts=pulumi.InvokeOutputOptions(provider=provider) if provider else None,
    )
    return pulumi.Output.secret(version.secret_string)


def register_region_cluster(
    config: AwsRegionConfig,
    control_plane: pulumi.StackReference,
    endpoint: pulumi.Output[str],
    namespace: pulumi.Output[str],
) -> str:
    """Register this region's cluster in the control plane's metadata table; its id."""
    registration = config.cluster_registration or ClusterRegistrationConfig()
    cluster_id = registration.id or config.cluster_name
    record = cloud_cluster_record(
        cloud="aws",
        region=config.region,
        cluster_id=cluster_id,
        capacity=aws_capacity(
            ((group.instance_type, group.max_size) for group in config.gpu_node_groups),
            "aws-region:gpuNodeGroups",
        ),
        registration=registration,
        where="aws-region",
    )
    register_cluster(
        cluster_id,
        required_output(control_plane, "metadataTableName"),
        pulumi.Output.all(endpoint, namespace).apply(lambda v: record(v[0], v[1])),
    )
    return cluster_id


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs)."""
    del stack_dir  # paths in this stack's config are not relative to it
    return build(AwsRegionConfig.from_pulumi(region=aws_region()))


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
