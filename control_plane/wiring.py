"""Builds the control plane from settings: adapters, domain services, background workers.

Adapters are created lazily on first use, so an app whose lifespan never runs (the
Lambda handler: ``Mangum(create_app(settings), lifespan="off")``) still works, and an
API process never starts a cluster driver it does not need.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from control_plane.adapters.prometheus_metrics import PrometheusPlatformMetrics
from control_plane.domain.api_keys import ApiKeyService
from control_plane.domain.archive_uploads import ArchiveUploads, UploadLimits
from control_plane.domain.archives import ArchiveService
from control_plane.domain.async_processing import AsyncProcessor, WebhookPolicy
from control_plane.domain.async_requests import AsyncRequestService
from control_plane.domain.async_webhooks import WebhookSecretService, resolve_host
from control_plane.domain.autoscaler import Autoscaler
from control_plane.domain.build_log import read_build_log
from control_plane.domain.cluster_fleet import ClusterFleet, DriverFactory
from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.cluster_routes import ClusterRoutes
from control_plane.domain.deletion import DeletionService
from control_plane.domain.deployments import DeploymentService
from control_plane.domain.envelope import SecretEnvelope
from control_plane.domain.environments import EnvironmentService
from control_plane.domain.pipeline import BuildWorker, EnvironmentBuilderLike
from control_plane.domain.placement import PlacementPolicy
from control_plane.domain.placement_recorder import PlacementRecorder
from control_plane.domain.reconcile_policy import Decision, ReconcilerPolicy
from control_plane.domain.reconciler import Reconciler
from control_plane.domain.replica_counts import replica_counts
from control_plane.domain.repository import Repository
from control_plane.domain.routing import RoutingTableService
from control_plane.domain.secrets import SecretService
from control_plane.exceptions import AdapterUnavailable, SettingsError
from control_plane.ports.blob import BlobStore
from control_plane.ports.cluster import ClusterDriver
from control_plane.ports.images import ImageBuilder
from control_plane.ports.load_reports import LoadReportStore
from control_plane.ports.queue import Queue
from control_plane.ports.secret_keys import DataKey, KeyEncryptionKeys
from control_plane.ports.store import MetadataStore
from control_plane.settings import Settings
from control_plane.weights.build import mirror_for_build
from control_plane.weights.delivery import weights_delivery_for
from plinth.spec.honoured import KUBERNETES_RUNTIME, PROCESS_RUNTIME

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0


class Platform:
    """The control plane's object graph. Construct, use, ``close()``.

    Pass adapters to override what the settings would build (tests, Lambda handlers).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: MetadataStore | None = None,
        blobs: BlobStore | None = None,
        queue: Queue | None = None,
        driver: ClusterDriver | None = None,
        builder: EnvironmentBuilderLike | None = None,
        secret_keys: KeyEncryptionKeys | None = None,
        clock: Callable[[], float] = time.time,
        cluster_drivers: DriverFactory | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._overrides: dict[str, Any] = {
            "store": store,
            "blobs": blobs,
            "queue": queue,
            "driver": driver,
            "builder": builder,
            "secret_keys": secret_keys,
            "cluster_drivers": cluster_drivers,
        }
        self._build_lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- adapters (lazy) --------------------------------------------------------------
    @cached_property
    def store(self) -> MetadataStore:
        with self._build_lock:
            return self._overrides["store"] or _build_store(self.settings)

    @cached_property
    def blobs(self) -> BlobStore:
        with self._build_lock:
            return self._overrides["blobs"] or _build_blobs(self.settings)

    @cached_property
    def queue(self) -> Queue:
        with self._build_lock:
            return self._overrides["queue"] or _build_queue(self.settings)

    @cached_property
    def driver(self) -> ClusterDriver:
        with self._build_lock:
            if self._overrides["driver"] is not None:
                return self._overrides["driver"]  # type: ignore[no-any-return]
            if self.settings.cluster_kind == "clusters":
                return self.fleet
            return _build_driver(self.settings)

    @cached_property
    def fleet(self) -> ClusterFleet:
        """PLINTH_CLUSTER=clusters: a driver per registered cluster (docs/multi-cluster.md)."""
        with self._build_lock:
            build = self._overrides["cluster_drivers"]
            if build is None:
                from control_plane.adapters.cluster_drivers import ClusterDriverFactory

                build = ClusterDriverFactory(self.settings)
            return ClusterFleet(
                ClusterRegistry(self.store),
                build,
                self.clock,
                call_timeout_s=self.settings.cluster_call_timeout_s,
            )

    @cached_property
    def secret_keys(self) -> KeyEncryptionKeys:
        with self._build_lock:
            return self._overrides["secret_keys"] or _build_secret_keys(self.settings)

    @cached_property
    def builder(self) -> EnvironmentBuilderLike:
        with self._build_lock:
            if self._overrides["builder"] is not None:
                return self._overrides["builder"]  # type: ignore[no-any-return]
            from control_plane.adapters.builder import EnvironmentBuilder

            return EnvironmentBuilder(self.settings.state_dir / "envs")

    @property
    def builds_images(self) -> bool:
        return self.settings.runtime == "container"

    @cached_property
    def image_builder(self) -> ImageBuilder:
        with self._build_lock:
            from control_plane.adapters.buildah_images import BuildahImageBuilder

            cache = self.settings.image_cache_dir or self.settings.state_dir / "image-cache"
            registry = self.settings.registry or ""  # Settings refuses container without it
            return BuildahImageBuilder(registry, self.settings.state_dir / "image-builds", cache)

    @cached_property
    def load_reports(self) -> LoadReportStore:
        with self._build_lock:
            return _build_load_reports(self.settings)

    # -- domain services --------------------------------------------------------------
    @cached_property
    def repo(self) -> Repository:
        return Repository(self.store)

    @cached_property
    def api_keys(self) -> ApiKeyService:
        return ApiKeyService(self.store, self.clock, bootstrap_key=self.settings.bootstrap_api_key)

    @cached_property
    def secrets(self) -> SecretService:
        # The KEK adapter is built on the first seal or open, so a deployment with no
        # secrets never needs one (nor its settings).
        keys = _KeysOnFirstUse(lambda: self.secret_keys)
        return SecretService(self.store, self.clock, SecretEnvelope(keys))

    @cached_property
    def archives(self) -> ArchiveService:
        tmp_dir = self.settings.state_dir / "tmp"
        return ArchiveService(self.blobs, tmp_dir, self.settings.max_archive_bytes)

    @cached_property
    def archive_uploads(self) -> ArchiveUploads:
        limits = UploadLimits(
            max_bytes=self.settings.max_archive_bytes,
            multipart_threshold_bytes=self.settings.archive_multipart_threshold_bytes,
            part_bytes=self.settings.archive_part_bytes,
        )
        return ArchiveUploads(self.blobs, limits)

    @cached_property
    def deployments(self) -> DeploymentService:
        return DeploymentService(
            self.repo,
            self.archives,
            self.queue,
            self.clock,
            builds_images=self.builds_images,
            runtime=replica_runtime(self.settings),
        )

    @cached_property
    def deletion(self) -> DeletionService:
        return DeletionService(
            self.repo,
            self.blobs,
            lambda: self.driver,
            self.clock,
            builds_dir=self.settings.state_dir / "builds",
        )

    @cached_property
    def environments(self) -> EnvironmentService:
        return EnvironmentService(
            self.repo,
            self.clock,
            promotion_timeout_s=self.settings.promotion_timeout_s,
            promotion_drain_s=self.settings.promotion_drain_s,
        )

    @cached_property
    def routing(self) -> RoutingTableService:
        clusters = None
        if self.settings.cluster_kind == "clusters":
            clusters = ClusterRoutes(
                self.store,
                self.clock,
                heartbeat_timeout_s=self.settings.placement_heartbeat_timeout_s,
            )
        return RoutingTableService(self.repo, self.api_keys.hashes, clusters)

    @cached_property
    def metrics(self) -> PrometheusPlatformMetrics:
        # Replica counts read the store only when scraped (no adapter is built before then).
        return PrometheusPlatformMetrics(lambda: replica_counts(self.repo))

    @cached_property
    def build_worker(self) -> BuildWorker:
        return BuildWorker(
            self.repo,
            self.blobs,
            self.queue,
            lambda: self.builder,
            self.settings.state_dir / "builds",
            self.clock,
            secret_values=self.secrets.values_for,
            mirror_weights=mirror_for_build,
            metrics=self.metrics,
            image_builder=(lambda: self.image_builder) if self.builds_images else None,
        )

    @cached_property
    def autoscaler(self) -> Autoscaler:
        return Autoscaler(self.repo, self.load_reports, self.clock)

    @cached_property
    def reconciler(self) -> Reconciler:
        policy = ReconcilerPolicy(load_timeout_s=self.settings.load_timeout_s)
        return Reconciler(
            self.repo,
            self.driver,
            self.environments,
            self.secrets,
            self.blobs,
            policy,
            self.clock,
            weights=weights_delivery_for(
                self.settings, origin_url=self.settings.weights_origin_url
            ),
            metrics=self.metrics,
            placement=PlacementRecorder(
                ClusterRegistry(self.store), self.store, self.placement_policy, self.clock
            ),
            autoscaler=self.autoscaler,
            fleet=self.fleet if self.settings.cluster_kind == "clusters" else None,
        )

    @cached_property
    def placement_policy(self) -> PlacementPolicy:
        return PlacementPolicy(
            heartbeat_timeout_s=self.settings.placement_heartbeat_timeout_s,
            recovery_hold_s=self.settings.placement_recovery_hold_s,
        )

    @cached_property
    def async_requests(self) -> AsyncRequestService:
        return AsyncRequestService(
            self.store, self.queue, self.clock, result_ttl_s=self.settings.async_result_ttl_s
        )

    @cached_property
    def webhook_secrets(self) -> WebhookSecretService:
        return WebhookSecretService(
            self.store, self.clock, rotation_s=self.settings.webhook_secret_rotation_s
        )

    @cached_property
    def async_processor(self) -> AsyncProcessor:
        from control_plane.adapters.async_http import GatewayInvoker, post_webhook

        settings = self.settings
        api_key = settings.async_api_key
        if api_key is None and settings.async_api_key_secret_arn:
            from control_plane.adapters.aws_secret_value import read_secret_string

            api_key = read_secret_string(settings.async_api_key_secret_arn, settings.aws_region)
        invoker = GatewayInvoker(settings.gateway_url, api_key or settings.bootstrap_api_key)
        policy = WebhookPolicy(
            attempts=settings.async_webhook_attempts,
            initial_delay_s=settings.async_webhook_initial_delay_s,
            allow_private=settings.async_allow_private_webhooks,
        )
        return AsyncProcessor(
            self.async_requests,
            self.webhook_secrets,
            invoker,
            post_webhook,
            webhooks=policy,
            resolve=resolve_host,
            clock=self.clock,
            busy_requeue_max_s=settings.async_busy_requeue_max_s,
            defer_retries=settings.async_defer_retries,
        )

    # -- operations -------------------------------------------------------------------
    def ensure_admin_key(self) -> str | None:
        """Store the bootstrap key / create the first key; returns the key if it stored one."""
        return self.api_keys.ensure_admin_key()

    def deployment_logs(self, model_id: str, deployment_id: str) -> dict[str, list[str]]:
        self.repo.get_deployment(model_id, deployment_id)  # NotFound for unknown ids
        build = read_build_log(self.blobs, deployment_id)
        replicas: list[str] = []
        if self.settings.cluster_kind != "none":
            try:
                replicas = self.driver.logs(deployment_id)
            except Exception:
                logger.exception("cannot read replica logs of %s", deployment_id)
        return {"build": build, "replicas": replicas}

    def reconcile_once(self) -> list[Decision]:
        return self.reconciler.tick()

    def process_builds_once(self) -> bool:
        return self.build_worker.run_once()

    def start_background_workers(self) -> None:
        """Start the build worker and the reconciler loop threads (idempotent)."""
        if self._threads:
            return
        self._stop.clear()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        workers: list[tuple[str, Callable[[threading.Event, float], None], float]] = [
            ("plinth-builder", self.build_worker.run, self.settings.build_poll_interval_s)
        ]
        if self.settings.cluster_kind != "none":  # no driver: another process reconciles
            workers.append(
                ("plinth-reconciler", self.reconciler.run, self.settings.reconcile_interval_s)
            )
        for name, target, interval in workers:
            thread = threading.Thread(
                target=target, args=(self._stop, interval), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop_background_workers(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=_STOP_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("%s did not stop within %.0f s", thread.name, _STOP_TIMEOUT_S)
        self._threads = []

    def close(self) -> None:
        """Stop workers, then replicas (driver) and the adapters this platform built."""
        if self._closed:
            return
        self._closed = True
        self.stop_background_workers()
        for name in ("driver", "queue", "load_reports", "store"):
            if name in self.__dict__:  # only what was actually built
                try:
                    self.__dict__[name].close()
                except Exception:
                    logger.exception("closing %s failed", name)


class _KeysOnFirstUse:
    """A :class:`KeyEncryptionKeys` that asks ``build`` for the adapter when first used."""

    def __init__(self, build: Callable[[], KeyEncryptionKeys]) -> None:
        self._build = build

    def current_kek_id(self) -> str:
        return self._build().current_kek_id()

    def new_data_key(self) -> DataKey:
        return self._build().new_data_key()

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        return self._build().unwrap(wrapped, kek_id)


def _build_store(settings: Settings) -> MetadataStore:
    if settings.store_kind == "sqlite":
        from control_plane.adapters.sqlite_store import SqliteMetadataStore

        settings.state_dir.mkdir(parents=True, exist_ok=True)
        return SqliteMetadataStore(settings.database_path)
    return _import_adapter(
        "control_plane.adapters.dynamodb_store", "DynamoDbMetadataStore", settings
    )


def _build_load_reports(settings: Settings) -> LoadReportStore:
    """Next to the metadata: the same SQLite file, or the same DynamoDB table (TTL items)."""
    if settings.store_kind == "sqlite":
        from control_plane.adapters.sqlite_load_reports import SqliteLoadReportStore

        settings.state_dir.mkdir(parents=True, exist_ok=True)
        return SqliteLoadReportStore(settings.database_path)
    if not settings.dynamodb_table:
        raise SettingsError("PLINTH_STORE=dynamodb needs PLINTH_DYNAMODB_TABLE")
    import boto3

    from control_plane.adapters.dynamodb_load_reports import DynamoDbLoadReportStore

    client = boto3.client("dynamodb", region_name=settings.aws_region)
    return DynamoDbLoadReportStore(settings.dynamodb_table, client)


def _build_blobs(settings: Settings) -> BlobStore:
    if settings.blob_kind == "directory":
        from control_plane.adapters.dir_blob import DirectoryBlobStore

        root = settings.state_dir / "blobs"
        root.mkdir(parents=True, exist_ok=True)
        return DirectoryBlobStore(root)
    if not settings.blob_bucket:
        raise SettingsError(f"PLINTH_BLOB={settings.blob_kind} needs PLINTH_BLOB_BUCKET")
    if settings.blob_kind == "s3":
        from control_plane.adapters.s3_blob import S3BlobStore

        return S3BlobStore(settings.blob_bucket)
    from control_plane.adapters.gcs_blob import GCSBlobStore

    return GCSBlobStore(settings.blob_bucket)


def _build_queue(settings: Settings) -> Queue:
    if settings.queue_kind == "sqlite":
        from control_plane.adapters.sqlite_queue import SqliteQueue

        settings.state_dir.mkdir(parents=True, exist_ok=True)
        return SqliteQueue(settings.database_path)
    return _import_adapter("control_plane.adapters.sqs_queue", "SqsQueue", settings)


def replica_runtime(settings: Settings) -> str:
    """What runs replicas (``plinth.spec.honoured``): the honoured config fields depend on it."""
    return PROCESS_RUNTIME if settings.cluster_kind == "local" else KUBERNETES_RUNTIME


def _build_driver(settings: Settings) -> ClusterDriver:
    if settings.cluster_kind == "local":
        from control_plane.adapters.local_cluster import LocalProcessDriver

        # A draining replica stops no sooner than one reconcile tick (the routing table without
        # it) plus a gateway poll (1 s) and a margin: no gateway sends it anything new then.
        return LocalProcessDriver(
            settings.state_dir,
            drain_timeout_s=settings.drain_timeout_s,
            drain_settle_s=settings.reconcile_interval_s + 2.0,
        )
    if settings.cluster_kind == "kubernetes":
        from control_plane.adapters.k8s_auth import named_cluster_client
        from control_plane.adapters.k8s_cluster import KubernetesDriver, KubernetesOptions

        # A cluster the settings name (endpoint + CA + token provider), else in-cluster config
        # or the kubeconfig.
        api_client = named_cluster_client(settings)
        options = KubernetesOptions(drain_timeout_s=math.ceil(settings.drain_timeout_s))
        if settings.k8s_image:
            return KubernetesDriver(
                settings.k8s_namespace, api_client, image=settings.k8s_image, options=options
            )
        return KubernetesDriver(settings.k8s_namespace, api_client, options=options)
    raise AdapterUnavailable("PLINTH_CLUSTER=none: this process has no cluster driver")


def _build_secret_keys(settings: Settings) -> KeyEncryptionKeys:
    if settings.secrets_kek == "aws-kms":
        return _import_adapter(  # type: ignore[no-any-return]
            "control_plane.adapters.aws_kms_kek", "AwsKmsKeys", settings
        )
    if settings.store_kind != "sqlite":
        # A shared store read by many processes (Lambdas) with a key file in one process's
        # state dir: the other processes could not decrypt, and the key dies with the sandbox.
        raise SettingsError(
            f"PLINTH_STORE={settings.store_kind} needs PLINTH_SECRETS_KEK=aws-kms"
            " (a local key file would not be shared with the other control-plane processes)"
        )
    from control_plane.adapters.local_kek import LocalKeyFile

    return LocalKeyFile(settings.secrets_key_file)


def _import_adapter(module: str, name: str, settings: Settings) -> Any:
    """Cloud adapters build themselves from settings: ``<Adapter>.from_settings(settings)``."""
    import importlib

    try:
        adapter = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise AdapterUnavailable(f"{module}.{name} is not available in this installation") from None
    if not hasattr(adapter, "from_settings"):
        raise AdapterUnavailable(f"{module}.{name} has no from_settings(settings) constructor")
    return adapter.from_settings(settings)
