"""``stacks/aws-control-plane``: the serverless control plane and its blob bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pydantic import Field

from infra.buckets import S3WeightBucket, S3WeightBucketArgs
from infra.control_plane import ServerlessControlPlane, ServerlessControlPlaneArgs
from infra.programs.common import export_all, standard_tags
from infra.programs.config import StackConfig, aws_region


class AwsControlPlaneConfig(StackConfig):
    region: str = Field(description="From aws:region")
    name: str = "plinth"
    code_root: str = Field(
        default="../..", description="Repository root, relative to the stack directory"
    )
    layer_arns: list[str] = Field(default_factory=list)
    worker_timeout_s: int = 120
    queue_visibility_timeout_s: int | None = None
    max_receive_count: int = 15
    gateway_url: str | None = Field(
        default=None, description="A gateway's public URL: where the async worker calls models"
    )
    reconcile_schedule: str = "rate(1 minute)"
    log_retention_days: int = 30
    blob_bucket_name: str | None = None
    cluster_arns: list[str] = Field(default_factory=list)
    cluster_name: str | None = Field(
        default=None, description="EKS cluster the reconciler drives (its tokens name it)"
    )
    cluster_endpoint: str | None = Field(default=None, description="That cluster's API URL")
    cluster_ca_data: str | None = Field(
        default=None, description="That cluster's CA, base64 PEM (certificateAuthority.data)"
    )


def build(
    config: AwsControlPlaneConfig,
    *,
    stack_dir: Path | None = None,
    async_api_key: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """``stack_dir`` anchors a relative ``codeRoot`` (default: the working directory);
    ``async_api_key`` (a secret) goes to Secrets Manager for the async worker."""
    tags = standard_tags(config.region)
    code_root = ((stack_dir or Path.cwd()) / config.code_root).resolve()
    blobs = S3WeightBucket(
        f"{config.name}-blobs",
        S3WeightBucketArgs(
            tags=tags, bucket_name=config.blob_bucket_name, component="control-plane"
        ),
    )
    plane = ServerlessControlPlane(
        config.name,
        ServerlessControlPlaneArgs(
            tags=tags,
            code_root=str(code_root),
            blob_bucket_arn=blobs.bucket_arn,
            blob_bucket_name=blobs.bucket_name,
            blob_kms_key_arn=blobs.kms_key_arn,
            layer_arns=tuple(config.layer_arns),
            worker_timeout_s=config.worker_timeout_s,
            queue_visibility_timeout_s=config.queue_visibility_timeout_s,
            max_receive_count=config.max_receive_count,
            reconcile_schedule=config.reconcile_schedule,
            log_retention_days=config.log_retention_days,
            cluster_arns=tuple(config.cluster_arns),
            cluster_name=config.cluster_name,
            cluster_endpoint=config.cluster_endpoint,
            cluster_ca_data=config.cluster_ca_data,
            gateway_url=config.gateway_url,
            async_api_key=async_api_key,
        ),
    )
    return {
        "apiUrl": plane.api_url,
        "metadataTableName": plane.metadata_table_name,
        "metadataTableArn": plane.metadata_table_arn,
        "asyncQueueUrls": {f"p{p}": url for p, url in plane.queue_urls.items()},
        "asyncDlqUrls": {f"p{p}": url for p, url in plane.dlq_urls.items()},
        "asyncApiKeySecretArn": plane.async_api_key_secret_arn,
        "reconcilerRoleArn": plane.reconciler_role_arn,
        "secretsKmsKeyArn": plane.secrets_kms_key_arn,
        "internalTokenSecretArn": plane.internal_token_secret_arn,
        "blobBucketName": blobs.bucket_name,
        "blobBucketArn": blobs.bucket_arn,
        # Region stacks let their weights caches read the bucket's weights/ with this key.
        "blobKmsKeyArn": blobs.kms_key_arn,
    }


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs). The async worker's API key
    is read apart from the model, as a secret (`pulumi config set --secret asyncApiKey`)."""
    return build(
        AwsControlPlaneConfig.from_pulumi(region=aws_region()),
        stack_dir=stack_dir,
        async_api_key=pulumi.Config().get_secret("asyncApiKey"),
    )


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
