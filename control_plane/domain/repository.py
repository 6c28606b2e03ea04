"""Typed access to the metadata store: one table per record kind.

Updates go through read-modify-write with the store's conditional put, retried on
:class:`VersionConflict`, so concurrent writers (API requests, the reconciler, the build
worker, other processes) never overwrite each other's changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from control_plane.domain.records import (
    DeploymentRecord,
    EnvironmentRecord,
    ModelRecord,
    deployment_key,
    environment_key,
)
from control_plane.exceptions import Conflict, NotFound
from control_plane.ports.store import ABSENT, MetadataStore, VersionConflict

MODELS = "models"
MODEL_NAMES = "model_names"
DEPLOYMENTS = "deployments"
ENVIRONMENTS = "environments"
SECRETS = "secrets"
API_KEYS = "api_keys"
OBSERVED_REPLICAS = "observed_replicas"
META = "meta"

_MAX_UPDATE_ATTEMPTS = 50

RecordT = TypeVar("RecordT", DeploymentRecord, EnvironmentRecord)


class Repository:
    """The domain's view of the metadata store."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    # -- models ---------------------------------------------------------------------------
    def get_model(self, model_id: str) -> ModelRecord:
        item = self.store.get(MODELS, model_id)
        if item is None:
            raise NotFound(f"model {model_id!r} not found")
        return ModelRecord.from_dict(item.value, item.version)

    def find_model_id_by_name(self, name: str) -> str | None:
        item = self.store.get(MODEL_NAMES, name)
        return None if item is None else str(item.value["model_id"])

    def claim_model_name(self, name: str, model_id: str) -> str:
        """Bind ``name`` to ``model_id`` unless another writer was first; returns the winner."""
        try:
            self.store.put(MODEL_NAMES, name, {"model_id": model_id}, expected_version=ABSENT)
            return model_id
        except VersionConflict:
            existing = self.find_model_id_by_name(name)
            if existing is None:
                raise Conflict(f"model name {name!r} is being created concurrently") from None
            return existing

    def create_model(self, model: ModelRecord) -> None:
        self.store.put(MODELS, model.id, model.to_dict(), expected_version=ABSENT)

    def list_models(self) -> list[ModelRecord]:
        return [ModelRecord.from_dict(i.value, i.version) for i in self.store.scan(MODELS)]

    def delete_model(self, model: ModelRecord) -> None:
        """Remove the model and its name (only if the name still points at it)."""
        self.store.delete(MODELS, model.id)
        if self.find_model_id_by_name(model.name) == model.id:
            self.store.delete(MODEL_NAMES, model.name)

    # -- deployments ----------------------------------------------------------------------
    def get_deployment(self, model_id: str, deployment_id: str) -> DeploymentRecord:
        item = self.store.get(DEPLOYMENTS, deployment_key(model_id, deployment_id))
        if item is None:
            raise NotFound(f"deployment {deployment_id!r} of model {model_id!r} not found")
        return DeploymentRecord.from_dict(item.value, item.version)

    def create_deployment(self, deployment: DeploymentRecord) -> None:
        self.store.put(DEPLOYMENTS, deployment.key, deployment.to_dict(), expected_version=ABSENT)

    def list_deployments(self, model_id: str | None = None) -> list[DeploymentRecord]:
        prefix = "" if model_id is None else f"{model_id}/"
        items = self.store.scan(DEPLOYMENTS, prefix=prefix)
        records = [DeploymentRecord.from_dict(i.value, i.version) for i in items]
        return sorted(records, key=lambda d: (d.model_id, d.created_at))

    def update_deployment(
        self,
        model_id: str,
        deployment_id: str,
        change: Callable[[DeploymentRecord], bool | None],
    ) -> DeploymentRecord:
        """Apply ``change`` (mutates the record; returns False to skip the write) atomically."""
        return self._update(
            DEPLOYMENTS,
            deployment_key(model_id, deployment_id),
            lambda: self.get_deployment(model_id, deployment_id),
            change,
        )

    def delete_deployment(self, model_id: str, deployment_id: str) -> None:
        """Remove the record and the replicas the reconciler published for it."""
        key = deployment_key(model_id, deployment_id)
        self.store.delete(DEPLOYMENTS, key)
        self.store.delete(OBSERVED_REPLICAS, key)

    # -- environments ---------------------------------------------------------------------
    def delete_environment(self, model_id: str, name: str) -> None:
        self.store.delete(ENVIRONMENTS, environment_key(model_id, name))

    def get_environment(self, model_id: str, name: str) -> EnvironmentRecord:
        item = self.store.get(ENVIRONMENTS, environment_key(model_id, name))
        if item is None:
            raise NotFound(f"environment {name!r} of model {model_id!r} not found")
        return EnvironmentRecord.from_dict(item.value, item.version)

    def create_environment(self, environment: EnvironmentRecord) -> None:
        try:
            self.store.put(
                ENVIRONMENTS, environment.key, environment.to_dict(), expected_version=ABSENT
            )
        except VersionConflict:
            raise Conflict(
                f"environment {environment.name!r} of model {environment.model_id!r} already exists"
            ) from None

    def list_environments(self, model_id: str | None = None) -> list[EnvironmentRecord]:
        prefix = "" if model_id is None else f"{model_id}/"
        items = self.store.scan(ENVIRONMENTS, prefix=prefix)
        return [EnvironmentRecord.from_dict(i.value, i.version) for i in items]

    def put_environment_if_unchanged(self, environment: EnvironmentRecord) -> EnvironmentRecord:
        """Write ``environment`` only if unchanged since it was read (else VersionConflict)."""
        version = self.store.put(
            ENVIRONMENTS,
            environment.key,
            environment.to_dict(),
            expected_version=environment.version,
        )
        environment.version = version
        return environment

    def update_environment(
        self,
        model_id: str,
        name: str,
        change: Callable[[EnvironmentRecord], bool | None],
    ) -> EnvironmentRecord:
        return self._update(
            ENVIRONMENTS,
            environment_key(model_id, name),
            lambda: self.get_environment(model_id, name),
            change,
        )

    # -- observed replicas (written by the reconciler, read by the routing table) ----------
    def get_observed_replicas(self, model_id: str, deployment_id: str) -> list[dict[str, Any]]:
        item = self.store.get(OBSERVED_REPLICAS, deployment_key(model_id, deployment_id))
        return [] if item is None else list(item.value.get("replicas") or [])

    def all_observed_replicas(self) -> dict[str, list[dict[str, Any]]]:
        return {
            i.key: list(i.value.get("replicas") or []) for i in self.store.scan(OBSERVED_REPLICAS)
        }

    def put_observed_replicas(
        self, model_id: str, deployment_id: str, replicas: list[dict[str, Any]]
    ) -> None:
        self.store.put(
            OBSERVED_REPLICAS, deployment_key(model_id, deployment_id), {"replicas": replicas}
        )

    # -- shared ---------------------------------------------------------------------------
    def _update(
        self,
        table: str,
        key: str,
        read: Callable[[], RecordT],
        change: Callable[[RecordT], bool | None],
    ) -> RecordT:
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            record = read()
            if change(record) is False:
                return record
            try:
                record.version = self.store.put(
                    table, key, record.to_dict(), expected_version=record.version
                )
                return record
            except VersionConflict:
                continue
        raise Conflict(f"{table}/{key} is changing too fast; try again")
