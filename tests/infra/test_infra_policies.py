"""Each policy rule catches a bad resource (and stays quiet on a good one)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import policies
from infra.exceptions import PolicyViolationError
from infra.offline import RecordedResource
from infra.tags import StandardTags

TAGS = StandardTags("plinth", "test", "us-east-1").aws("test")


def res(type_: str, name: str, inputs: dict[str, Any], **outputs: Any) -> RecordedResource:
    return RecordedResource(type_, name, inputs, f"{name}-id", {**inputs, **outputs})


def _bucket_set(
    sse: str = "aws:kms", block: bool = True, acl: str | None = None, policy: dict | None = None
):
    bucket = res(
        "aws:s3/bucket:Bucket", "b", {"tags": TAGS, **({"acl": acl} if acl else {})}, bucket="b"
    )
    out = [
        bucket,
        res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "b",
            {
                "bucket": "b-id",
                "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse}}],
            },
        ),
        res(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "b",
            {
                "bucket": "b-id",
                "blockPublicAcls": True,
                "blockPublicPolicy": block,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
        ),
    ]
    if policy is not None:
        out.append(
            res(
                "aws:s3/bucketPolicy:BucketPolicy",
                "b",
                {"bucket": "b-id", "policy": json.dumps(policy)},
            )
        )
    return out


def _rules(violations) -> set[str]:
    return {v.rule for v in violations}


def test_good_bucket_passes() -> None:
    assert policies.check(_bucket_set()) == []


@pytest.mark.parametrize(
    ("resources", "rule", "needle"),
    [
        (_bucket_set(sse="AES256"), "encryption", "SSE-KMS"),
        (
            [
                res(
                    "aws:dynamodb/table:Table",
                    "t",
                    {"tags": TAGS, "serverSideEncryption": {"enabled": False}},
                )
            ],
            "encryption",
            "serverSideEncryption",
        ),
        (
            [
                res(
                    "aws:eks/cluster:Cluster",
                    "c",
                    {"tags": TAGS, "encryptionConfig": {"resources": []}},
                )
            ],
            "encryption",
            "envelope",
        ),
        ([res("aws:sqs/queue:Queue", "q", {"tags": TAGS})], "encryption", "sqsManagedSseEnabled"),
        (
            [
                res(
                    "aws:ec2/launchTemplate:LaunchTemplate",
                    "lt",
                    {
                        "tags": TAGS,
                        "metadataOptions": {"httpTokens": "required"},
                        "blockDeviceMappings": [
                            {"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}
                        ],
                    },
                )
            ],
            "encryption",
            "unencrypted",
        ),
        (_bucket_set(block=False), "no-public-buckets", "public access block"),
        (_bucket_set(acl="public-read"), "no-public-buckets", "public ACL"),
        (
            _bucket_set(
                policy={
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/*",
                        }
                    ]
                }
            ),
            "no-public-buckets",
            "allows anyone",
        ),
        (
            [
                res(
                    "gcp:storage/bucket:Bucket",
                    "g",
                    {
                        "labels": StandardTags("plinth", "t", "r").gcp("x"),
                        "uniformBucketLevelAccess": True,
                        "publicAccessPrevention": "inherited",
                    },
                )
            ],
            "no-public-buckets",
            "enforced",
        ),
        (
            [
                res(
                    "gcp:storage/bucketIAMMember:BucketIAMMember",
                    "m",
                    {"bucket": "g", "role": "roles/storage.objectViewer", "member": "allUsers"},
                )
            ],
            "no-public-buckets",
            "allUsers",
        ),
        (
            [
                res(
                    "aws:ec2/launchTemplate:LaunchTemplate",
                    "lt",
                    {"tags": TAGS, "metadataOptions": {"httpTokens": "optional"}},
                )
            ],
            "imdsv2",
            "optional",
        ),
        ([res("aws:ec2/launchTemplate:LaunchTemplate", "lt", {"tags": TAGS})], "imdsv2", "None"),
        (
            [
                res(
                    "aws:eks/nodeGroup:NodeGroup",
                    "ng",
                    {
                        "tags": TAGS,
                        "amiType": "AL2023_x86_64_NVIDIA",
                        "instanceTypes": ["p5.48xlarge"],
                    },
                )
            ],
            "gpu-taint",
            "taint",
        ),
        (
            [
                res(
                    "aws:eks/nodeGroup:NodeGroup",
                    "ng",
                    {
                        "tags": TAGS,
                        "instanceTypes": ["p5e.48xlarge"],
                        "taints": [{"key": "nvidia.com/gpu", "effect": "NO_EXECUTE"}],
                    },
                )
            ],
            "gpu-taint",
            "taint",
        ),
        (
            [
                res(
                    "gcp:container/nodePool:NodePool",
                    "np",
                    {
                        "nodeConfig": {
                            "guestAccelerators": [{"type": "nvidia-h100-80gb", "count": 8}]
                        }
                    },
                )
            ],
            "gpu-taint",
            "taint",
        ),
        (
            [res("aws:ec2/vpc:Vpc", "v", {"tags": {"project": "plinth"}})],
            "standard-tags",
            "stack, region, component, managed-by",
        ),
        ([res("aws:lambda/function:Function", "f", {})], "standard-tags", "tags missing"),
        (
            [res("gcp:container/cluster:Cluster", "c", {"resourceLabels": {"project": "plinth"}})],
            "standard-tags",
            "resourceLabels",
        ),
        (
            [
                res(
                    "aws:iam/rolePolicy:RolePolicy",
                    "p",
                    {
                        "policy": json.dumps(
                            {
                                "Statement": [
                                    {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}
                                ]
                            }
                        )
                    },
                )
            ],
            "iam-least-privilege",
            "wildcard",
        ),
        (
            [
                res(
                    "aws:iam/policy:Policy",
                    "p",
                    {
                        "tags": TAGS,
                        "policy": json.dumps(
                            {"Statement": [{"Effect": "Allow", "Action": ["*:*"], "Resource": "*"}]}
                        ),
                    },
                )
            ],
            "iam-least-privilege",
            "wildcard",
        ),
        (
            [
                res(
                    "aws:iam/rolePolicy:RolePolicy",
                    "p",
                    {
                        "policy": json.dumps(
                            {
                                "Statement": {
                                    "Effect": "Allow",
                                    "Action": "s3:GetObject",
                                    "Resource": "*",
                                }
                            }
                        )
                    },
                )
            ],
            "iam-least-privilege",
            "Resource '*'",
        ),
        (
            [
                res(
                    "aws:iam/role:Role",
                    "r",
                    {
                        "tags": TAGS,
                        "inlinePolicies": [
                            {
                                "name": "x",
                                "policy": json.dumps(
                                    {
                                        "Statement": [
                                            {"Effect": "Allow", "Action": "*", "Resource": "*"}
                                        ]
                                    }
                                ),
                            }
                        ],
                    },
                )
            ],
            "iam-least-privilege",
            "wildcard",
        ),
        (
            [
                res(
                    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "a",
                    {"role": "r", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
                )
            ],
            "iam-least-privilege",
            "AdministratorAccess",
        ),
    ],
)
def test_rule_catches_bad_resource(resources, rule, needle) -> None:
    violations = policies.check(resources)
    assert rule in _rules(violations), violations
    assert any(needle in str(v) for v in violations if v.rule == rule), violations


def test_star_resource_allowed_for_actions_without_resource_level_permissions() -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}
    assert (
        policies.check([res("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps(doc)})])
        == []
    )


def test_deny_statements_and_untaggable_types_are_fine() -> None:
    deny = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    resources = [
        res("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps(deny)}),
        res("aws:ec2/route:Route", "r", {}),  # Route takes no tags
        res("aws:scheduler/schedule:Schedule", "s", {}),
    ]
    assert policies.check(resources) == []


def test_enforce_raises_with_every_violation() -> None:
    with pytest.raises(PolicyViolationError) as excinfo:
        policies.enforce([res("aws:sqs/queue:Queue", "q", {})])
    assert len(excinfo.value.violations) == 2  # unencrypted and untagged
    assert "aws:sqs/queue:Queue 'q'" in str(excinfo.value)
