"""What each serverless control-plane function may do: one IAM statement list per role.

Least privilege per function: only its tables, queues, bucket prefix, KMS key and clusters.
``tests/stacks/test_stacks_iam_sufficiency.py`` checks these allow what the code calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pulumi
import pulumi_aws as aws

from infra.iam import Statement


class GrantedResources(Protocol):
    """What of ``ServerlessControlPlaneArgs`` the grants name (a Protocol: no import cycle)."""

    @property
    def blob_bucket_arn(self) -> pulumi.Input[str]: ...

    @property
    def blob_kms_key_arn(self) -> pulumi.Input[str] | None: ...

    @property
    def cluster_arns(self) -> Sequence[pulumi.Input[str]]: ...


DYNAMODB_ITEM_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:ConditionCheckItem",
    "dynamodb:BatchGetItem",
)
SQS_CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
S3_READ_ACTIONS = ("s3:GetObject",)
S3_WRITE_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
# The encryption context control_plane.adapters.aws_kms_kek binds into every secret's data
# key; the grants below hold only for data keys made with it.
SECRETS_ENCRYPTION_CONTEXT = {"plinth": "secret"}
SECRETS_KMS_CONDITION = {
    "StringEquals": {f"kms:EncryptionContext:{k}": v for k, v in SECRETS_ENCRYPTION_CONTEXT.items()}
}
# The reconciler keeps a failed deployment's last replica logs in its build log
# (control_plane.domain.build_log: ``logs/<deployment_id>/build.log``); it writes nothing else.
RECONCILER_LOG_PREFIX = "logs/"
# Where presigned archive uploads are staged (control_plane.domain.archive_uploads).
ARCHIVE_UPLOADS_PREFIX = "uploads/"


def function_statements(
    args: GrantedResources,
    tables: list[pulumi.Output[str]],
    queues: list[aws.sqs.Queue],
    extra_queues: list[aws.sqs.Queue],
    secrets_key: aws.kms.Key,
    internal_token_arn: pulumi.Output[str],
) -> dict[str, list[Statement]]:
    """Least privilege per function: only its tables, queues, bucket and clusters."""
    async_arns = [q.arn for q in queues]
    send_to = [*async_arns, *(q.arn for q in extra_queues)]
    clusters = list(args.cluster_arns)
    return {
        "api": [
            Statement(DYNAMODB_ITEM_ACTIONS, tables),
            Statement(("sqs:SendMessage", "sqs:GetQueueUrl"), send_to),
            *_blob_statements(args, S3_WRITE_ACTIONS),
            # The gateways' internal token, read once per sandbox.
            Statement(
                ("secretsmanager:GetSecretValue",), [internal_token_arn], sid="ReadInternalToken"
            ),
            # Direct archive uploads: a plan whose parts never complete is aborted.
            Statement(
                ("s3:AbortMultipartUpload",),
                [
                    pulumi.Output.from_input(args.blob_bucket_arn).apply(
                        lambda arn: f"{arn}/{ARCHIVE_UPLOADS_PREFIX}*"
                    )
                ],
                sid="AbortArchiveUploads",
            ),
            # The API only seals secrets (POST /v1/secrets); it never reads a value back.
            Statement(
                ("kms:GenerateDataKey",),
                [secrets_key.arn],
                sid="SealSecrets",
                condition=SECRETS_KMS_CONDITION,
            ),
        ],
        "worker": [
            Statement(DYNAMODB_ITEM_ACTIONS, tables),
            # Send: a request that met a full replica goes back with a fresh message.
            Statement((*SQS_CONSUME_ACTIONS, "sqs:SendMessage", "sqs:GetQueueUrl"), async_arns),
            *_blob_statements(args, S3_READ_ACTIONS),
        ],
        "reconciler": [
            Statement(DYNAMODB_ITEM_ACTIONS, tables),
            *_blob_statements(args, S3_READ_ACTIONS),
            Statement(
                ("s3:PutObject",),
                [
                    pulumi.Output.from_input(args.blob_bucket_arn).apply(
                        lambda arn: f"{arn}/{RECONCILER_LOG_PREFIX}*"
                    )
                ],
                sid="WriteBuildLogs",
            ),
            *([Statement(("eks:DescribeCluster",), clusters)] if clusters else []),
            # Replicas get their secrets' values from the reconciler.
            Statement(
                ("kms:Decrypt",),
                [secrets_key.arn],
                sid="OpenSecrets",
                condition=SECRETS_KMS_CONDITION,
            ),
        ],
    }


def _blob_statements(args: GrantedResources, actions: Sequence[str]) -> list[Statement]:
    bucket = args.blob_bucket_arn
    statements = [
        Statement(actions, [pulumi.Output.from_input(bucket).apply(lambda arn: f"{arn}/*")]),
        Statement(("s3:ListBucket",), [bucket]),
    ]
    if args.blob_kms_key_arn is not None:
        statements.append(
            Statement(("kms:Decrypt", "kms:GenerateDataKey"), [args.blob_kms_key_arn])
        )
    return statements
