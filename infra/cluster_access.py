"""Kubernetes access for the control plane's reconciler on a region's EKS cluster.

The reconciler (a Lambda in the control plane account) applies Deployments, Services,
Secrets and PodDisruptionBudgets and reads pods and their logs in the Plinth namespace.
An EKS access entry maps its IAM role into the cluster, and ``AmazonEKSEditPolicy`` scoped
to that namespace is exactly that much: nothing cluster-wide, no other namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tags import StandardTags

EDIT_POLICY_ARN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"


@dataclass(frozen=True)
class EksNamespaceEditorArgs:
    tags: StandardTags
    cluster_name: pulumi.Input[str]
    principal_arn: pulumi.Input[str]  # e.g. the control plane's reconciler role
    namespace: str = "plinth"


class EksNamespaceEditor(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: EksNamespaceEditorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:cluster_access:EksNamespaceEditor", name, None, opts)
        entry = aws.eks.AccessEntry(
            name,
            cluster_name=args.cluster_name,
            principal_arn=args.principal_arn,
            type="STANDARD",
            tags=args.tags.aws("eks"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.eks.AccessPolicyAssociation(
            name,
            cluster_name=args.cluster_name,
            principal_arn=args.principal_arn,
            policy_arn=EDIT_POLICY_ARN,
            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(
                type="namespace", namespaces=[args.namespace]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )
        self.register_outputs({})
