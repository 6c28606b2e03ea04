"""ServerlessControlPlane under Pulumi mocks: functions, queue, tables, HTTP API, IAM."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest

from infra.control_plane import ServerlessControlPlane, ServerlessControlPlaneArgs, code_archive
from infra.exceptions import InfraConfigError
from infra.policies import check

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET_ARN = "arn:aws:s3:::plinth-blobs"


def _args(tags, **overrides) -> ServerlessControlPlaneArgs:
    kwargs = {
        "tags": tags,
        "code_root": str(REPO_ROOT),
        "blob_bucket_arn": BUCKET_ARN,
        "blob_bucket_name": "plinth-blobs",
        "cluster_arns": ("arn:aws:eks:us-east-1:111122223333:cluster/plinth",),
    }
    kwargs.update(overrides)
    return ServerlessControlPlaneArgs(**kwargs)


@pytest.fixture
def plane(run, tags):
    return run(lambda: {"url": ServerlessControlPlane("cp", _args(tags)).api_url})


def _function(result, role):
    return result.one("aws:lambda/function:Function", f"cp-{role}").inputs


def _policy(result, role):
    return json.loads(result.one("aws:iam/rolePolicy:RolePolicy", f"cp-{role}").inputs["policy"])


def test_functions_handlers_and_log_groups(plane) -> None:
    handlers = {role: _function(plane, role)["handler"] for role in ("api", "worker", "reconciler")}
    assert handlers == {
        "api": "lambdas.api.handler",
        "worker": "lambdas.async_worker.handler",
        "reconciler": "lambdas.reconciler.handler",
    }
    for role in ("api", "worker", "reconciler"):
        group = plane.one("aws:cloudwatch/logGroup:LogGroup", f"cp-{role}")
        assert group.inputs["name"] == f"/aws/lambda/cp-{role}"
        assert group.inputs["retentionInDays"] == 30
        assert _function(plane, role)["loggingConfig"]["logGroup"] == group.outputs["name"]
    assert _function(plane, "api")["environment"]["variables"]["PLINTH_STORE"] == "dynamodb"


def _async_queue(plane, priority: int):
    return plane.one("aws:sqs/queue:Queue", f"cp-async-requests-p{priority}-queue")


def test_one_queue_per_priority_each_with_its_dlq_and_a_worker_mapping(plane) -> None:
    worker_timeout = _function(plane, "worker")["timeout"]
    mappings = {
        m.inputs["eventSourceArn"]: m.inputs
        for m in plane.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")
    }
    assert len(mappings) == 3
    for priority in (0, 1, 2):
        queue = _async_queue(plane, priority)
        dlq = plane.one("aws:sqs/queue:Queue", f"cp-async-requests-p{priority}-dlq")
        assert queue.inputs["visibilityTimeoutSeconds"] >= 6 * worker_timeout
        redrive = json.loads(queue.inputs["redrivePolicy"])
        # Above the 10 model attempts a request may ask for: each deferred retry is a delivery.
        assert redrive == {"deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": 15}
        assert queue.inputs["sqsManagedSseEnabled"] is True
        assert dlq.inputs["sqsManagedSseEnabled"] is True
        mapping = mappings[queue.outputs["arn"]]
        assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
        assert (
            mapping["functionName"]
            == plane.one("aws:lambda/function:Function", "cp-worker").outputs["arn"]
        )


def test_a_redrive_limit_within_the_model_attempts_is_rejected(tags) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        _args(tags, max_receive_count=10)
    assert excinfo.value.field == "max_receive_count"


def test_the_worker_gets_the_gateway_url_and_its_api_key_from_secrets_manager(run, tags) -> None:
    plane = run(
        lambda: {
            "url": ServerlessControlPlane(
                "cp",
                _args(
                    tags,
                    gateway_url="https://gw.example.com",
                    async_api_key=pulumi.Output.secret("pk-worker-key-0123456789"),
                ),
            ).api_url
        }
    )
    secret = plane.one("aws:secretsmanager/secret:Secret", "cp-async-api-key")
    version = plane.one("aws:secretsmanager/secretVersion:SecretVersion", "cp-async-api-key")
    assert version.inputs["secretId"] == secret.id
    env = _function(plane, "worker")["environment"]["variables"]
    assert env["PLINTH_GATEWAY_URL"] == "https://gw.example.com"
    assert env["PLINTH_ASYNC_API_KEY_SECRET_ARN"] == secret.outputs["arn"]
    assert float(env["PLINTH_ASYNC_BUSY_REQUEUE_MAX_S"]) > 0
    # The key itself is in no function's environment.
    for role in ("api", "worker", "reconciler"):
        assert "pk-worker-key" not in json.dumps(_function(plane, role)["environment"])
    grants = [
        s
        for s in _policy(plane, "worker")["Statement"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]
    assert [g["Resource"] for g in grants] == [[secret.outputs["arn"]]]
    for role in ("api", "reconciler"):
        assert secret.outputs["arn"] not in json.dumps(_policy(plane, role))


def test_visibility_timeout_below_six_times_worker_timeout_is_rejected(tags) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        _args(tags, worker_timeout_s=100, queue_visibility_timeout_s=599)
    assert excinfo.value.field == "queue_visibility_timeout_s"
    assert "600" in str(excinfo.value)
    assert (
        _args(tags, worker_timeout_s=100, queue_visibility_timeout_s=600).visibility_timeout_s
        == 600
    )


def test_tables_have_pitr_and_sse(plane) -> None:
    tables = plane.of_type("aws:dynamodb/table:Table")
    assert len(tables) == 2
    for table in tables:
        assert table.inputs["pointInTimeRecovery"] == {"enabled": True}
        assert table.inputs["serverSideEncryption"]["enabled"] is True
    metadata = plane.one("aws:dynamodb/table:Table", "cp-metadata").inputs
    assert (metadata["hashKey"], metadata["rangeKey"]) == ("tbl", "key")


def test_the_metadata_table_has_the_stores_secondary_index(plane) -> None:
    from control_plane.adapters.dynamodb_store import INDEX_HASH, INDEX_NAME, INDEX_RANGE

    metadata = plane.one("aws:dynamodb/table:Table", "cp-metadata").inputs
    (index,) = metadata["globalSecondaryIndexes"]
    assert (index["name"], index["hashKey"], index["rangeKey"]) == (
        INDEX_NAME,
        INDEX_HASH,
        INDEX_RANGE,
    )
    assert index["projectionType"] == "ALL"
    declared = {a["name"]: a["type"] for a in metadata["attributes"]}
    assert declared == {"tbl": "S", "key": "S", INDEX_HASH: "S", INDEX_RANGE: "S"}


def test_the_metadata_table_expires_load_reports_by_their_ttl_attribute(plane) -> None:
    from control_plane.adapters.dynamodb_load_reports import TTL_ATTRIBUTE

    metadata = plane.one("aws:dynamodb/table:Table", "cp-metadata").inputs
    assert metadata["ttl"] == {"attributeName": TTL_ATTRIBUTE, "enabled": True}


def test_http_api_default_route_stage_and_proxy_integration(plane) -> None:
    (integration,) = plane.of_type("aws:apigatewayv2/integration:Integration")
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert (
        integration.inputs["integrationUri"]
        == plane.one("aws:lambda/function:Function", "cp-api").outputs["arn"]
    )
    (route,) = plane.of_type("aws:apigatewayv2/route:Route")
    assert route.inputs["routeKey"] == "$default"
    assert route.inputs["target"] == f"integrations/{integration.id}"
    (stage,) = plane.of_type("aws:apigatewayv2/stage:Stage")
    assert stage.inputs["name"] == "$default" and stage.inputs["autoDeploy"] is True
    (permission,) = plane.of_type("aws:lambda/permission:Permission")
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert plane.outputs["url"].startswith("https://")


def test_reconciler_schedule_has_its_own_role(plane) -> None:
    (schedule,) = plane.of_type("aws:scheduler/schedule:Schedule")
    reconciler = plane.one("aws:lambda/function:Function", "cp-reconciler")
    assert schedule.inputs["target"]["arn"] == reconciler.outputs["arn"]
    scheduler_role = plane.one("aws:iam/role:Role", "cp-scheduler")
    assert schedule.inputs["target"]["roleArn"] == scheduler_role.outputs["arn"]
    trust = json.loads(scheduler_role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": ["scheduler.amazonaws.com"]}
    policy = _policy(plane, "scheduler")
    assert policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [reconciler.outputs["arn"]],
        }
    ]


def test_each_function_reaches_only_its_own_resources(plane) -> None:
    queue_arns = {_async_queue(plane, p).outputs["arn"] for p in (0, 1, 2)}
    api_key_secret_arn = plane.one("aws:secretsmanager/secret:Secret", "cp-async-api-key").outputs[
        "arn"
    ]
    builds_arn = plane.one("aws:sqs/queue:Queue", "cp-builds-queue").outputs["arn"]
    table_arns = {t.outputs["arn"] for t in plane.of_type("aws:dynamodb/table:Table")}
    secrets_key_arn = plane.one("aws:kms/key:Key", "cp-secrets").outputs["arn"]
    token_arn = plane.one("aws:secretsmanager/secret:Secret", "cp-internal-token").outputs["arn"]
    allowed = (
        table_arns
        | queue_arns
        | {
            secrets_key_arn,
            api_key_secret_arn,
            token_arn,
            builds_arn,
            BUCKET_ARN,
            BUCKET_ARN + "/*",
            BUCKET_ARN + "/logs/*",  # the reconciler's build-log writes
            BUCKET_ARN + "/uploads/*",  # the API aborts unfinished direct archive uploads
            "arn:aws:eks:us-east-1:111122223333:cluster/plinth",
        }
    )
    for role in ("api", "worker", "reconciler"):
        statements = _policy(plane, role)["Statement"]
        log_group_arn = plane.one("aws:cloudwatch/logGroup:LogGroup", f"cp-{role}").outputs["arn"]
        for statement in statements:
            assert all("*" not in action for action in statement["Action"]), statement
            assert set(statement["Resource"]) <= allowed | {log_group_arn + ":*"}, statement
    actions = {
        role: {a for s in _policy(plane, role)["Statement"] for a in s["Action"]}
        for role in ("api", "worker", "reconciler")
    }
    assert "sqs:ReceiveMessage" in actions["worker"] and "sqs:ReceiveMessage" not in actions["api"]
    assert "sqs:SendMessage" in actions["api"] and not any(
        a.startswith("sqs:") for a in actions["reconciler"]
    )
    assert (
        "eks:DescribeCluster" in actions["reconciler"]
        and "eks:DescribeCluster" not in actions["api"]
    )
    assert "s3:PutObject" not in actions["worker"]
    assert "s3:AbortMultipartUpload" in actions["api"]
    # Only the API checks the gateways' token; the worker reads only its own API key.
    assert "secretsmanager:GetSecretValue" in actions["api"]
    assert not any(a.startswith("secretsmanager:") for a in actions["reconciler"])
    worker_secrets = {
        r
        for s in _policy(plane, "worker")["Statement"]
        if any(a.startswith("secretsmanager:") for a in s["Action"])
        for r in s["Resource"]
    }
    assert worker_secrets == {api_key_secret_arn}
    # Secrets: the API seals (never opens), the reconciler opens for replicas, the worker neither.
    assert "kms:GenerateDataKey" in actions["api"] and "kms:Decrypt" not in actions["api"]
    assert "kms:Decrypt" in actions["reconciler"]
    assert not any(a.startswith("kms:") for a in actions["worker"])
    worker_queues = {
        r
        for s in _policy(plane, "worker")["Statement"]
        if "sqs:ReceiveMessage" in s["Action"]
        for r in s["Resource"]
    }
    assert worker_queues == queue_arns
    assert check(plane.resources) == []


def test_queue_names_match_the_sqs_adapter_convention(plane) -> None:
    names = sorted(q.inputs["name"] for q in plane.of_type("aws:sqs/queue:Queue"))
    assert names == [
        *(f"cp-async-requests-p{p}{dlq}" for p in (0, 1, 2) for dlq in ("", "-dlq")),
        "cp-builds",
        "cp-builds-dlq",
    ]
    from control_plane.domain.async_requests import PRIORITIES, queue_name

    assert {f"cp-{queue_name(p)}" for p in PRIORITIES} <= set(names)
    env = _function(plane, "api")["environment"]["variables"]
    assert env["PLINTH_SQS_QUEUE_PREFIX"] == "cp-"
    assert env["PLINTH_QUEUE"] == "sqs" and env["PLINTH_BLOB_BUCKET"] == "plinth-blobs"


def test_code_archive_holds_the_packages() -> None:
    archive = code_archive(str(REPO_ROOT), ("control_plane", "lambdas"))
    assert isinstance(archive, pulumi.AssetArchive)
    assert set(archive.assets) == {"control_plane", "lambdas"}
    assert archive.assets["lambdas"].path == str(REPO_ROOT / "lambdas")


def test_missing_code_package_is_rejected(tags, tmp_path) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        _args(tags, code_root=str(tmp_path))
    assert excinfo.value.field == "code_packages"


def test_every_child_is_parented_to_the_component(plane) -> None:
    children = [u for u in plane.urns if not u.endswith("ServerlessControlPlane::cp")]
    assert len(children) + 1 == len(plane.resources) > 30  # + the component
    assert all("::plinth:control_plane:ServerlessControlPlane$" in u for u in children)


def test_secrets_are_sealed_by_a_rotating_kms_key_bound_to_their_context(plane) -> None:
    from control_plane.adapters.aws_kms_kek import ENCRYPTION_CONTEXT
    from infra.control_plane_iam import SECRETS_ENCRYPTION_CONTEXT

    assert SECRETS_ENCRYPTION_CONTEXT == ENCRYPTION_CONTEXT  # the grants match what the code sends
    key = plane.one("aws:kms/key:Key", "cp-secrets")
    assert key.inputs["enableKeyRotation"] is True
    for role in ("api", "reconciler"):
        variables = _function(plane, role)["environment"]["variables"]
        assert variables["PLINTH_SECRETS_KEK"] == "aws-kms"
        assert variables["PLINTH_SECRETS_KMS_KEY_ID"] == key.outputs["arn"]
        kms = [s for s in _policy(plane, role)["Statement"] if s["Action"][0].startswith("kms:")]
        secret_grants = [s for s in kms if s["Resource"] == [key.outputs["arn"]]]
        assert secret_grants and all(
            s["Condition"] == {"StringEquals": {"kms:EncryptionContext:plinth": "secret"}}
            for s in secret_grants
        )


def test_the_reconciler_is_told_how_to_reach_its_eks_cluster(run, tags) -> None:
    named = _args(
        tags,
        cluster_name="plinth-use1",
        cluster_endpoint="https://ABC.gr7.us-east-1.eks.amazonaws.com",
        cluster_ca_data="LS0tLS1CRUdJTi0tLS0t",
    )
    result = run(lambda: {"url": ServerlessControlPlane("cp", named).api_url})
    variables = _function(result, "reconciler")["environment"]["variables"]
    assert {k: v for k, v in variables.items() if k.startswith("PLINTH_K8S_")} == {
        "PLINTH_K8S_AUTH": "eks",
        "PLINTH_K8S_CLUSTER_NAME": "plinth-use1",
        "PLINTH_K8S_ENDPOINT": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
        "PLINTH_K8S_CA_DATA": "LS0tLS1CRUdJTi0tLS0t",
    }
    api = _function(result, "api")["environment"]["variables"]
    assert not any(k.startswith("PLINTH_K8S_") for k in api)
    with pytest.raises(InfraConfigError, match="go together"):
        _args(tags, cluster_name="plinth-use1")


def test_replicas_are_told_the_in_cluster_weights_origin_not_the_api(plane) -> None:
    from infra.platform import WEIGHTS_CACHE_PORT, WEIGHTS_CACHE_SERVICE

    for role in ("api", "worker", "reconciler"):
        function = plane.one("aws:lambda/function:Function", f"cp-{role}")
        origin = function.inputs["environment"]["variables"]["PLINTH_WEIGHTS_ORIGIN_URL"]
        assert origin == (
            f"http://{WEIGHTS_CACHE_SERVICE}.plinth.svc.cluster.local:{WEIGHTS_CACHE_PORT}"
        )


def test_the_internal_token_lives_in_secrets_manager_not_in_the_environment(plane) -> None:
    secret = plane.one("aws:secretsmanager/secret:Secret", "cp-internal-token")
    version = plane.one("aws:secretsmanager/secretVersion:SecretVersion", "cp-internal-token")
    assert version.inputs["secretId"] == secret.id
    sealed = version.inputs["secretString"]  # a Pulumi secret: {<secret sig>: ..., "value"}
    token = sealed["value"]
    assert len(sealed) == 2 and token.startswith("int_") and len(token) > 40
    variables = _function(plane, "api")["environment"]["variables"]
    assert variables["PLINTH_INTERNAL_TOKEN_SECRET_ID"] == secret.outputs["arn"]
    assert "PLINTH_INTERNAL_TOKEN" not in variables
    assert token not in json.dumps(variables)
