"""EKS Pod Identity: an IAM role for one Kubernetes service account, nothing more.

A role trusted by ``pods.eks.amazonaws.com`` (the Pod Identity agent, an EKS add-on
``EksCluster`` installs) and an ``aws.eks.PodIdentityAssociation`` binding it to
``namespace/service_account``. Pods of that service account get the role's credentials
from the agent; no node role, OIDC provider or long-lived key is involved. Each component
(cluster autoscaler, node agents, replicas) gets its own role with only its statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import Statement, policy_json

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
POD_IDENTITY_AGENT_ADDON = "eks-pod-identity-agent"


def pod_identity_trust_policy() -> str:
    """Trust policy of a Pod Identity role (the agent also tags the session)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": POD_IDENTITY_SERVICE},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
    )


@dataclass(frozen=True)
class PodIdentity:
    role: aws.iam.Role
    association: aws.eks.PodIdentityAssociation


def pod_identity(
    name: str,
    *,
    cluster_name: pulumi.Input[str],
    namespace: str,
    service_account: str,
    statements: Sequence[Statement],
    tags: dict[str, str],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> PodIdentity:
    """Role ``name`` with ``statements``, bound to ``namespace/service_account``."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        name,
        assume_role_policy=pod_identity_trust_policy(),
        description=f"Pod Identity of {namespace}/{service_account}",
        tags=tags,
        opts=child,
    )
    aws.iam.RolePolicy(name, role=role.id, policy=policy_json(statements), opts=child)
    association = aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.arn,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
    return PodIdentity(role, association)
