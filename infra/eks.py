"""EKS cluster with a system node group and GPU node groups (H100 p5, H200 p5e, ...).

Cluster: explicit Kubernetes version, private API endpoint (public optional), secrets
envelope-encrypted with a KMS key, access entries (authentication mode ``API``).
GPU node groups: AMI type ``AL2023_x86_64_NVIDIA``, a launch template requiring IMDSv2
with hop limit 2 (pods behind the node's network namespace still reach IMDS), one EFA
interface per network card where the instance has them, the ``nvidia.com/gpu=true``
NoSchedule taint so only GPU workloads land there, min size 0 so idle GPUs cost nothing,
and on-demand, capacity-block or capacity-reservation purchasing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws

from infra.exceptions import InfraConfigError
from infra.gpu_catalog import (
    aws_gpu_instance,
    cloud_taint_effect,
    gpu_node_labels,
    gpu_node_taints,
)
from infra.iam import managed_policy, service_trust_policy
from infra.node_autoscaling import (
    CLUSTER_AUTOSCALER_NAMESPACE,
    CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
    cluster_autoscaler_statements,
    node_template_tags,
)
from infra.pod_identity import POD_IDENTITY_AGENT_ADDON, pod_identity
from infra.tags import StandardTags

GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
SYSTEM_AMI_TYPE = "AL2023_x86_64_STANDARD"
CLUSTER_LOG_TYPES = ("api", "audit", "authenticator")
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKS_CNI_Policy",
    "AmazonSSMManagedInstanceCore",
)
CapacityKind = Literal["on-demand", "capacity-block", "capacity-reservation"]


@dataclass(frozen=True)
class GpuNodeGroupSpec:
    name: str
    instance_type: str
    max_size: int
    min_size: int = 0
    desired_size: int = 0
    capacity: CapacityKind = "on-demand"
    capacity_reservation_id: str | None = None
    subnet_index: int = 0  # EFA groups live in one AZ: index into the private subnets
    disk_size_gib: int = 500
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"gpu_node_groups[{self.name}]"
        aws_gpu_instance(self.instance_type, f"{where}.instance_type")
        if not 0 <= self.min_size <= self.desired_size <= self.max_size or self.max_size < 1:
            raise InfraConfigError(
                f"{where}.max_size",
                f"need 0 <= min ({self.min_size}) <= desired ({self.desired_size}) <= max "
                f"({self.max_size}) and max >= 1",
            )
        if self.capacity != "on-demand" and not self.capacity_reservation_id:
            raise InfraConfigError(
                f"{where}.capacity_reservation_id", f"required when capacity is {self.capacity!r}"
            )
        if self.capacity not in ("on-demand", "capacity-block", "capacity-reservation"):
            raise InfraConfigError(f"{where}.capacity", f"unknown capacity {self.capacity!r}")

    @property
    def efa_interfaces(self) -> int:
        return aws_gpu_instance(self.instance_type, "instance_type").efa_interfaces


@dataclass(frozen=True)
class SystemNodeGroupSpec:
    instance_types: Sequence[str] = ("m7i.xlarge",)
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 6


@dataclass(frozen=True)
class EksClusterArgs:
    tags: StandardTags
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[str]]
    endpoint_public_access: bool = False
    public_access_cidrs: Sequence[str] = ()
    admin_principal_arns: Sequence[str] = ()
    system_node_group: SystemNodeGroupSpec = field(default_factory=SystemNodeGroupSpec)
    gpu_node_groups: Sequence[GpuNodeGroupSpec] = ()
    log_retention_days: int = 30

    def __post_init__(self) -> None:
        parts = self.kubernetes_version.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InfraConfigError(
                "kubernetes_version", f"{self.kubernetes_version!r} is not MAJOR.MINOR (e.g. 1.33)"
            )
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise InfraConfigError(
                "public_access_cidrs", "a public endpoint needs an explicit CIDR allow-list"
            )
        names = [g.name for g in self.gpu_node_groups]
        if len(names) != len(set(names)):
            raise InfraConfigError("gpu_node_groups", f"duplicate names in {names}")


class EksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    pod_identity_agent: aws.eks.Addon
    endpoint: pulumi.Output[str]
    certificate_authority_data: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: EksClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:eks:EksCluster", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags.aws("eks")

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"EKS secrets envelope encryption for {name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-cluster-logs",
            name=f"/aws/eks/{name}/cluster",  # the group EKS writes control plane logs to
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=child,
        )
        cluster = self._cluster(secrets_key, log_group)
        self._access_entries(cluster)
        node_role = self._node_role()
        self._system_node_group(cluster, node_role)
        self.pod_identity_agent = aws.eks.Addon(
            f"{name}-pod-identity-agent",
            cluster_name=cluster.name,
            addon_name=POD_IDENTITY_AGENT_ADDON,
            tags=tags,
            opts=child,
        )
        for spec in args.gpu_node_groups:
            group = self._gpu_node_group(cluster, node_role, spec)
            self._node_template_tags(spec, group)
        self._cluster_autoscaler_identity(cluster)

        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.endpoint = cluster.endpoint
        self.certificate_authority_data = cluster.certificate_authority.apply(
            lambda ca: (ca.data or "") if ca else ""
        )
        self.oidc_issuer = cluster.identities.apply(
            lambda ids: (ids[0].oidcs[0].issuer or "") if ids and ids[0].oidcs else ""
        )
        self.node_role_arn = node_role.arn
        self.kubeconfig = pulumi.Output.all(
            cluster.name, cluster.endpoint, self.certificate_authority_data
        ).apply(lambda v: kubeconfig_json(v[0], v[1], v[2], args.tags.region))
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "cluster_arn": self.cluster_arn,
                "endpoint": self.endpoint,
                "oidc_issuer": self.oidc_issuer,
                "node_role_arn": self.node_role_arn,
            }
        )

    def _cluster(self, key: aws.kms.Key, log_group: aws.cloudwatch.LogGroup) -> aws.eks.Cluster:
        args, child = self._args, pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{self._name}-cluster",
            assume_role_policy=service_trust_policy("eks.amazonaws.com"),
            tags=args.tags.aws("eks"),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{self._name}-cluster",
            role=role.name,
            policy_arn=managed_policy("AmazonEKSClusterPolicy"),
            opts=child,
        )
        return aws.eks.Cluster(
            f"{self._name}-cluster",
            name=self._name,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=args.endpoint_public_access,
                public_access_cidrs=list(args.public_access_cidrs) or None,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn),
            ),
            enabled_cluster_log_types=list(CLUSTER_LOG_TYPES),
            tags=args.tags.aws("eks"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, log_group]),
        )

    def _access_entries(self, cluster: aws.eks.Cluster) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for index, principal in enumerate(self._args.admin_principal_arns):
            entry = aws.eks.AccessEntry(
                f"{self._name}-admin-{index}",
                cluster_name=cluster.name,
                principal_arn=principal,
                type="STANDARD",
                tags=self._args.tags.aws("eks"),
                opts=child,
            )
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-admin-{index}",
                cluster_name=cluster.name,
                principal_arn=principal,
                policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )

    def _node_role(self) -> aws.iam.Role:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{self._name}-nodes",
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
            tags=self._args.tags.aws("eks"),
            opts=child,
        )
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{self._name}-nodes-{policy}",
                role=role.name,
                policy_arn=managed_policy(policy),
                opts=child,
            )
        return role

    def _system_node_group(self, cluster: aws.eks.Cluster, role: aws.iam.Role) -> None:
        spec = self._args.system_node_group
        template = self._launch_template("system", cluster, efa_interfaces=0, spec=None)
        aws.eks.NodeGroup(
            f"{self._name}-system",
            cluster_name=cluster.name,
            node_group_name="system",
            node_role_arn=role.arn,
            subnet_ids=self._args.private_subnet_ids,
            ami_type=SYSTEM_AMI_TYPE,
            instance_types=list(spec.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=spec.min_size, desired_size=spec.desired_size, max_size=spec.max_size
            ),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels={"plinth.dev/pool": "system"},
            tags=self._args.tags.aws("eks"),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )

    def _gpu_node_group(
        self, cluster: aws.eks.Cluster, role: aws.iam.Role, spec: GpuNodeGroupSpec
    ) -> aws.eks.NodeGroup:
        instance = aws_gpu_instance(spec.instance_type, "instance_type")
        template = self._launch_template(spec.name, cluster, instance.efa_interfaces, spec)
        # EFA needs every node of the group in one AZ (and a capacity block is in one AZ).
        single_az = instance.efa_interfaces > 0 or spec.capacity != "on-demand"
        subnets = pulumi.Output.from_input(self._args.private_subnet_ids).apply(
            lambda ids: [ids[spec.subnet_index]] if single_az else list(ids)
        )
        labels = {
            **spec.labels,
            "plinth.dev/pool": spec.name,
            **gpu_node_labels(instance.accelerator, instance.gpus),
        }
        return aws.eks.NodeGroup(
            f"{self._name}-gpu-{spec.name}",
            cluster_name=cluster.name,
            node_group_name=f"gpu-{spec.name}",
            node_role_arn=role.arn,
            subnet_ids=subnets,
            ami_type=GPU_AMI_TYPE,
            instance_types=[spec.instance_type],
            capacity_type="CAPACITY_BLOCK" if spec.capacity == "capacity-block" else "ON_DEMAND",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=spec.min_size, desired_size=spec.desired_size, max_size=spec.max_size
            ),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels=labels,
            taints=[
                aws.eks.NodeGroupTaintArgs(
                    key=taint.key, value=taint.value, effect=cloud_taint_effect(taint)
                )
                for taint in gpu_node_taints()
            ],
            tags=self._args.tags.aws("eks"),
            # The cluster autoscaler owns the live size; Pulumi owns the bounds.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )

    def _node_template_tags(self, spec: GpuNodeGroupSpec, group: aws.eks.NodeGroup) -> None:
        """Tags on the group's Auto Scaling group so the autoscaler can scale it from 0."""
        instance = aws_gpu_instance(spec.instance_type, "instance_type")
        labels = {
            **spec.labels,
            "plinth.dev/pool": spec.name,
            **gpu_node_labels(instance.accelerator, instance.gpus),
        }
        asg_name = group.resources.apply(_first_autoscaling_group)
        tags = node_template_tags(labels, gpu_node_taints(), instance.gpus)
        for index, (key, value) in enumerate(sorted(tags.items())):
            aws.autoscaling.Tag(
                f"{self._name}-gpu-{spec.name}-template-{index}",
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _cluster_autoscaler_identity(self, cluster: aws.eks.Cluster) -> None:
        """The cluster-autoscaler's own role (Pod Identity), not the nodes' role."""
        nodegroups = cluster.arn.apply(
            lambda arn: arn.replace(":cluster/", ":nodegroup/", 1) + "/*/*"
        )
        pod_identity(
            f"{self._name}-cluster-autoscaler",
            cluster_name=cluster.name,
            namespace=CLUSTER_AUTOSCALER_NAMESPACE,
            service_account=CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
            statements=cluster_autoscaler_statements(self._name, nodegroups),
            tags=self._args.tags.aws("eks"),
            parent=self,
            depends_on=[self.pod_identity_agent],
        )

    def _launch_template(
        self,
        group: str,
        cluster: aws.eks.Cluster,
        efa_interfaces: int,
        spec: GpuNodeGroupSpec | None,
    ) -> aws.ec2.LaunchTemplate:
        tags = self._args.tags.aws("eks")
        cluster_sg = cluster.vpc_config.apply(lambda c: c.cluster_security_group_id or "")
        interfaces = [
            aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                device_index=0 if card == 0 else 1,
                network_card_index=card,
                interface_type="efa",
                delete_on_termination="true",
                security_groups=[cluster_sg],
            )
            for card in range(efa_interfaces)
        ]
        market, reservation = None, None
        if spec is not None and spec.capacity == "capacity-block":
            market = aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type="capacity-block")
        if spec is not None and spec.capacity != "on-demand":
            reservation = aws.ec2.LaunchTemplateCapacityReservationSpecificationArgs(
                capacity_reservation_target=aws.ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                    capacity_reservation_id=spec.capacity_reservation_id
                )
            )
        return aws.ec2.LaunchTemplate(
            f"{self._name}-{group}",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=2,
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=spec.disk_size_gib if spec else 100,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            network_interfaces=interfaces or None,
            instance_market_options=market,
            capacity_reservation_specification=reservation,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags=tags)
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )


def _first_autoscaling_group(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    """Name of the Auto Scaling group EKS created for a managed node group."""
    groups = resources[0].autoscaling_groups or [] if resources else []
    return (groups[0].name or "") if groups else ""


def kubeconfig_json(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with ``aws eks get-token`` (no static credentials)."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": cluster_name, "user": user}],
            "contexts": [
                {"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}
            ],
            "current-context": cluster_name,
        }
    )
