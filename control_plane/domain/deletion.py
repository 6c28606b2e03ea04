"""Deleting a deployment or a whole model: replicas, records, routes and archives.

A deployment an environment serves is refused (CONFLICT naming the environments) unless
forced. Forced, the environment is left serving nothing rather than falling back to its
previous deployment: that one may be scaled to zero or long outdated, and bringing an old
version back is a rollback the user asks for explicitly, not a side effect of a deletion.

The order keeps every moment consistent for the reconciler and the gateways: environments
stop pointing at the deployment first (the routing table drops the route), then the record
is marked through the lifecycle (no replicas wanted, so a reconciler tick in between scales
it down too), its replicas are stopped through the cluster driver, its extracted package is
removed from this host's builds directory, and only then the record and its published
replicas are removed. The archive goes last, when no remaining deployment
of any model was pushed from the same sha256.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from control_plane.domain import lifecycle
from control_plane.domain.archives import archive_key
from control_plane.domain.build_log import build_log_key
from control_plane.domain.images import context_key
from control_plane.domain.records import DeploymentRecord, DeploymentStatus, EnvironmentRecord
from control_plane.domain.repository import Repository
from control_plane.exceptions import Conflict
from control_plane.ports.blob import BlobStore
from control_plane.ports.cluster import ClusterDriver, ReplicaSpec


@dataclass(frozen=True)
class DeletedDeployment:
    model_id: str
    deployment_id: str
    environments_cleared: list[str]  # environments forced to serve nothing
    archive_deleted: bool  # False: another deployment still uses the archive


@dataclass(frozen=True)
class DeletedModel:
    model_id: str
    name: str
    deployments: list[DeletedDeployment]
    environments: list[str]


class DeletionService:
    def __init__(
        self,
        repo: Repository,
        blobs: BlobStore,
        driver: Callable[[], ClusterDriver],
        clock: Callable[[], float],
        *,
        builds_dir: Path | None = None,
    ) -> None:
        self._repo = repo
        self._builds_dir = builds_dir  # where this host's build worker extracted packages
        self._blobs = blobs
        self._driver = driver  # built on first use: listing or deleting records needs none
        self._clock = clock

    def delete_deployment(
        self, model_id: str, deployment_id: str, *, force: bool = False
    ) -> DeletedDeployment:
        dep = self._repo.get_deployment(model_id, deployment_id)  # NotFound for unknown ids
        environments = self._repo.list_environments(model_id)
        if not force:
            _refuse_if_served([dep], environments)
        cleared = self._detach(model_id, deployment_id, environments)
        self._repo.update_deployment(
            model_id, deployment_id, lambda d: lifecycle.stop_for_deletion(d, self._clock())
        )
        self._stop_replicas(dep)
        if self._builds_dir is not None and dep.status != DeploymentStatus.BUILDING:
            # The extracted package the local replicas ran from (the venv is a shared cache).
            shutil.rmtree(self._builds_dir / deployment_id, ignore_errors=True)
        self._repo.delete_deployment(model_id, deployment_id)
        self._blobs.delete(build_log_key(deployment_id))
        self._blobs.delete(context_key(deployment_id))  # its image build context, if any
        return DeletedDeployment(
            model_id=model_id,
            deployment_id=deployment_id,
            environments_cleared=cleared,
            archive_deleted=self._delete_archive_if_unused(dep.archive_sha256),
        )

    def delete_model(self, model_id: str, *, force: bool = False) -> DeletedModel:
        model = self._repo.get_model(model_id)
        deployments = self._repo.list_deployments(model_id)
        environments = self._repo.list_environments(model_id)
        if not force:
            _refuse_if_served(deployments, environments)
        deleted = [self.delete_deployment(model_id, dep.id, force=True) for dep in deployments]
        for env in environments:
            self._repo.delete_environment(model_id, env.name)
        self._repo.delete_model(model)
        return DeletedModel(
            model_id=model_id,
            name=model.name,
            deployments=deleted,
            environments=[env.name for env in environments],
        )

    def _detach(
        self, model_id: str, deployment_id: str, environments: list[EnvironmentRecord]
    ) -> list[str]:
        """No environment serves, rolls back to or is being promoted to the deployment.

        Returns the environments that were serving it (now serving nothing)."""
        cleared: list[str] = []
        for env in environments:
            if deployment_id not in _references(env):
                continue

            def forget(record: EnvironmentRecord) -> bool:
                if deployment_id not in _references(record):
                    return False
                if record.current_deployment_id == deployment_id:
                    record.current_deployment_id = None
                if record.previous_deployment_id == deployment_id:
                    record.previous_deployment_id = None
                if record.promotion and record.promotion.deployment_id == deployment_id:
                    record.promotion = None
                return True

            if env.current_deployment_id == deployment_id:
                cleared.append(env.name)
            self._repo.update_environment(model_id, env.name, forget)
        return cleared

    def _stop_replicas(self, dep: DeploymentRecord) -> None:
        """Scale to zero now rather than on the next reconciler tick: the record goes next."""
        if dep.status == DeploymentStatus.BUILDING:
            return  # never built: no replica was ever started
        # Scaling to zero only needs the ids: nothing is started from the package.
        spec = ReplicaSpec(
            deployment_id=dep.id,
            model_id=dep.model_id,
            model_dir=dep.model_dir or "",
            python=dep.python or "",
        )
        self._driver().scale(spec, 0)

    def _delete_archive_if_unused(self, sha256: str) -> bool:
        if any(other.archive_sha256 == sha256 for other in self._repo.list_deployments()):
            return False
        self._blobs.delete(archive_key(sha256))
        return True


def _references(env: EnvironmentRecord) -> set[str | None]:
    lock = env.promotion.deployment_id if env.promotion else None
    return {env.current_deployment_id, env.previous_deployment_id, lock}


def _refuse_if_served(
    deployments: list[DeploymentRecord], environments: list[EnvironmentRecord]
) -> None:
    ids = {dep.id for dep in deployments}
    served = [
        f"{env.name} (deployment {env.current_deployment_id})"
        for env in environments
        if env.current_deployment_id in ids
    ]
    if served:
        raise Conflict(
            "cannot delete: served by environment(s) "
            + ", ".join(served)
            + ": promote another deployment there first, or delete with force=true "
            "(the environment then serves nothing)"
        )
