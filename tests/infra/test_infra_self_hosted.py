"""SelfHostedAccess under Pulumi mocks: external id, permissions boundary, scoped policies."""

from __future__ import annotations

import json

import pytest

from infra.exceptions import InfraConfigError
from infra.policies import check
from infra.self_hosted import SelfHostedAccess, SelfHostedAccessArgs, nodegroup_arn_pattern

CLUSTER_ARN = "arn:aws:eks:us-east-2:444455556666:cluster/acme"
BUCKET_ARN = "arn:aws:s3:::acme-weights"
BUCKET_KEY_ARN = "arn:aws:kms:us-east-2:444455556666:key/acme-weights"
CONTROL_PLANE_ROLE = "arn:aws:iam::111122223333:role/plinth-reconciler"
EXTERNAL_ID = "acme-0123456789abcdef"


def _args(tags, **overrides) -> SelfHostedAccessArgs:
    kwargs = {
        "tags": tags,
        "control_plane_role_arn": CONTROL_PLANE_ROLE,
        "external_id": EXTERNAL_ID,
        "cluster_arn": CLUSTER_ARN,
        "cluster_name": "acme",
        "bucket_arn": BUCKET_ARN,
        "bucket_kms_key_arn": BUCKET_KEY_ARN,
    }
    return SelfHostedAccessArgs(**{**kwargs, **overrides})


def test_trust_requires_external_id_and_boundary_caps_the_role(run, tags) -> None:
    result = run(lambda: {"role": SelfHostedAccess("acme", _args(tags)).role_arn})
    role = result.one("aws:iam/role:Role", "acme-role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"AWS": CONTROL_PLANE_ROLE}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}
    boundary = result.one("aws:iam/policy:Policy", "acme-boundary")
    assert role.inputs["permissionsBoundary"] == boundary.outputs["arn"]


def test_policies_reach_only_the_cluster_and_bucket(run, tags) -> None:
    result = run(lambda: {"role": SelfHostedAccess("acme", _args(tags)).role_arn})
    allowed = {
        CLUSTER_ARN,
        nodegroup_arn_pattern(CLUSTER_ARN),
        BUCKET_ARN,
        BUCKET_ARN + "/*",
        BUCKET_KEY_ARN,
    }
    for resource in (
        result.one("aws:iam/policy:Policy", "acme-boundary"),
        result.one("aws:iam/rolePolicy:RolePolicy", "acme-access"),
    ):
        for statement in json.loads(resource.inputs["policy"])["Statement"]:
            assert set(statement["Resource"]) <= allowed
            assert not any(a.endswith("*") for a in statement["Action"])
    association = result.one(
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "acme-edit"
    ).inputs
    assert association["accessScope"] == {"type": "namespace", "namespaces": ["plinth"]}
    assert check(result.resources) == []


def test_nodegroup_pattern() -> None:
    assert (
        nodegroup_arn_pattern(CLUSTER_ARN)
        == "arn:aws:eks:us-east-2:444455556666:nodegroup/acme/*/*"
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"external_id": "short"}, "external_id"),
        ({"cluster_arn": "arn:aws:s3:::nope"}, "cluster_arn"),
    ],
)
def test_bad_args(tags, overrides, field) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        _args(tags, **overrides)
    assert excinfo.value.field == field
