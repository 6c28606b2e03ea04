"""IAM sufficiency: the policies the stacks render allow what the code calls, and no more.

The rule checks in ``infra.policies`` only reject bad grants; these tests show the grants
are enough. Policies come from the stack programs run under mocks and are evaluated by
moto's IAM policy engine for the exact (action, resource) the code issues; the
reconciler's build-log write also goes through a moto server with IAM enforcement on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from control_plane.adapters.k8s_manifests import KubernetesOptions
from control_plane.settings import Settings
from infra.offline import OfflineRun
from infra.preflight import StackTree
from infra.weight_access import REPLICA_SERVICE_ACCOUNT, WEIGHTS_CACHE_SERVICE_ACCOUNT
from plinth.contracts.weights_manifest import CHUNK_PREFIX, MANIFEST_PREFIX
from tests.support.servers import free_port

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
CHUNK = f"{CHUNK_PREFIX}{'ab' * 32}"


@pytest.fixture(scope="module")
def runs() -> dict[str, OfflineRun]:
    tree = StackTree(STACKS_DIR)
    return {
        "control-plane": tree.run("aws-control-plane", "prod-us-east-1"),
        "aws-region": tree.run("aws-region", "prod-us-east-1"),
        "self-hosted": tree.run("self-hosted", "acme-us-east-2"),
        "gcp-region": tree.run("gcp-region", "prod-us-central1"),
    }


def _document(run: OfflineRun, type_token: str, name: str) -> str:
    policy: str = run.one(type_token, name).inputs["policy"]
    return policy


def allowed(
    documents: list[str], action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """Whether every document (identity policy, boundary, ...) allows the request."""
    results = [
        IAMPolicy(doc).is_action_permitted(action, resource, incoming_condition_values=context)
        for doc in documents
    ]
    return all(r == PermissionResult.PERMITTED for r in results)


def _bucket(run: OfflineRun, name: str) -> tuple[str, str]:
    """(bucket ARN, its SSE-KMS key ARN) of an S3WeightBucket component."""
    bucket = run.one("aws:s3/bucket:Bucket", name).outputs["arn"]
    key = run.one("aws:kms/key:Key", f"{name}-key").outputs["arn"]
    return bucket, key


# -- reconciler -----------------------------------------------------------------------------


def test_reconciler_may_write_build_logs_and_nothing_else(runs) -> None:
    run = runs["control-plane"]
    policy = [_document(run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-reconciler")]
    bucket, key = _bucket(run, "plinth-prod-blobs")
    assert allowed(policy, "s3:PutObject", f"{bucket}/logs/dep_1/build.log")
    assert allowed(policy, "s3:GetObject", f"{bucket}/logs/dep_1/build.log")
    assert allowed(policy, "kms:GenerateDataKey", key)  # SSE-KMS puts need a data key
    assert not allowed(policy, "s3:PutObject", f"{bucket}/archives/dep_1.tar.gz")
    assert not allowed(policy, "s3:DeleteObject", f"{bucket}/logs/dep_1/build.log")


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A moto server of our own (IAM enforcement is server-wide, so not the shared one)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MOTO_CALL_RESET_API": "false"},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def _client(endpoint: str, service: str, key_id: str = "testing", secret: str = "testing") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _user_with(endpoint: str, name: str, policy: str) -> tuple[str, str]:
    iam = _client(endpoint, "iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="rendered", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _without_statement(policy: str, sid: str) -> str:
    document = json.loads(policy)
    kept = [s for s in document["Statement"] if s.get("Sid") != sid]
    assert len(kept) == len(document["Statement"]) - 1, sid
    return json.dumps({**document, "Statement": kept})


@pytest.mark.integration
def test_reconciler_failure_log_under_iam_enforcement(runs, moto_server) -> None:
    from botocore.exceptions import ClientError

    from control_plane.adapters.s3_blob import S3BlobStore
    from control_plane.domain.build_log import BuildLogWriter, read_build_log

    run = runs["control-plane"]
    policy = _document(run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-reconciler")
    bucket = run.one("aws:s3/bucket:Bucket", "plinth-prod-blobs").outputs["bucket"]
    _client(moto_server, "s3").create_bucket(Bucket=bucket)
    full = _user_with(moto_server, "reconciler", policy)
    trimmed = _user_with(
        moto_server, "reconciler-trimmed", _without_statement(policy, "WriteBuildLogs")
    )
    # From here on every request is signed and checked against the user's policies.
    httpx.post(f"{moto_server}/moto-api/reset-auth", content=b"0").raise_for_status()

    blobs = S3BlobStore(bucket, client=_client(moto_server, "s3", *full))
    writer = BuildLogWriter(blobs, "dep_1")
    writer("FAILED: replica crashed")
    writer.close()
    assert read_build_log(blobs, "dep_1") == ["FAILED: replica crashed"]
    with pytest.raises(ClientError, match="AccessDenied"):
        blobs.put_bytes("archives/dep_1.tar.gz", b"not the reconciler's to write")

    denied = S3BlobStore(bucket, client=_client(moto_server, "s3", *trimmed))
    writer = BuildLogWriter(denied, "dep_1")  # reading still works
    writer("FAILED: again")
    with pytest.raises(ClientError, match="AccessDenied"):
        writer.close()


# -- self-hosted access role ----------------------------------------------------------------


def test_self_hosted_role_and_boundary_allow_the_bucket_kms_key(runs) -> None:
    run = runs["self-hosted"]
    role = _document(run, "aws:iam/rolePolicy:RolePolicy", "acme-plinth-plinth-access")
    boundary = _document(run, "aws:iam/policy:Policy", "acme-plinth-plinth-boundary")
    bucket, key = _bucket(run, "acme-plinth-weights")
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert allowed([role, boundary], action, key), action
        assert not allowed([role], action, key.replace("acme-plinth-weights", "other"))
    assert allowed([role, boundary], "s3:PutObject", f"{bucket}/{CHUNK}")
    # Each alone is not enough: the effective grant is the intersection.
    assert not allowed([role, boundary], "kms:Encrypt", key)


# -- weight readers (replicas and node agents) ---------------------------------------------


def test_weights_prefix_is_where_gpu_nodes_write() -> None:
    from infra.weight_access import WEIGHTS_PREFIX

    assert CHUNK_PREFIX.startswith(WEIGHTS_PREFIX) and MANIFEST_PREFIX.startswith(WEIGHTS_PREFIX)


@pytest.mark.parametrize(
    ("stack", "bucket_stack", "bucket_name", "prefix"),
    [
        # A region reads the weights the control plane mirrors into its blob bucket.
        ("aws-region", "control-plane", "plinth-prod-blobs", "plinth-use1-weight-readers"),
        ("self-hosted", "self-hosted", "acme-plinth-weights", "acme-plinth-weight-readers"),
    ],
)
def test_eks_replicas_and_node_agents_read_weights_with_their_own_identity(
    runs, stack, bucket_stack, bucket_name, prefix
) -> None:
    run = runs[stack]
    bucket, key = _bucket(runs[bucket_stack], bucket_name)
    associations = {
        a.inputs["serviceAccount"]: a
        for a in run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    platform_accounts = {
        sa.inputs["metadata"]["name"] for sa in run.of_type("kubernetes:core/v1:ServiceAccount")
    }
    assert KubernetesOptions().service_account == REPLICA_SERVICE_ACCOUNT
    for account in (WEIGHTS_CACHE_SERVICE_ACCOUNT, REPLICA_SERVICE_ACCOUNT):
        assert account in platform_accounts
        association = associations[account]
        # The driver runs replicas in Settings.k8s_namespace, the platform's namespace.
        assert association.inputs["namespace"] == Settings.k8s_namespace == "plinth"
        role = run.one("aws:iam/role:Role", f"{prefix}-{account.removeprefix('plinth-')}")
        assert association.inputs["roleArn"] == role.outputs["arn"]
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        policy = [_document(run, "aws:iam/rolePolicy:RolePolicy", role.name)]
        assert allowed(policy, "s3:GetObject", f"{bucket}/{CHUNK}")
        assert allowed(policy, "s3:GetObject", f"{bucket}/{MANIFEST_PREFIX}m.json")
        assert allowed(policy, "kms:Decrypt", key)
        assert allowed(policy, "s3:ListBucket", bucket, {"s3:prefix": CHUNK_PREFIX})
        # moto's engine skips StringLike conditions: check the prefix condition as written.
        (listing,) = [
            s for s in json.loads(policy[0])["Statement"] if "s3:ListBucket" in s["Action"]
        ]
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["weights/*"]}}
        assert not allowed(policy, "s3:GetObject", f"{bucket}/logs/dep_1/build.log")
        assert not allowed(policy, "s3:PutObject", f"{bucket}/{CHUNK}")


def test_gke_replicas_and_node_agents_read_weights_through_workload_identity(runs) -> None:
    run = runs["gcp-region"]
    bucket = run.one("gcp:storage/bucket:Bucket", "plinth-usc1-weights")
    grants = run.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    pool = "plinth-prod.svc.id.goog"
    expected = {
        f"principal://iam.googleapis.com/projects/1234567890/locations/global/"
        f"workloadIdentityPools/{pool}/subject/ns/plinth/sa/{account}"
        for account in (WEIGHTS_CACHE_SERVICE_ACCOUNT, REPLICA_SERVICE_ACCOUNT)
    }
    assert {g.inputs["member"] for g in grants} == expected
    for grant in grants:
        assert grant.inputs["bucket"] == bucket.outputs["name"]
        assert grant.inputs["role"] == "roles/storage.objectViewer"
        assert grant.inputs["condition"]["expression"] == (
            f'resource.name.startsWith("projects/_/buckets/{bucket.outputs["name"]}'
            f'/objects/weights/")'
        )


# -- reconciler access to region clusters -------------------------------------------------


@pytest.mark.parametrize("stack", ["prod-us-east-1", "prod-us-west-2"])
def test_every_aws_region_cluster_lets_the_reconciler_edit_the_plinth_namespace(
    runs, stack
) -> None:
    run = (
        runs["aws-region"]
        if stack == "prod-us-east-1"
        else StackTree(STACKS_DIR).run("aws-region", stack)
    )
    reconciler = runs["control-plane"].one("aws:iam/role:Role", "plinth-prod-reconciler")
    cluster = run.of_type("aws:eks/cluster:Cluster")[0].inputs["name"]
    (entry,) = [
        e
        for e in run.of_type("aws:eks/accessEntry:AccessEntry")
        if e.inputs["principalArn"] == reconciler.outputs["arn"]
    ]
    assert entry.inputs["clusterName"] == cluster and entry.inputs["type"] == "STANDARD"
    (association,) = [
        a
        for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a.inputs["principalArn"] == reconciler.outputs["arn"]
    ]
    assert association.inputs["policyArn"].endswith("/AmazonEKSEditPolicy")
    assert association.inputs["accessScope"] == {
        "type": "namespace",
        "namespaces": [Settings.k8s_namespace],
    }
    # The reconciler's IAM policy lets it describe this cluster (endpoint and CA) under the
    # ARN the control plane stack is configured with (the mock account id differs).
    policy = [_document(runs["control-plane"], "aws:iam/rolePolicy:RolePolicy", reconciler.name)]
    (describe,) = [
        s for s in json.loads(policy[0])["Statement"] if "eks:DescribeCluster" in s["Action"]
    ]
    (configured,) = [arn for arn in describe["Resource"] if arn.endswith(f":cluster/{cluster}")]
    assert allowed(policy, "eks:DescribeCluster", configured)


# -- secrets (envelope encryption under the control plane's KMS key) -------------------------


def test_api_seals_and_reconciler_opens_secrets_only_under_their_context(runs) -> None:
    from control_plane.adapters.aws_kms_kek import ENCRYPTION_CONTEXT

    run = runs["control-plane"]
    key = run.one("aws:kms/key:Key", "plinth-prod-secrets").outputs["arn"]
    context = {f"kms:EncryptionContext:{k}": v for k, v in ENCRYPTION_CONTEXT.items()}
    other = {"kms:EncryptionContext:plinth": "something-else"}

    def policy(role: str) -> list[str]:
        return [_document(run, "aws:iam/rolePolicy:RolePolicy", f"plinth-prod-{role}")]

    # POST /v1/secrets: AwsKmsKeys.new_data_key; the replicas' values: AwsKmsKeys.unwrap.
    assert allowed(policy("api"), "kms:GenerateDataKey", key, context)
    assert not allowed(policy("api"), "kms:GenerateDataKey", key, other)
    assert not allowed(policy("api"), "kms:Decrypt", key, context)  # the API never reads one
    assert allowed(policy("reconciler"), "kms:Decrypt", key, context)
    assert not allowed(policy("reconciler"), "kms:Decrypt", key, other)
    assert not allowed(policy("worker"), "kms:Decrypt", key, context)
    variables = run.one("aws:lambda/function:Function", "plinth-prod-api").inputs["environment"]
    assert variables["variables"]["PLINTH_SECRETS_KMS_KEY_ID"] == key


@pytest.mark.parametrize(
    ("stack", "cluster", "scheme", "bucket_stack", "bucket_type", "bucket_name"),
    [
        (
            "aws-region",
            "plinth-use1",
            "s3",
            "control-plane",
            "aws:s3/bucket:Bucket",
            "plinth-prod-blobs",
        ),
        (
            "gcp-region",
            "plinth-usc1",
            "gs",
            "gcp-region",
            "gcp:storage/bucket:Bucket",
            "plinth-usc1-weights",
        ),
    ],
)
def test_region_weights_caches_fill_from_the_bucket_their_identity_reads(
    runs, stack, cluster, scheme, bucket_stack, bucket_type, bucket_name
) -> None:
    daemonset = runs[stack].one("kubernetes:apps/v1:DaemonSet", f"{cluster}-weights-cache")
    (container,) = daemonset.inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    bucket = runs[bucket_stack].one(bucket_type, bucket_name).outputs["name"]
    assert env["PLINTH_WEIGHTS_ORIGIN_URL"] == f"{scheme}://{bucket}"


@pytest.mark.parametrize(
    ("stack", "cluster"), [("aws-region", "plinth-use1"), ("gcp-region", "plinth-usc1")]
)
def test_region_gateways_get_the_control_planes_token_from_secrets_manager(
    runs, stack, cluster
) -> None:
    secret = runs[stack].one("kubernetes:core/v1:Secret", f"{cluster}-internal-token")
    assert secret.inputs["metadata"]["name"] == "plinth-internal-token"
    # Still a Pulumi secret after the lookup (never shown in plain by `pulumi preview`).
    sealed = secret.inputs["stringData"]
    assert len(sealed) == 2 and sealed["value"] == {"token": "int_mock-internal-token"}
    gateway = runs[stack].one("kubernetes:apps/v1:Deployment", f"{cluster}-gateway")
    (container,) = gateway.inputs["spec"]["template"]["spec"]["containers"]
    (env,) = [e for e in container["env"] if e["name"] == "PLINTH_INTERNAL_TOKEN"]
    assert env["valueFrom"]["secretKeyRef"]["name"] == "plinth-internal-token"
