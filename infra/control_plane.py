"""Serverless control plane on AWS: three Lambda functions, an HTTP API, DynamoDB and SQS.

- API: ``lambdas.api.handler`` (Mangum over ``create_app``) behind an API Gateway v2 HTTP
  API (``$default`` route and stage, Lambda proxy integration, payload format 2.0).
- Async worker: ``lambdas.async_worker.handler`` fed by one SQS event source mapping per
  priority queue (``<name>-async-requests-p0``/``-p1``/``-p2``), each reporting partial batch
  failures; each queue redrives to its own DLQ after ``max_receive_count``. Their visibility
  timeout is at least 6x the worker timeout (AWS's guidance, so a message is not redelivered
  while a slow batch is still running) -- enforced in the args. The worker calls models
  through ``gateway_url`` with the API key kept in a Secrets Manager secret (never in its
  environment).
- Reconciler: ``lambdas.reconciler.handler`` on an EventBridge Scheduler schedule.
Each function has its own role that can touch only its tables, queue and bucket.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.aws_network import LOG_RETENTION_DAYS
from infra.control_plane_iam import function_statements
from infra.exceptions import InfraConfigError
from infra.iam import Statement, policy_json, service_trust_policy
from infra.platform import in_cluster_weights_origin
from infra.tags import StandardTags

# No gpu_nodes: the control plane shares only plinth.contracts and plinth.spec with the GPU
# nodes (import-linter keeps it so; tests/lambdas/test_lambdas_bundle.py proves it).
CODE_PACKAGES: tuple[str, ...] = ("control_plane", "lambdas", "plinth")
VISIBILITY_FACTOR = 6
# role -> (Lambda handler, args field holding its timeout)
HANDLERS: dict[str, tuple[str, str]] = {
    "api": ("lambdas.api.handler", "api_timeout_s"),
    "worker": ("lambdas.async_worker.handler", "worker_timeout_s"),
    "reconciler": ("lambdas.reconciler.handler", "reconciler_timeout_s"),
}
# Async request priorities, one queue each (control_plane.domain.async_requests.queue_name).
ASYNC_PRIORITIES = (0, 1, 2)
# On Lambda every deferred model retry is one more delivery of the message: the redrive
# limit must stay above the most attempts a request may ask for (inference_retry_config).
MAX_MODEL_ATTEMPTS = 10
# The worker Lambda requeues a request that met a full replica with a delay doubling up to
# this (control_plane.settings: PLINTH_ASYNC_BUSY_REQUEUE_MAX_S).
WORKER_BUSY_REQUEUE_MAX_S = 30
# Consumers of the extra queues pass their own visibility timeout on every receive.
EXTRA_QUEUE_VISIBILITY_S = 900
# The metadata store's sparse secondary index (control_plane.adapters.dynamodb_store:
# INDEX_NAME, INDEX_HASH, INDEX_RANGE): async requests by status and deployment, so queue
# status and the purge never read the whole table.
METADATA_INDEX = ("by_index", "ipk", "idx")
# The attribute the control plane's DynamoDB load-report store sets on each report (epoch
# seconds): with TTL on, DynamoDB deletes expired reports itself.
LOAD_REPORT_TTL_ATTRIBUTE = "expires_at"


@dataclass(frozen=True)
class ServerlessControlPlaneArgs:
    tags: StandardTags
    code_root: str  # repository root holding the packages in ``code_packages``
    blob_bucket_arn: pulumi.Input[str]
    blob_bucket_name: pulumi.Input[str]
    blob_kms_key_arn: pulumi.Input[str] | None = None
    code_packages: Sequence[str] = CODE_PACKAGES
    layer_arns: Sequence[str] = ()  # third-party dependencies (fastapi, mangum, boto3, ...)
    runtime: str = "python3.11"
    api_timeout_s: int = 29  # API Gateway's integration limit is 30 s
    worker_timeout_s: int = 120
    reconciler_timeout_s: int = 300
    queue_visibility_timeout_s: int | None = None  # None: VISIBILITY_FACTOR x worker timeout
    max_receive_count: int = 15
    worker_batch_size: int = 10
    reconcile_schedule: str = "rate(1 minute)"
    log_retention_days: int = 30
    cluster_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    queue_name: str = "async-requests"  # + "-p<priority>": consumed by the async worker
    # Where the worker calls models (a gateway's public URL); unset: the worker cannot run.
    gateway_url: pulumi.Input[str] | None = None
    # The worker's API key (a Pulumi secret, e.g. `pulumi config set --secret`); stored in
    # Secrets Manager. Unset: the secret is declared empty and its value is put out of band.
    async_api_key: pulumi.Input[str] | None = None
    # Other logical queues the API enqueues to (control_plane.domain: "builds"); each gets a
    # DLQ. Their consumers run in a cluster, not in Lambda.
    extra_queues: Sequence[str] = ("builds",)
    # The cluster the reconciler drives, named from outside (a Lambda has no kubeconfig):
    # its API endpoint and CA (base64 PEM), and the EKS name its tokens are signed for.
    cluster_name: pulumi.Input[str] | None = None
    cluster_endpoint: pulumi.Input[str] | None = None
    cluster_ca_data: pulumi.Input[str] | None = None
    # PLINTH_WEIGHTS_ORIGIN_URL the reconciler gives replicas: the weights caches' in-cluster
    # Service (they read the bucket); this API's Lambda serves no chunks.
    weights_origin_url: str = field(default_factory=in_cluster_weights_origin)

    def __post_init__(self) -> None:
        named = (self.cluster_name, self.cluster_endpoint, self.cluster_ca_data)
        if any(v is not None for v in named) and any(v is None for v in named):
            raise InfraConfigError(
                "cluster_name", "cluster_name, cluster_endpoint and cluster_ca_data go together"
            )
        root = Path(self.code_root)
        for package in self.code_packages:
            if not (root / package / "__init__.py").is_file():
                raise InfraConfigError("code_packages", f"{root / package} is not a Python package")
        if not 1 <= self.worker_timeout_s <= 900:
            raise InfraConfigError("worker_timeout_s", f"{self.worker_timeout_s} not in 1..900")
        if self.visibility_timeout_s < VISIBILITY_FACTOR * self.worker_timeout_s:
            raise InfraConfigError(
                "queue_visibility_timeout_s",
                f"{self.visibility_timeout_s} s is below {VISIBILITY_FACTOR} x worker_timeout_s "
                f"({VISIBILITY_FACTOR * self.worker_timeout_s} s)",
            )
        if self.visibility_timeout_s > 43200:
            raise InfraConfigError("queue_visibility_timeout_s", "SQS allows at most 43200 s")
        if not MAX_MODEL_ATTEMPTS < self.max_receive_count <= 1000:
            raise InfraConfigError(
                "max_receive_count",
                f"{self.max_receive_count} not in {MAX_MODEL_ATTEMPTS + 1}..1000 (each deferred "
                f"model retry of an async request is one more delivery)",
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise InfraConfigError(
                "log_retention_days", f"{self.log_retention_days} is not a CloudWatch value"
            )

    @property
    def visibility_timeout_s(self) -> int:
        if self.queue_visibility_timeout_s is None:
            return VISIBILITY_FACTOR * self.worker_timeout_s
        return self.queue_visibility_timeout_s


def code_archive(code_root: str, packages: Sequence[str]) -> pulumi.AssetArchive:
    """The Lambda bundle: each package directory at the archive root (importable as-is)."""
    return pulumi.AssetArchive(
        {package: pulumi.FileArchive(str(Path(code_root) / package)) for package in packages}
    )


@dataclass(frozen=True)
class _Function:
    function: aws.lambda_.Function
    role: aws.iam.Role


class ServerlessControlPlane(pulumi.ComponentResource):
    api_url: pulumi.Output[str]
    metadata_table_name: pulumi.Output[str]
    metadata_table_arn: pulumi.Output[str]
    queue_urls: dict[int, pulumi.Output[str]]  # async requests, by priority
    dlq_urls: dict[int, pulumi.Output[str]]
    async_api_key_secret_arn: pulumi.Output[str]
    reconciler_role_arn: pulumi.Output[str]
    secrets_kms_key_arn: pulumi.Output[str]
    internal_token_secret_arn: pulumi.Output[str]
    function_names: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        args: ServerlessControlPlaneArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("plinth:control_plane:ServerlessControlPlane", name, None, opts)
        self._name, self._args = name, args
        self._tags = args.tags.aws("control-plane")
        # TTL: the load reports the autoscaler reads are items of this table that expire.
        metadata = self._table(
            "metadata",
            hash_key="tbl",
            range_key="key",
            ttl_attribute=LOAD_REPORT_TTL_ATTRIBUTE,
            index=METADATA_INDEX,
        )
        requests = self._table("async-requests", hash_key="request_id", ttl_attribute="expires_at")
        pairs = {
            priority: self._queue_pair(f"{args.queue_name}-p{priority}", args.visibility_timeout_s)
            for priority in ASYNC_PRIORITIES
        }
        queues = [queue for _, queue in pairs.values()]
        extra = [self._queue_pair(name, EXTRA_QUEUE_VISIBILITY_S)[1] for name in args.extra_queues]
        code = code_archive(args.code_root, args.code_packages)
        secrets_key = self._secrets_key()
        api_key_secret = self._async_api_key_secret()
        internal_token = self._internal_token()
        env = {
            **self._environment(metadata, secrets_key),
            # Read by the API at cold start (lambdas/_settings.py); the value is not in env.
            "PLINTH_INTERNAL_TOKEN_SECRET_ID": internal_token.arn,
        }
        statements = function_statements(
            args, [metadata.arn, requests.arn], queues, extra, secrets_key, internal_token.arn
        )
        statements["worker"].append(
            Statement(("secretsmanager:GetSecretValue",), [api_key_secret.arn], sid="ApiKey")
        )
        functions = {
            role: self._function(
                role,
                handler,
                getattr(args, timeout_field),
                code,
                {**env, **(self._worker_environment(api_key_secret) if role == "worker" else {})},
                statements[role],
            )
            for role, (handler, timeout_field) in HANDLERS.items()
        }
        api, worker, reconciler = functions["api"], functions["worker"], functions["reconciler"]
        for priority, queue in zip(ASYNC_PRIORITIES, queues, strict=True):
            self._worker_trigger(worker, queue, priority)
        self._schedule(reconciler)
        http_api = self._http_api(api)

        self.api_url = http_api.api_endpoint
        self.metadata_table_name = metadata.name
        self.metadata_table_arn = metadata.arn
        self.queue_urls = {priority: queue.url for priority, (_, queue) in pairs.items()}
        self.dlq_urls = {priority: dlq.url for priority, (dlq, _) in pairs.items()}
        self.async_api_key_secret_arn = api_key_secret.arn
        self.reconciler_role_arn = reconciler.role.arn
        self.secrets_kms_key_arn = secrets_key.arn
        self.internal_token_secret_arn = internal_token.arn
        self.function_names = {
            "api": api.function.name,
            "worker": worker.function.name,
            "reconciler": reconciler.function.name,
        }
        self.register_outputs(
            {
                "api_url": self.api_url,
                "metadata_table_name": self.metadata_table_name,
                "queue_urls": {str(p): url for p, url in self.queue_urls.items()},
                "reconciler_role_arn": self.reconciler_role_arn,
                "secrets_kms_key_arn": self.secrets_kms_key_arn,
                "internal_token_secret_arn": self.internal_token_secret_arn,
            }
        )

    def _table(
        self,
        suffix: str,
        hash_key: str,
        range_key: str | None = None,
        ttl_attribute: str | None = None,
        index: tuple[str, str, str] | None = None,  # (name, hash key, range key)
    ) -> aws.dynamodb.Table:
        keys = [hash_key, *([range_key] if range_key else []), *(index[1:] if index else ())]
        attributes = [aws.dynamodb.TableAttributeArgs(name=key, type="S") for key in keys]
        indexes = None
        if index is not None:
            indexes = [
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index[0],
                    hash_key=index[1],
                    range_key=index[2],
                    projection_type="ALL",
                )
            ]
        return aws.dynamodb.Table(
            f"{self._name}-{suffix}",
            name=f"{self._name}-{suffix}",
            billing_mode="PAY_PER_REQUEST",
            hash_key=hash_key,
            range_key=range_key,
            attributes=attributes,
            global_secondary_indexes=indexes,
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            ttl=(
                aws.dynamodb.TableTtlArgs(attribute_name=ttl_attribute, enabled=True)
                if ttl_attribute
                else None
            ),
            deletion_protection_enabled=True,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _queue_pair(self, logical: str, visibility_s: int) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        """Queue ``<name>-<logical>`` and its DLQ, named as control_plane's SqsQueue expects."""
        args, child = self._args, pulumi.ResourceOptions(parent=self)
        queue_name = f"{self._name}-{logical}"
        suffix = f"-{logical}"
        dlq = aws.sqs.Queue(
            f"{self._name}{suffix}-dlq",
            name=f"{queue_name}-dlq",
            message_retention_seconds=14 * 24 * 3600,
            sqs_managed_sse_enabled=True,
            tags=self._tags,
            opts=child,
        )
        queue = aws.sqs.Queue(
            f"{self._name}{suffix}-queue",
            name=queue_name,
            visibility_timeout_seconds=visibility_s,
            message_retention_seconds=4 * 24 * 3600,
            receive_wait_time_seconds=20,
            sqs_managed_sse_enabled=True,
            redrive_policy=dlq.arn.apply(
                lambda arn: json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": args.max_receive_count}
                )
            ),
            tags=self._tags,
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{self._name}{suffix}-dlq",
            queue_url=dlq.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        return dlq, queue

    def _async_api_key_secret(self) -> aws.secretsmanager.Secret:
        """The key the worker calls models with: a credential, so Secrets Manager (read by
        the worker at start, PLINTH_ASYNC_API_KEY_SECRET_ARN), never the Lambda env."""
        child = pulumi.ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(
            f"{self._name}-async-api-key",
            description=f"Plinth {self._name}: API key the async worker calls models with",
            tags=self._tags,
            opts=child,
        )
        if self._args.async_api_key is not None:
            aws.secretsmanager.SecretVersion(
                f"{self._name}-async-api-key",
                secret_id=secret.id,
                secret_string=pulumi.Output.secret(self._args.async_api_key),
                opts=child,
            )
        return secret

    def _worker_environment(
        self, api_key_secret: aws.secretsmanager.Secret
    ) -> dict[str, pulumi.Input[str]]:
        env: dict[str, pulumi.Input[str]] = {
            "PLINTH_ASYNC_API_KEY_SECRET_ARN": api_key_secret.arn,
            "PLINTH_ASYNC_BUSY_REQUEUE_MAX_S": str(WORKER_BUSY_REQUEUE_MAX_S),
        }
        if self._args.gateway_url is not None:
            env["PLINTH_GATEWAY_URL"] = self._args.gateway_url
        return env

    def _internal_token(self) -> aws.secretsmanager.Secret:
        """The token gateways present to the API, held in Secrets Manager.

        Its first value is made here; later runs leave it alone (``ignore_changes``), so a
        ``pulumi up`` never rotates it under running gateways. Rotate with
        ``put-secret-value``, then re-run the region stacks (their gateways' Secret) and let
        API sandboxes recycle.
        """
        secret = aws.secretsmanager.Secret(
            f"{self._name}-internal-token",
            name_prefix=f"{self._name}-internal-token-",
            description="Plinth: the internal token gateways present to the control plane",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.secretsmanager.SecretVersion(
            f"{self._name}-internal-token",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret("int_" + secrets.token_urlsafe(32)),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretString"]),
        )
        return secret

    def _secrets_key(self) -> aws.kms.Key:
        """The KEK of the secrets in the metadata table (envelope encryption, one data key
        per write). KMS rotates it yearly under the same ARN; old values still decrypt."""
        return aws.kms.Key(
            f"{self._name}-secrets",
            description=f"Plinth {self._name}: wraps the data keys of stored secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _environment(
        self, metadata: aws.dynamodb.Table, secrets_key: aws.kms.Key
    ) -> dict[str, pulumi.Input[str]]:
        # Names read by control_plane.settings.Settings.from_env.
        return {
            "PLINTH_SECRETS_KEK": "aws-kms",
            "PLINTH_SECRETS_KMS_KEY_ID": secrets_key.arn,
            "PLINTH_STORE": "dynamodb",
            "PLINTH_DYNAMODB_TABLE": metadata.name,
            "PLINTH_QUEUE": "sqs",
            "PLINTH_SQS_QUEUE_PREFIX": f"{self._name}-",
            "PLINTH_BLOB": "s3",
            "PLINTH_BLOB_BUCKET": self._args.blob_bucket_name,
            "PLINTH_AWS_REGION": self._args.tags.region,
            "PLINTH_STATE_DIR": "/tmp/plinth",
            "PLINTH_RUN_BACKGROUND_WORKERS": "false",
            "PLINTH_CLUSTER": "none",
            "PLINTH_WEIGHTS_ORIGIN_URL": self._args.weights_origin_url,
        }

    def _function(
        self,
        role_name: str,
        handler: str,
        timeout_s: int,
        code: pulumi.Archive,
        env: dict[str, pulumi.Input[str]],
        statements: list[Statement],
    ) -> _Function:
        args = self._args
        function_name = f"{self._name}-{role_name}"
        log_group, role, role_policy = self._execution_role(function_name, statements)
        function = aws.lambda_.Function(
            function_name,
            name=function_name,
            role=role.arn,
            runtime=args.runtime,
            handler=handler,
            code=code,
            timeout=timeout_s,
            memory_size=1024,
            layers=list(args.layer_arns) or None,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    **env,
                    "PLINTH_CLUSTER": "kubernetes" if role_name == "reconciler" else "none",
                    **(self._cluster_environment() if role_name == "reconciler" else {}),
                }
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=log_group.name
            ),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="PassThrough"),
            tags={**self._tags, "function": role_name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, log_group]),
        )
        return _Function(function, role)

    def _cluster_environment(self) -> dict[str, pulumi.Input[str]]:
        """How the reconciler reaches its cluster: endpoint, CA, EKS tokens from its role."""
        args = self._args
        if args.cluster_name is None or args.cluster_endpoint is None:
            return {}
        return {
            "PLINTH_K8S_AUTH": "eks",
            "PLINTH_K8S_CLUSTER_NAME": args.cluster_name,
            "PLINTH_K8S_ENDPOINT": args.cluster_endpoint,
            "PLINTH_K8S_CA_DATA": args.cluster_ca_data or "",
        }

    def _execution_role(
        self, function_name: str, statements: list[Statement]
    ) -> tuple[aws.cloudwatch.LogGroup, aws.iam.Role, aws.iam.RolePolicy]:
        """The function's log group (retention set) and a role reaching only ``statements``."""
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            function_name,
            name=f"/aws/lambda/{function_name}",
            retention_in_days=self._args.log_retention_days,
            tags=self._tags,
            opts=child,
        )
        role = aws.iam.Role(
            function_name,
            assume_role_policy=service_trust_policy("lambda.amazonaws.com"),
            tags=self._tags,
            opts=child,
        )
        log_statement = Statement(
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            [log_group.arn.apply(lambda arn: f"{arn}:*")],
        )
        role_policy = aws.iam.RolePolicy(
            function_name,
            role=role.id,
            policy=policy_json([log_statement, *statements]),
            opts=child,
        )
        return log_group, role, role_policy

    def _worker_trigger(self, worker: _Function, queue: aws.sqs.Queue, priority: int) -> None:
        aws.lambda_.EventSourceMapping(
            f"{self._name}-worker-sqs-p{priority}",
            event_source_arn=queue.arn,
            function_name=worker.function.arn,
            batch_size=self._args.worker_batch_size,
            maximum_batching_window_in_seconds=1,
            function_response_types=["ReportBatchItemFailures"],
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _schedule(self, reconciler: _Function) -> None:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{self._name}-scheduler",
            assume_role_policy=service_trust_policy("scheduler.amazonaws.com"),
            tags=self._tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{self._name}-scheduler",
            role=role.id,
            policy=policy_json([Statement(("lambda:InvokeFunction",), [reconciler.function.arn])]),
            opts=child,
        )
        aws.scheduler.Schedule(
            f"{self._name}-reconcile",
            schedule_expression=self._args.reconcile_schedule,
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=reconciler.function.arn,
                role_arn=role.arn,
                input=json.dumps({"source": "plinth.reconcile"}),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=0,  # the next tick is the retry
                    maximum_event_age_in_seconds=60,
                ),
            ),
            opts=child,
        )

    def _http_api(self, api: _Function) -> aws.apigatewayv2.Api:
        child = pulumi.ResourceOptions(parent=self)
        http_api = aws.apigatewayv2.Api(
            f"{self._name}-http", protocol_type="HTTP", tags=self._tags, opts=child
        )
        integration = aws.apigatewayv2.Integration(
            f"{self._name}-api",
            api_id=http_api.id,
            integration_type="AWS_PROXY",
            integration_uri=api.function.arn,
            integration_method="POST",
            payload_format_version="2.0",
            timeout_milliseconds=self._args.api_timeout_s * 1000,
            opts=child,
        )
        aws.apigatewayv2.Route(
            f"{self._name}-default",
            api_id=http_api.id,
            route_key="$default",
            target=integration.id.apply(lambda i: f"integrations/{i}"),
            opts=child,
        )
        self._default_stage(http_api)
        aws.lambda_.Permission(
            f"{self._name}-api-invoke",
            action="lambda:InvokeFunction",
            function=api.function.name,
            principal="apigateway.amazonaws.com",
            source_arn=http_api.execution_arn.apply(lambda arn: f"{arn}/*/*"),
            opts=child,
        )
        return http_api

    def _default_stage(self, http_api: aws.apigatewayv2.Api) -> None:
        child = pulumi.ResourceOptions(parent=self)
        access_logs = aws.cloudwatch.LogGroup(
            f"{self._name}-http-access",
            name=f"/plinth/{self._name}/http-access",
            retention_in_days=self._args.log_retention_days,
            tags=self._tags,
            opts=child,
        )
        aws.apigatewayv2.Stage(
            f"{self._name}-default",
            api_id=http_api.id,
            name="$default",
            auto_deploy=True,
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn,
                # No query strings or headers: they can carry API keys.
                format=json.dumps(
                    {
                        "requestId": "$context.requestId",
                        "routeKey": "$context.routeKey",
                        "status": "$context.status",
                        "latency": "$context.integrationLatency",
                    }
                ),
            ),
            tags=self._tags,
            opts=child,
        )
