"""Cross-account access for a self-hosted (customer) cluster.

The customer runs this in their account. It creates the role the Plinth control plane
assumes: the trust policy names the control plane's role and requires the agreed
``sts:ExternalId`` (the confused-deputy guard), a permissions boundary caps whatever is
ever attached to it, and the inline policy reaches only the customer's cluster (and its
node groups) and weight bucket. An EKS access entry maps the role into Kubernetes,
limited to the Plinth namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.exceptions import InfraConfigError
from infra.iam import Statement, policy_json
from infra.tags import StandardTags

EKS_ACTIONS = (
    "eks:DescribeCluster",
    "eks:ListNodegroups",
    "eks:DescribeNodegroup",
    "eks:UpdateNodegroupConfig",
)
BUCKET_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
BUCKET_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
MIN_EXTERNAL_ID_LENGTH = 16


def nodegroup_arn_pattern(cluster_arn: str) -> str:
    """ARN pattern of every node group of a cluster (``...:nodegroup/<cluster>/*/*``)."""
    prefix, _, cluster_name = cluster_arn.rpartition(":cluster/")
    if not prefix:
        raise InfraConfigError("cluster_arn", f"{cluster_arn!r} is not an EKS cluster ARN")
    return f"{prefix}:nodegroup/{cluster_name}/*/*"


@dataclass(frozen=True)
class SelfHostedAccessArgs:
    tags: StandardTags
    control_plane_role_arn: pulumi.Input[str]
    external_id: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    # The bucket's SSE-KMS key: reading or writing an object needs Decrypt/GenerateDataKey.
    bucket_kms_key_arn: pulumi.Input[str]
    namespace: str = "plinth"
    max_session_duration_s: int = 3600

    def __post_init__(self) -> None:
        if isinstance(self.cluster_arn, str):
            nodegroup_arn_pattern(self.cluster_arn)  # validates the ARN shape early
        if isinstance(self.external_id, str) and len(self.external_id) < MIN_EXTERNAL_ID_LENGTH:
            raise InfraConfigError(
                "external_id", f"must be at least {MIN_EXTERNAL_ID_LENGTH} characters"
            )
        if not 900 <= self.max_session_duration_s <= 43200:
            raise InfraConfigError("max_session_duration_s", "must be in 900..43200")


def trust_policy(principal_arn: str, external_id: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": principal_arn},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
                }
            ],
        }
    )


class SelfHostedAccess(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    boundary_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: SelfHostedAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:self_hosted:SelfHostedAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags.aws("self-hosted")
        bucket_objects = pulumi.Output.from_input(args.bucket_arn).apply(lambda arn: f"{arn}/*")
        scoped = [
            Statement(
                EKS_ACTIONS,
                [
                    args.cluster_arn,
                    pulumi.Output.from_input(args.cluster_arn).apply(nodegroup_arn_pattern),
                ],
            ),
            Statement(BUCKET_OBJECT_ACTIONS, [bucket_objects]),
            Statement(("s3:ListBucket",), [args.bucket_arn]),
            Statement(BUCKET_KMS_ACTIONS, [args.bucket_kms_key_arn]),
        ]
        boundary = aws.iam.Policy(
            f"{name}-boundary",
            description="Upper bound of what the Plinth control plane may ever do here",
            policy=policy_json(scoped),
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=pulumi.Output.all(
                pulumi.Output.from_input(args.control_plane_role_arn),
                pulumi.Output.from_input(args.external_id),
            ).apply(lambda v: trust_policy(v[0], v[1])),
            permissions_boundary=boundary.arn,
            max_session_duration=args.max_session_duration_s,
            description="Assumed by the Plinth control plane (external id required)",
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(f"{name}-access", role=role.id, policy=policy_json(scoped), opts=child)
        entry = aws.eks.AccessEntry(
            f"{name}-access",
            cluster_name=args.cluster_name,
            principal_arn=role.arn,
            type="STANDARD",
            tags=tags,
            opts=child,
        )
        aws.eks.AccessPolicyAssociation(
            f"{name}-edit",
            cluster_name=args.cluster_name,
            principal_arn=role.arn,
            policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy",
            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(
                type="namespace", namespaces=[args.namespace]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )
        self.role_arn = role.arn
        self.boundary_arn = boundary.arn
        self.register_outputs({"role_arn": self.role_arn, "boundary_arn": self.boundary_arn})
