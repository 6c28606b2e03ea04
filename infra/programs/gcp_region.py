"""``stacks/gcp-region``: network + private GKE with A3 GPU pools + GCS weight bucket + platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field

from infra.buckets import GcsWeightBucket, GcsWeightBucketArgs
from infra.exceptions import InfraConfigError
from infra.gcp_network import GcpNetwork, GcpNetworkArgs
from infra.gke import GkeCluster, GkeClusterArgs
from infra.programs.aws_region import internal_token_of
from infra.programs.cluster_registration import (
    ClusterRegistrationConfig,
    cloud_cluster_record,
    gcp_capacity,
    register_cluster,
)
from infra.programs.common import (
    DEFAULT_GATEWAY_IMAGE,
    DEFAULT_NODE_AGENT_IMAGE,
    GpuNodePoolConfig,
    deploy_platform,
    export_all,
    required_output,
    standard_tags,
)
from infra.programs.config import StackConfig
from infra.registries import ArtifactModelRegistry, ModelRegistryArgs
from infra.weight_access import GkeWeightReaders, GkeWeightReadersArgs


class GcpRegionConfig(StackConfig):
    project: str = Field(description="From gcp:project")
    region: str = Field(description="From gcp:region")
    cluster_name: str = "plinth"
    nodes_cidr: str = "10.10.0.0/20"
    pods_cidr: str = "10.16.0.0/14"
    services_cidr: str = "10.20.0.0/20"
    master_ipv4_cidr_block: str = "172.16.0.0/28"
    private_endpoint: bool = False
    master_authorized_cidrs: list[str] = Field(default_factory=list)
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    gpu_node_pools: list[GpuNodePoolConfig] = Field(default_factory=list)
    weight_bucket_name: str | None = None
    weight_bucket_location: str | None = Field(default=None, description="Default: the region")
    control_plane_stack: str
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    node_agent_image: str = DEFAULT_NODE_AGENT_IMAGE
    gateway_service_type: str = "LoadBalancer"
    cluster_registration: ClusterRegistrationConfig | None = Field(
        default=None, description="How the cluster is registered with the control plane"
    )


def gke_kubeconfig(name: str, endpoint: str, ca_certificate: str) -> str:
    """Kubeconfig using ``gke-gcloud-auth-plugin`` (short-lived tokens, nothing stored)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": f"https://{endpoint}",
                        "certificate-authority-data": ca_certificate,
                    },
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        }
    )


def build(config: GcpRegionConfig) -> dict[str, Any]:
    tags = standard_tags(config.region)
    network = GcpNetwork(
        config.cluster_name,
        GcpNetworkArgs(
            tags=tags,
            region=config.region,
            nodes_cidr=config.nodes_cidr,
            pods_cidr=config.pods_cidr,
            services_cidr=config.services_cidr,
        ),
    )
    cluster = GkeCluster(
        config.cluster_name,
        GkeClusterArgs(
            tags=tags,
            project=config.project,
            region=config.region,
            network=network.network_id,
            subnetwork=network.subnetwork_self_link,
            master_ipv4_cidr_block=config.master_ipv4_cidr_block,
            private_endpoint=config.private_endpoint,
            master_authorized_cidrs=tuple(config.master_authorized_cidrs),
            release_channel=config.release_channel,
            gpu_node_pools=tuple(p.spec() for p in config.gpu_node_pools),
        ),
    )
    bucket = GcsWeightBucket(
        f"{config.cluster_name}-weights",
        GcsWeightBucketArgs(
            tags=tags,
            location=(config.weight_bucket_location or config.region).upper(),
            bucket_name=config.weight_bucket_name,
        ),
    )
    GkeWeightReaders(
        f"{config.cluster_name}-weight-readers",
        GkeWeightReadersArgs(
            project=config.project,
            workload_pool=cluster.workload_pool,
            bucket_name=bucket.bucket_name,
        ),
    )
    kubeconfig = pulumi.Output.all(
        cluster.cluster_name, cluster.endpoint, cluster.ca_certificate
    ).apply(lambda v: gke_kubeconfig(v[0], v[1], v[2]))
    control_plane = pulumi.StackReference(config.control_plane_stack)
    # Deployment images, pushed by the in-cluster build consumer, pulled by digest here.
    registry = ArtifactModelRegistry(
        f"{config.cluster_name}-models", ModelRegistryArgs(tags=tags, location=config.region)
    )
    # The control plane's AWS account and region: its table and its token secret live there.
    table_arn = required_output(control_plane, "metadataTableArn")
    # arn:aws:dynamodb:<region>:<account>:table/<name>
    aws_provider = aws.Provider("control-plane", region=table_arn.apply(lambda a: a.split(":")[3]))
    platform = deploy_platform(
        config.cluster_name,
        kubeconfig,
        {
            "tags": tags,
            "control_plane_url": required_output(control_plane, "apiUrl"),
            "gateway_image": config.gateway_image,
            "node_agent_image": config.node_agent_image,
            "gateway_service_type": config.gateway_service_type,
            "install_device_plugin": False,  # GKE ships the device plugin with its driver install
            # Node caches fill from the regional bucket with their Workload Identity.
            "weights_origin_url": bucket.bucket_name.apply(lambda name: f"gs://{name}"),
            # Gateways present the control plane's token, read from its Secrets Manager secret.
            "internal_token": internal_token_of(control_plane, aws_provider),
        },
        depends_on=cluster,
    )
    cluster_id = register_region_cluster(
        config, control_plane, cluster.endpoint, platform.namespace, aws_provider
    )
    return {
        "clusterId": cluster_id,
        "clusterName": cluster.cluster_name,
        "clusterEndpoint": cluster.endpoint,
        "workloadPool": cluster.workload_pool,
        "nodeServiceAccount": cluster.node_service_account,
        "weightBucketName": bucket.bucket_name,
        "weightBucketUrl": bucket.bucket_url,
        "modelRegistryUrl": registry.repository_url,
        "platformNamespace": platform.namespace,
        "kubeconfig": pulumi.Output.secret(kubeconfig),
    }


def register_region_cluster(
    config: GcpRegionConfig,
    control_plane: pulumi.StackReference,
    endpoint: pulumi.Output[str],
    namespace: pulumi.Output[str],
    provider: aws.Provider,
) -> str:
    """Register this region's cluster in the control plane's metadata table (DynamoDB, in
    the control plane's AWS account and region: this stack needs AWS credentials for it)."""
    registration = config.cluster_registration or ClusterRegistrationConfig()
    cluster_id = registration.id or config.cluster_name
    record = cloud_cluster_record(
        cloud="gcp",
        region=config.region,
        cluster_id=cluster_id,
        capacity=gcp_capacity(
            ((pool.machine_type, pool.max_nodes) for pool in config.gpu_node_pools),
            "gcp-region:gpuNodePools",
        ),
        registration=registration,
        where="gcp-region",
    )
    register_cluster(
        cluster_id,
        required_output(control_plane, "metadataTableName"),
        # GKE reports its endpoint as a bare address.
        pulumi.Output.all(endpoint, namespace).apply(lambda v: record(f"https://{v[0]}", v[1])),
        opts=pulumi.ResourceOptions(provider=provider),
    )
    return cluster_id


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs)."""
    del stack_dir  # paths in this stack's config are not relative to it
    gcp_config = pulumi.Config("gcp")
    project, region = gcp_config.get("project"), gcp_config.get("region")
    if not project or not region:
        raise InfraConfigError("gcp:project/gcp:region", "both must be set in the stack config")
    return build(GcpRegionConfig.from_pulumi(project=project, region=region))


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
