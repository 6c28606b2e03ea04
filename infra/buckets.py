"""Weight buckets: the blob origin of the weight cache (S3 on AWS, GCS on GCP).

S3: SSE-KMS with a bucket key, every public-access block on, ACLs disabled (bucket owner
enforced), a bucket policy denying any request not made over TLS, versioning, and a
lifecycle that expires noncurrent versions and aborts stale multipart uploads (weights are
uploaded in parts; an abandoned upload otherwise costs storage forever).
GCS: uniform bucket-level access, public access prevention ``enforced``, versioning and
the same noncurrent-version expiry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from infra.exceptions import InfraConfigError
from infra.tags import StandardTags


def _check_days(field: str, days: int) -> None:
    if not 1 <= days <= 3650:
        raise InfraConfigError(field, f"{days} not in 1..3650 days")


def tls_only_policy(bucket_arn: str) -> str:
    """Bucket policy denying every request that is not over TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


@dataclass(frozen=True)
class S3WeightBucketArgs:
    tags: StandardTags
    bucket_name: str | None = None  # None: Pulumi auto-names
    kms_key_arn: pulumi.Input[str] | None = None  # None: the component creates a key
    noncurrent_version_expiration_days: int = 30
    abort_incomplete_multipart_days: int = 7
    force_destroy: bool = False
    component: str = "weights"

    def __post_init__(self) -> None:
        _check_days("noncurrent_version_expiration_days", self.noncurrent_version_expiration_days)
        _check_days("abort_incomplete_multipart_days", self.abort_incomplete_multipart_days)


class S3WeightBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: S3WeightBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:buckets:S3WeightBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags.aws(args.component)
        key_arn = self._key_arn(name, args)
        bucket = aws.s3.Bucket(
            name, bucket=args.bucket_name, force_destroy=args.force_destroy, tags=tags, opts=child
        )
        public_block = self._private_and_encrypted(name, bucket, key_arn)
        versioning = aws.s3.BucketVersioning(
            name,
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        self._lifecycle(name, bucket, args, versioning)
        aws.s3.BucketPolicy(
            name,
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            # A policy put before the public-access block can race it; order them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = pulumi.Output.from_input(key_arn)
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

    def _key_arn(self, name: str, args: S3WeightBucketArgs) -> pulumi.Input[str]:
        if args.kms_key_arn is not None:
            return args.kms_key_arn
        key = aws.kms.Key(
            f"{name}-key",
            description=f"SSE-KMS for the {name} bucket",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=args.tags.aws(args.component),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key.arn

    def _private_and_encrypted(
        self, name: str, bucket: aws.s3.Bucket, key_arn: pulumi.Input[str]
    ) -> aws.s3.BucketPublicAccessBlock:
        """ACLs off, every public-access block on, SSE-KMS by default (with a bucket key)."""
        child = pulumi.ResourceOptions(parent=self)
        aws.s3.BucketOwnershipControls(
            name,
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=key_arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        return public_block

    def _lifecycle(
        self,
        name: str,
        bucket: aws.s3.Bucket,
        args: S3WeightBucketArgs,
        versioning: aws.s3.BucketVersioning,
    ) -> None:
        aws.s3.BucketLifecycleConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_version_expiration_days
                    ),
                ),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=args.abort_incomplete_multipart_days
                    ),
                ),
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )


@dataclass(frozen=True)
class GcsWeightBucketArgs:
    tags: StandardTags
    location: str
    bucket_name: str | None = None
    noncurrent_version_expiration_days: int = 30
    force_destroy: bool = False
    kms_key_name: pulumi.Input[str] | None = None  # None: Google-managed encryption

    def __post_init__(self) -> None:
        _check_days("noncurrent_version_expiration_days", self.noncurrent_version_expiration_days)
        if not self.location:
            raise InfraConfigError("location", "must not be empty")


class GcsWeightBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: GcsWeightBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:buckets:GcsWeightBucket", name, None, opts)
        bucket = gcp.storage.Bucket(
            name,
            name=args.bucket_name,
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            encryption=(
                gcp.storage.BucketEncryptionArgs(default_kms_key_name=args.kms_key_name)
                if args.kms_key_name is not None
                else None
            ),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        days_since_noncurrent_time=args.noncurrent_version_expiration_days,
                        with_state="ARCHIVED",
                    ),
                ),
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(
                        type="AbortIncompleteMultipartUpload"
                    ),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=7),
                ),
            ],
            force_destroy=args.force_destroy,
            labels=args.tags.gcp("weights"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.bucket_name = bucket.name
        self.bucket_url = bucket.url
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_url": self.bucket_url})
