"""Read access to a region's weight bucket for the pods that fetch weights.

Node agents (the node tier of the weight cache) and replicas read chunks and manifests
straight from the regional bucket with their own pod identity, never through the control
plane. Each gets exactly: objects under ``weights/`` (the prefix ``gpu_nodes.weights``
writes), listing under that prefix (so a missing chunk is a 404, not a 403), and, on AWS,
decryption with the bucket's SSE-KMS key. Nothing else in the bucket, and no writes.

- EKS: one EKS Pod Identity role per service account (``infra.pod_identity``).
- GKE: Workload Identity Federation: the Kubernetes service account itself is the IAM
  principal (``principal://.../subject/ns/<ns>/sa/<sa>``), granted ``objectViewer`` on the
  bucket under an IAM condition on the object prefix. No Google service account, no key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.iam import Statement
from infra.pod_identity import pod_identity
from infra.tags import StandardTags

WEIGHTS_PREFIX = "weights/"
WEIGHTS_CACHE_SERVICE_ACCOUNT = "plinth-weights-cache"
REPLICA_SERVICE_ACCOUNT = "plinth-replica"
WEIGHT_READERS = (WEIGHTS_CACHE_SERVICE_ACCOUNT, REPLICA_SERVICE_ACCOUNT)
GCS_READ_ROLE = "roles/storage.objectViewer"


def weight_reader_statements(
    bucket_arn: pulumi.Input[str], kms_key_arn: pulumi.Input[str]
) -> list[Statement]:
    objects = pulumi.Output.from_input(bucket_arn).apply(lambda arn: f"{arn}/{WEIGHTS_PREFIX}*")
    return [
        Statement(("s3:GetObject",), [objects], sid="ReadWeights"),
        Statement(
            ("s3:ListBucket",),
            [bucket_arn],
            sid="ListWeights",
            condition={"StringLike": {"s3:prefix": [f"{WEIGHTS_PREFIX}*"]}},
        ),
        Statement(("kms:Decrypt",), [kms_key_arn], sid="DecryptWeights"),
    ]


@dataclass(frozen=True)
class EksWeightReadersArgs:
    tags: StandardTags
    cluster_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    pod_identity_agent: pulumi.Resource  # the add-on must run before associations work
    namespace: str = "plinth"
    service_accounts: Sequence[str] = WEIGHT_READERS


class EksWeightReaders(pulumi.ComponentResource):
    role_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: EksWeightReadersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:weight_access:EksWeightReaders", name, None, opts)
        self.role_arns = {}
        for account in args.service_accounts:
            identity = pod_identity(
                f"{name}-{account.removeprefix('plinth-')}",
                cluster_name=args.cluster_name,
                namespace=args.namespace,
                service_account=account,
                statements=weight_reader_statements(args.bucket_arn, args.kms_key_arn),
                tags=args.tags.aws("weights"),
                parent=self,
                depends_on=[args.pod_identity_agent],
            )
            self.role_arns[account] = identity.role.arn
        self.register_outputs({"role_arns": self.role_arns})


def workload_identity_principal(
    project_number: str, workload_pool: str, namespace: str, service_account: str
) -> str:
    """The IAM principal of a GKE service account under Workload Identity Federation."""
    return (
        f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{workload_pool}/subject/ns/{namespace}/sa/{service_account}"
    )


def weights_prefix_condition(bucket_name: str) -> str:
    return f'resource.name.startsWith("projects/_/buckets/{bucket_name}/objects/{WEIGHTS_PREFIX}")'


@dataclass(frozen=True)
class GkeWeightReadersArgs:
    project: str
    workload_pool: str
    bucket_name: pulumi.Input[str]
    namespace: str = "plinth"
    service_accounts: Sequence[str] = WEIGHT_READERS


def _principal_of(args: GkeWeightReadersArgs, account: str) -> Callable[[str], str]:
    def principal(project_number: str) -> str:
        return workload_identity_principal(
            project_number, args.workload_pool, args.namespace, account
        )

    return principal


class GkeWeightReaders(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: GkeWeightReadersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:weight_access:GkeWeightReaders", name, None, opts)
        number = gcp.organizations.get_project_output(project_id=args.project).number
        for account in args.service_accounts:
            member = number.apply(_principal_of(args, account))
            gcp.storage.BucketIAMMember(
                f"{name}-{account.removeprefix('plinth-')}",
                bucket=args.bucket_name,
                role=GCS_READ_ROLE,
                member=member,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="weights-prefix-only",
                    expression=pulumi.Output.from_input(args.bucket_name).apply(
                        weights_prefix_condition
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
