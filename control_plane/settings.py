"""Control-plane settings, read once from ``PLINTH_*`` environment variables.

Everything else receives a :class:`Settings` object; nothing below reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.exceptions import SettingsError

STORE_KINDS = ("sqlite", "dynamodb")
BLOB_KINDS = ("directory", "s3", "gcs")
QUEUE_KINDS = ("sqlite", "sqs")
# "clusters": every registered cluster through its own driver (docs/multi-cluster.md).
CLUSTER_KINDS = ("local", "kubernetes", "none", "clusters")
SECRETS_KEK_KINDS = ("local", "aws-kms")
K8S_AUTH_KINDS = ("eks", "gke", "none")
RUNTIME_KINDS = ("process", "container")


@dataclass(frozen=True)
class Settings:
    """Where state lives, which adapters to build, and how the background loops behave."""

    state_dir: Path = field(default_factory=lambda: Path(".plinth"))
    store_kind: str = "sqlite"
    blob_kind: str = "directory"
    queue_kind: str = "sqlite"
    cluster_kind: str = "local"
    host: str = "127.0.0.1"
    port: int = 8800
    # Public URL of the gateway, printed to users next to model ids.
    gateway_url: str = "http://127.0.0.1:8801"
    # Shared secret gateways present to read the routing table and wake deployments.
    internal_token: str | None = field(default=None, repr=False)
    # A key stored at startup if absent (plinth up passes the one it shows the user).
    bootstrap_api_key: str | None = field(default=None, repr=False)
    reconcile_interval_s: float = 1.0
    build_poll_interval_s: float = 0.5
    # A deployment that has no READY replica this long after it started deploying is FAILED.
    load_timeout_s: float = 900.0
    # A promotion lock older than this is considered abandoned (its holder crashed).
    promotion_timeout_s: float = 1800.0
    # A deployment replaced by a promotion keeps its replicas this long before it is scaled
    # to zero, so gateways polling the routing table never route to a stopping replica.
    promotion_drain_s: float = 10.0
    # A replica removed by a scale-down takes no new requests and is stopped once its in-flight
    # requests finished, or after this long (Kubernetes: its preStop hook's bound).
    drain_timeout_s: float = 30.0
    run_background_workers: bool = True
    max_archive_bytes: int = 2 << 30
    # Direct uploads (S3): one presigned PUT up to the threshold, presigned parts above it.
    archive_multipart_threshold_bytes: int = 64 << 20
    archive_part_bytes: int = 16 << 20
    # Cloud adapters (only read when the matching kind is chosen).
    blob_bucket: str | None = None
    aws_region: str | None = None
    dynamodb_table: str | None = None
    sqs_queue_prefix: str | None = None
    k8s_namespace: str = "plinth"
    k8s_image: str | None = None
    # A cluster named from outside it (a Lambda has no in-cluster account or kubeconfig):
    # its API endpoint, CA (base64 PEM) and how to get a token (eks | gke | none).
    k8s_endpoint: str | None = None
    k8s_ca_data: str | None = field(default=None, repr=False)
    k8s_auth: str = "none"
    k8s_cluster_name: str | None = None
    # How replicas reach the weights origin (``<control plane URL>/weights``) when they cannot
    # use PLINTH_HOST:PLINTH_PORT, e.g. pods reaching the control plane's in-cluster Service.
    weights_origin_url: str | None = None
    # Who wraps the data key of each stored secret: a 0600 key file under the state dir
    # (``local``), or the AWS KMS key PLINTH_SECRETS_KMS_KEY_ID names (``aws-kms``).
    secrets_kek: str = "local"
    secrets_kms_key_id: str | None = None
    # Async inference (docs/async.md). The worker calls models through the gateway with this
    # key (default: the bootstrap key); results are kept this long after a request finishes.
    async_api_key: str | None = None
    # Or the ARN of the Secrets Manager secret holding it (the worker Lambda; read at start).
    async_api_key_secret_arn: str | None = None
    async_result_ttl_s: float = 3600.0
    async_max_payload_bytes: int = 256 * 1024
    # Loopback / private webhook targets (link-local and metadata addresses never are).
    async_allow_private_webhooks: bool = False
    async_webhook_attempts: int = 5
    async_webhook_initial_delay_s: float = 1.0
    # A request that met a full replica is queued again with a delay doubling up to this
    # (per request). 0 in `plinth up`, whose worker threads back off instead; the worker
    # Lambda (no threads to pause) sets it so a saturated deployment is not polled hot.
    async_busy_requeue_max_s: float = 0.0
    # Set by the worker Lambda (not read from the environment): between model attempts it
    # hands the message back with a visibility delay instead of sleeping.
    async_defer_retries: bool = False
    webhook_secret_rotation_s: float = 24 * 3600.0
    # Multi-cluster (PLINTH_CLUSTER=clusters): a cluster whose gateways have not sent a
    # heartbeat this long is unhealthy; one back must stay healthy this long before it gets
    # replicas again; one cluster's driver call is waited for at most this long per tick.
    placement_heartbeat_timeout_s: float = 30.0
    placement_recovery_hold_s: float = 120.0
    cluster_call_timeout_s: float = 5.0
    # How local replicas run: ``process`` (a venv per requirements, the fast default) or
    # ``container`` (every deployment built as an OCI image, pushed to ``registry`` by digest,
    # and run from the image pulled back; docs/images.md).
    runtime: str = "process"
    registry: str | None = None  # host:port of the OCI registry images are pushed to
    # Shared pip download cache and the base image's lock (default: <state dir>/image-cache).
    image_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        _check_choice("PLINTH_STORE", self.store_kind, STORE_KINDS)
        _check_choice("PLINTH_BLOB", self.blob_kind, BLOB_KINDS)
        _check_choice("PLINTH_QUEUE", self.queue_kind, QUEUE_KINDS)
        _check_choice("PLINTH_CLUSTER", self.cluster_kind, CLUSTER_KINDS)
        _check_choice("PLINTH_SECRETS_KEK", self.secrets_kek, SECRETS_KEK_KINDS)
        _check_choice("PLINTH_K8S_AUTH", self.k8s_auth, K8S_AUTH_KINDS)
        _check_choice("PLINTH_RUNTIME", self.runtime, RUNTIME_KINDS)
        if self.runtime == "container" and not self.registry:
            raise SettingsError("PLINTH_RUNTIME=container needs PLINTH_REGISTRY (host:port)")
        if self.reconcile_interval_s <= 0:
            raise SettingsError("PLINTH_RECONCILE_INTERVAL_S must be > 0")
        if self.build_poll_interval_s <= 0:
            raise SettingsError("PLINTH_BUILD_POLL_INTERVAL_S must be > 0")
        if not self.drain_timeout_s >= 0:  # also rejects NaN
            raise SettingsError(
                f"PLINTH_DRAIN_TIMEOUT_S={self.drain_timeout_s!r} must be >= 0 (seconds)"
            )
        for variable, seconds in (
            ("PLINTH_PLACEMENT_HEARTBEAT_TIMEOUT_S", self.placement_heartbeat_timeout_s),
            ("PLINTH_CLUSTER_CALL_TIMEOUT_S", self.cluster_call_timeout_s),
        ):
            if not seconds > 0:
                raise SettingsError(f"{variable}={seconds!r} must be > 0 (seconds)")
        if not self.placement_recovery_hold_s >= 0:
            raise SettingsError(
                f"PLINTH_PLACEMENT_RECOVERY_HOLD_S={self.placement_recovery_hold_s!r} must be >= 0"
            )
        if not self.promotion_drain_s >= 0:  # also rejects NaN
            raise SettingsError(
                f"PLINTH_PROMOTION_DRAIN_S={self.promotion_drain_s!r} must be >= 0 (seconds)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``PLINTH_*`` variables (``environ`` defaults to ``os.environ``)."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        defaults = cls()
        return cls(
            state_dir=Path(reader.text("PLINTH_STATE_DIR", str(defaults.state_dir))),
            store_kind=reader.text("PLINTH_STORE", defaults.store_kind),
            blob_kind=reader.text("PLINTH_BLOB", defaults.blob_kind),
            queue_kind=reader.text("PLINTH_QUEUE", defaults.queue_kind),
            cluster_kind=reader.text("PLINTH_CLUSTER", defaults.cluster_kind),
            host=reader.text("PLINTH_HOST", defaults.host),
            port=reader.integer("PLINTH_PORT", defaults.port),
            gateway_url=reader.text("PLINTH_GATEWAY_URL", defaults.gateway_url),
            internal_token=reader.optional("PLINTH_INTERNAL_TOKEN"),
            bootstrap_api_key=reader.optional("PLINTH_BOOTSTRAP_API_KEY"),
            reconcile_interval_s=reader.number(
                "PLINTH_RECONCILE_INTERVAL_S", defaults.reconcile_interval_s
            ),
            build_poll_interval_s=reader.number(
                "PLINTH_BUILD_POLL_INTERVAL_S", defaults.build_poll_interval_s
            ),
            load_timeout_s=reader.number("PLINTH_LOAD_TIMEOUT_S", defaults.load_timeout_s),
            promotion_timeout_s=reader.number(
                "PLINTH_PROMOTION_TIMEOUT_S", defaults.promotion_timeout_s
            ),
            promotion_drain_s=reader.number("PLINTH_PROMOTION_DRAIN_S", defaults.promotion_drain_s),
            drain_timeout_s=reader.number("PLINTH_DRAIN_TIMEOUT_S", defaults.drain_timeout_s),
            run_background_workers=reader.boolean(
                "PLINTH_RUN_BACKGROUND_WORKERS", defaults.run_background_workers
            ),
            max_archive_bytes=reader.integer(
                "PLINTH_MAX_ARCHIVE_BYTES", defaults.max_archive_bytes
            ),
            archive_multipart_threshold_bytes=reader.integer(
                "PLINTH_ARCHIVE_MULTIPART_THRESHOLD_BYTES",
                defaults.archive_multipart_threshold_bytes,
            ),
            archive_part_bytes=reader.integer(
                "PLINTH_ARCHIVE_PART_BYTES", defaults.archive_part_bytes
            ),
            blob_bucket=reader.optional("PLINTH_BLOB_BUCKET"),
            aws_region=reader.optional("PLINTH_AWS_REGION"),
            dynamodb_table=reader.optional("PLINTH_DYNAMODB_TABLE"),
            sqs_queue_prefix=reader.optional("PLINTH_SQS_QUEUE_PREFIX"),
            k8s_namespace=reader.text("PLINTH_K8S_NAMESPACE", defaults.k8s_namespace),
            k8s_image=reader.optional("PLINTH_K8S_IMAGE"),
            k8s_endpoint=reader.optional("PLINTH_K8S_ENDPOINT"),
            k8s_ca_data=reader.optional("PLINTH_K8S_CA_DATA"),
            k8s_auth=reader.text("PLINTH_K8S_AUTH", defaults.k8s_auth),
            k8s_cluster_name=reader.optional("PLINTH_K8S_CLUSTER_NAME"),
            weights_origin_url=reader.optional("PLINTH_WEIGHTS_ORIGIN_URL"),
            secrets_kek=reader.text("PLINTH_SECRETS_KEK", defaults.secrets_kek),
            secrets_kms_key_id=reader.optional("PLINTH_SECRETS_KMS_KEY_ID"),
            **_async_settings(reader, defaults),
            **_placement_settings(reader, defaults),
            **_image_settings(reader, defaults),
        )

    @property
    def database_path(self) -> Path:
        return self.state_dir / "plinth.db"

    @property
    def secrets_key_file(self) -> Path:
        return self.state_dir / "secrets.kek"


def _image_settings(reader: _EnvReader, defaults: Settings) -> dict[str, Any]:
    cache = reader.optional("PLINTH_IMAGE_CACHE_DIR")
    return {
        "runtime": reader.text("PLINTH_RUNTIME", defaults.runtime),
        "registry": reader.optional("PLINTH_REGISTRY"),
        "image_cache_dir": Path(cache) if cache else None,
    }


def _async_settings(reader: _EnvReader, defaults: Settings) -> dict[str, Any]:
    return {
        "async_api_key": reader.optional("PLINTH_ASYNC_API_KEY"),
        "async_api_key_secret_arn": reader.optional("PLINTH_ASYNC_API_KEY_SECRET_ARN"),
        "async_result_ttl_s": reader.number(
            "PLINTH_ASYNC_RESULT_TTL_S", defaults.async_result_ttl_s
        ),
        "async_max_payload_bytes": reader.integer(
            "PLINTH_ASYNC_MAX_PAYLOAD_BYTES", defaults.async_max_payload_bytes
        ),
        "async_allow_private_webhooks": reader.boolean(
            "PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS", defaults.async_allow_private_webhooks
        ),
        "async_webhook_attempts": reader.integer(
            "PLINTH_ASYNC_WEBHOOK_ATTEMPTS", defaults.async_webhook_attempts
        ),
        "async_webhook_initial_delay_s": reader.number(
            "PLINTH_ASYNC_WEBHOOK_INITIAL_DELAY_S", defaults.async_webhook_initial_delay_s
        ),
        "webhook_secret_rotation_s": reader.number(
            "PLINTH_WEBHOOK_SECRET_ROTATION_S", defaults.webhook_secret_rotation_s
        ),
        "async_busy_requeue_max_s": reader.number(
            "PLINTH_ASYNC_BUSY_REQUEUE_MAX_S", defaults.async_busy_requeue_max_s
        ),
    }


def _placement_settings(reader: _EnvReader, defaults: Settings) -> dict[str, Any]:
    return {
        "placement_heartbeat_timeout_s": reader.number(
            "PLINTH_PLACEMENT_HEARTBEAT_TIMEOUT_S", defaults.placement_heartbeat_timeout_s
        ),
        "placement_recovery_hold_s": reader.number(
            "PLINTH_PLACEMENT_RECOVERY_HOLD_S", defaults.placement_recovery_hold_s
        ),
        "cluster_call_timeout_s": reader.number(
            "PLINTH_CLUSTER_CALL_TIMEOUT_S", defaults.cluster_call_timeout_s
        ),
    }


def _check_choice(variable: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{variable}={value!r} is not one of {', '.join(choices)}")


class _EnvReader:
    """Typed reads of environment variables; errors name the variable and the bad value."""

    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None

    def number(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() in self._TRUE:
            return True
        if raw.lower() in self._FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (use true/false)")
