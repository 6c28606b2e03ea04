"""IAM enforcement, end to end: the API and reconciler Lambda handlers run against a moto
server that checks every request (``reset-auth``, i.e. INITIAL_NO_AUTH_ACTION_COUNT=0) with
credentials whose only policies are the ones ``stacks/aws-control-plane`` renders.

A push (plan, upload to the staged key, complete, create deployment) and a reconcile pass
succeed with the full policies; taking away any one statement the push exercises makes a
step fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from infra.offline import OfflineRun
from infra.preflight import StackTree
from tests.lambdas.conftest import _http_api_event
from tests.stacks.test_stacks_iam_sufficiency import (
    _client,
    _document,
    _user_with,
    moto_server,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.integration
STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
ADMIN_KEY = "pl_iam-flow-admin-key-0123456789"
ARCHIVE = b"a package archive" * 1000
SHA = hashlib.sha256(ARCHIVE).hexdigest()
# API statements the push needs, by their first action: without any one, some step fails.
API_STATEMENTS_THE_PUSH_NEEDS = (
    "dynamodb:BatchGetItem",  # keys, models, deployments
    "sqs:GetQueueUrl",  # the build request
    "s3:DeleteObject",  # objects: HEAD/GET, the presigned PUT, copy, delete the staged one
)


@pytest.fixture(scope="module")
def control_plane_run() -> OfflineRun:
    return StackTree(STACKS_DIR).run("aws-control-plane", "prod-us-east-1")


def _env(run: OfflineRun, role: str) -> dict[str, str]:
    function = run.one("aws:lambda/function:Function", f"plinth-prod-{role}")
    env = dict(function.inputs["environment"]["variables"])
    # Secrets are sealed by a KMS key whose ARN moto cannot reproduce (it picks key ids),
    # and the token secret likewise: this flow stores no secret and reads the token plainly.
    env.pop("PLINTH_INTERNAL_TOKEN_SECRET_ID", None)
    env.update(PLINTH_SECRETS_KEK="local", PLINTH_CLUSTER="none")
    return env


def _prepare(endpoint: str, run: OfflineRun) -> None:
    """What the stack would have created, made with the (unenforced) root credentials."""
    dynamodb = _client(endpoint, "dynamodb")
    for table in run.of_type("aws:dynamodb/table:Table"):
        inputs = table.inputs
        keys = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
        if inputs.get("rangeKey"):
            keys.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
        indexes = [
            {
                "IndexName": index["name"],
                "KeySchema": [
                    {"AttributeName": index["hashKey"], "KeyType": "HASH"},
                    *(
                        [{"AttributeName": index["rangeKey"], "KeyType": "RANGE"}]
                        if index.get("rangeKey")
                        else []
                    ),
                ],
                "Projection": {"ProjectionType": index.get("projectionType", "ALL")},
            }
            for index in inputs.get("globalSecondaryIndexes") or []
        ]
        dynamodb.create_table(
            TableName=table.outputs["name"],
            BillingMode="PAY_PER_REQUEST",
            KeySchema=keys,
            AttributeDefinitions=[
                {"AttributeName": a["name"], "AttributeType": a["type"]}
                for a in inputs["attributes"]
            ],
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
    sqs = _client(endpoint, "sqs")
    for queue in run.of_type("aws:sqs/queue:Queue"):
        sqs.create_queue(QueueName=queue.outputs["name"])
    _client(endpoint, "s3").create_bucket(Bucket="plinth-prod-blobs")


def _as(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], keys: tuple[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])
    # boto3's default session keeps the credentials it first saw: start a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def _call(handler: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    event = _http_api_event(
        method, path, headers={"authorization": f"Api-Key {ADMIN_KEY}"}, body=body
    )
    answer: dict[str, Any] = handler(event, None)
    raw = answer.get("body") or ""
    text = base64.b64decode(raw).decode() if answer.get("isBase64Encoded") else raw
    try:
        body = json.loads(text) if text else None
    except ValueError:  # an unhandled error: Mangum's plain-text 500
        body = text
    return {"status": answer["statusCode"], "body": body}


def _push(handler: Any, endpoint: str, keys: tuple[str, str]) -> list[str]:
    """The push through the API handler; returns the failures (empty: it all worked)."""
    failures: list[str] = []
    plan = _call(handler, "POST", f"/v1/archives/{SHA}/uploads", {"size": len(ARCHIVE)})
    if plan["status"] != 200:
        return [f"plan: {plan}"]
    # A presigned URL carries its signer's authority: the PUT it allows is the API role's
    # s3:PutObject on the staged key. moto's IAM check fails on query-string signatures
    # (500), so the same request is made with the API role's credentials directly.
    bucket, key = urlsplit(plan["body"]["url"]).path.lstrip("/").split("/", 1)
    try:
        _client(endpoint, "s3", *keys).put_object(Bucket=bucket, Key=key, Body=ARCHIVE)
    except Exception as exc:
        failures.append(f"upload: {exc}")
    upload_id = plan["body"]["upload_id"]
    done = _call(
        handler,
        "POST",
        f"/v1/archives/{SHA}/uploads/{upload_id}/complete",
        {"size": len(ARCHIVE)},
    )
    if done["status"] != 201:
        failures.append(f"complete: {done}")
    config = {"model_name": "iam-flow", "resources": {"cpu": "1", "memory": "512Mi"}}
    created = _call(
        handler,
        "POST",
        "/v1/deployments",
        {"model_name": "iam-flow", "archive_sha256": SHA, "config": config},
    )
    if created["status"] != 201:
        failures.append(f"create deployment: {created}")
    return failures


def _as_moto_checks(policy: str) -> str:
    """moto checks S3 requests against resource ARNs but other services' requests only by
    action (it evaluates them with resource ``*``): widen non-S3 resources to ``*`` so the
    actions are what is tested here. Their resource scoping has its own test
    (tests/infra/test_infra_control_plane.py, each function reaches only its resources)."""
    document = json.loads(policy)
    statements = [
        s if all(a.startswith("s3:") for a in s["Action"]) else {**s, "Resource": ["*"]}
        for s in document["Statement"]
    ]
    return json.dumps({**document, "Statement": statements})


def _without(policy: str, first_action: str) -> str:
    document = json.loads(policy)
    kept = [s for s in document["Statement"] if sorted(s["Action"])[0] != first_action]
    assert len(kept) == len(document["Statement"]) - 1, first_action
    return json.dumps({**document, "Statement": kept})


def _enforce(endpoint: str) -> None:
    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()


def _handler(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], keys: tuple[str, str]) -> Any:
    from lambdas import api

    _as(monkeypatch, {**env, "PLINTH_BOOTSTRAP_API_KEY": ADMIN_KEY}, keys)
    return api.build_handler()


def test_push_and_reconcile_pass_with_the_rendered_policies(
    moto_server: str,  # noqa: F811
    control_plane_run: OfflineRun,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from lambdas import reconciler

    run = control_plane_run
    _prepare(moto_server, run)
    api_policy = _document(run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-api")
    api_keys = _user_with(moto_server, "api", _as_moto_checks(api_policy))
    reconciler_policy = _document(run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-reconciler")
    reconciler_keys = _user_with(moto_server, "reconciler", _as_moto_checks(reconciler_policy))
    no_table = _without(reconciler_policy, "dynamodb:BatchGetItem")
    reconciler_without_table = _user_with(
        moto_server, "reconciler-no-table", _as_moto_checks(no_table)
    )
    _enforce(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)

    api_env = {**_env(run, "api"), "PLINTH_STATE_DIR": str(tmp_path / "api")}
    handler = _handler(monkeypatch, api_env, api_keys)
    assert _push(handler, moto_server, api_keys) == []
    with pytest.raises(Exception, match="AccessDenied"):  # the API may not read the build log
        _client(moto_server, "s3", *reconciler_keys).put_object(
            Bucket="plinth-prod-blobs", Key="archives/x.tar.gz", Body=b"x"
        )

    # The local driver stands in for the cluster: the IAM question is the reconciler's reads
    # of the table and the bucket, not how it reaches Kubernetes.
    env = {
        **_env(run, "reconciler"),
        "PLINTH_STATE_DIR": str(tmp_path / "reconciler"),
        "PLINTH_CLUSTER": "local",
    }
    _as(monkeypatch, env, reconciler_keys)
    with caplog.at_level(logging.ERROR, logger="control_plane"):
        reconciler.reconcile_pass(reconciler.build_platform())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    _as(monkeypatch, env, reconciler_without_table)
    with pytest.raises(Exception, match=r"failed: 403"):
        reconciler.reconcile_pass(reconciler.build_platform())


@pytest.mark.parametrize("first_action", API_STATEMENTS_THE_PUSH_NEEDS)
def test_without_any_one_api_statement_the_push_fails(
    moto_server: str,  # noqa: F811
    control_plane_run: OfflineRun,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    first_action: str,
) -> None:
    run = control_plane_run
    _prepare(moto_server, run)
    policy = _document(run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-api")
    trimmed = _user_with(
        moto_server, "api-trimmed", _as_moto_checks(_without(policy, first_action))
    )
    _enforce(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    env = {**_env(run, "api"), "PLINTH_STATE_DIR": str(tmp_path / "api")}
    try:
        failures = _push(_handler(monkeypatch, env, trimmed), moto_server, trimmed)
    except Exception as exc:  # an adapter error the app does not map (it answers 500 too)
        failures = [f"raised {type(exc).__name__}: {exc}"]
    assert failures, f"the push worked without the statement starting {first_action}"
    # Denied for the missing grant, not refused for bad credentials.
    assert any("403" in f or "AccessDenied" in f or "500" in f for f in failures), failures


def test_every_api_statement_is_exercised_or_named(control_plane_run: OfflineRun) -> None:
    """The statements the push does not need are the ones this flow cannot reach (and why)."""
    policy = json.loads(
        _document(control_plane_run, "aws:iam/rolePolicy:RolePolicy", "plinth-prod-api")
    )
    first_actions = {sorted(s["Action"])[0] for s in policy["Statement"]}
    not_reached = {
        "logs:CreateLogStream",  # the Lambda runtime's own log writes
        "kms:Decrypt",  # SSE-KMS of the bucket (moto's bucket has no KMS key)
        "kms:GenerateDataKey",  # sealing secrets: moto cannot make a key with the mock ARN
        "secretsmanager:GetSecretValue",  # the token secret: likewise (its ARN has a suffix)
        "s3:AbortMultipartUpload",  # only when a multipart upload fails to assemble
        # AWS answers a HEAD of a missing key with 403 without it (404 with it); moto always
        # answers 404, so this flow cannot tell.
        "s3:ListBucket",
    }
    assert first_actions == set(API_STATEMENTS_THE_PUSH_NEEDS) | not_reached


@pytest.fixture(autouse=True)
def _fresh_moto_per_test() -> Iterator[None]:
    # Each test gets its own moto server (the fixture is function-scoped): IAM enforcement,
    # once on, is server-wide.
    yield
