"""Weight buckets under Pulumi mocks: S3 (SSE-KMS, no public access, TLS only) and GCS."""

from __future__ import annotations

import json

import pytest

from infra.buckets import GcsWeightBucket, GcsWeightBucketArgs, S3WeightBucket, S3WeightBucketArgs
from infra.exceptions import InfraConfigError
from infra.policies import check


def test_s3_bucket_is_encrypted_private_versioned_and_tls_only(run, tags) -> None:
    result = run(
        lambda: {"arn": S3WeightBucket("weights", S3WeightBucketArgs(tags=tags)).bucket_arn}
    )
    bucket = result.one("aws:s3/bucket:Bucket", "weights")
    (key,) = result.of_type("aws:kms/key:Key")
    (sse,) = result.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    rule = sse.inputs["rules"][0]
    assert sse.inputs["bucket"] == bucket.id
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key.outputs["arn"],
    }
    assert rule["bucketKeyEnabled"] is True
    (block,) = result.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[f] is True
        for f in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        )
    )
    (versioning,) = result.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    (policy,) = result.of_type("aws:s3/bucketPolicy:BucketPolicy")
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [bucket.outputs["arn"], bucket.outputs["arn"] + "/*"]
    assert check(result.resources) == []


def test_s3_lifecycle_expires_noncurrent_and_aborts_multipart(run, tags) -> None:
    args = S3WeightBucketArgs(
        tags=tags, noncurrent_version_expiration_days=10, abort_incomplete_multipart_days=2
    )
    result = run(lambda: {"arn": S3WeightBucket("weights", args).bucket_arn})
    (lifecycle,) = result.of_type(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    )
    rules = {r["id"]: r for r in lifecycle.inputs["rules"]}
    assert (
        rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 10
    )
    assert (
        rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"][
            "daysAfterInitiation"
        ]
        == 2
    )
    assert all(r["status"] == "Enabled" for r in rules.values())


def test_s3_bucket_with_an_existing_key_creates_none(run, tags) -> None:
    args = S3WeightBucketArgs(tags=tags, kms_key_arn="arn:aws:kms:us-east-1:1:key/k")
    result = run(lambda: {"arn": S3WeightBucket("weights", args).bucket_arn})
    assert result.of_type("aws:kms/key:Key") == []


def test_gcs_bucket_uniform_access_and_public_access_prevention(run, tags) -> None:
    result = run(
        lambda: {
            "url": GcsWeightBucket(
                "weights", GcsWeightBucketArgs(tags=tags, location="EU")
            ).bucket_url
        }
    )
    bucket = result.one("gcp:storage/bucket:Bucket", "weights").inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["labels"]["managed-by"] == "pulumi"
    assert check(result.resources) == []


def test_bad_lifecycle_days(tags) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        S3WeightBucketArgs(tags=tags, abort_incomplete_multipart_days=0)
    assert excinfo.value.field == "abort_incomplete_multipart_days"
