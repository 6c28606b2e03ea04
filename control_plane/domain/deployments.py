"""Models and deployments: push, lifecycle commands, autoscaling settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.domain import lifecycle
from control_plane.domain.archives import ArchiveService, check_sha256
from control_plane.domain.images import check_buildable
from control_plane.domain.package import validate_config
from control_plane.domain.records import (
    DEFAULT_ENVIRONMENTS,
    DeploymentRecord,
    EnvironmentRecord,
    ModelRecord,
    new_id,
)
from control_plane.domain.repository import Repository
from control_plane.exceptions import Conflict, NotFound, ValidationFailed
from control_plane.ports.queue import Queue
from control_plane.ports.store import VersionConflict
from plinth.spec.checks import MODEL_NAME_PATTERN, MODEL_NAME_RULE
from plinth.spec.honoured import PROCESS_RUNTIME, unhonoured_warnings

BUILD_QUEUE = "builds"


@dataclass(frozen=True)
class PushRequest:
    model_name: str
    archive_sha256: str
    config: dict[str, Any]
    environment: str | None = None
    promote: bool = False


@dataclass(frozen=True)
class ModelSummary:
    model: ModelRecord
    deployments_count: int
    environments: dict[str, str | None]  # environment name -> current deployment id


class DeploymentService:
    def __init__(
        self,
        repo: Repository,
        archives: ArchiveService,
        queue: Queue,
        clock: Callable[[], float],
        runtime: str = PROCESS_RUNTIME,
        *,
        builds_images: bool = False,
    ) -> None:
        self._repo = repo
        self._archives = archives
        self._queue = queue
        self._clock = clock
        self._runtime = runtime  # what runs replicas: which config fields it cannot honour
        # Images are built: a config no image can be built for is refused at push.
        self._builds_images = builds_images

    def config_warnings(self, config: dict[str, Any]) -> list[str]:
        """Config fields this platform's runtime records but cannot honour (a push warns)."""
        return unhonoured_warnings(validate_config(config), self._runtime)

    # -- push -------------------------------------------------------------------------
    def push(self, request: PushRequest) -> tuple[ModelRecord, DeploymentRecord]:
        """Create the model if new and a BUILDING deployment; the build runs in the background."""
        if not MODEL_NAME_PATTERN.match(request.model_name):
            raise ValidationFailed(f"model_name: {request.model_name!r} must be {MODEL_NAME_RULE}")
        check_sha256(request.archive_sha256)
        config = validate_config(request.config)
        if self._builds_images:
            check_buildable(config)
        if self._archives.size_of(request.archive_sha256) is None:
            raise NotFound(
                f"archive {request.archive_sha256} has not been uploaded "
                f"(PUT /v1/archives/{request.archive_sha256} first)"
            )
        target = _target_environment(request)
        model = self._get_or_create_model(request.model_name)
        environment = self._repo.get_environment(model.id, target)  # NotFound names it
        deployment = lifecycle.new_deployment(
            deployment_id=new_id(),
            model_id=model.id,
            name=f"deployment-{len(self._repo.list_deployments(model.id)) + 1}",
            now=self._clock(),
            archive_sha256=request.archive_sha256,
            config=request.config,
            target_environment=target,
            autoscaling_settings=environment.autoscaling_settings,
        )
        self._repo.create_deployment(deployment)
        body = json.dumps({"model_id": model.id, "deployment_id": deployment.id})
        self._queue.send(BUILD_QUEUE, body)
        return model, deployment

    def _get_or_create_model(self, name: str) -> ModelRecord:
        model_id = self._repo.find_model_id_by_name(name)
        if model_id is None:
            model_id = self._repo.claim_model_name(name, new_id())
        self._ensure_model(model_id, name)
        return self._repo.get_model(model_id)

    def _ensure_model(self, model_id: str, name: str) -> None:
        """Create the model and its default environments if absent (racing pushers agree)."""
        now = self._clock()
        try:
            self._repo.get_model(model_id)
        except NotFound:
            try:
                self._repo.create_model(ModelRecord(id=model_id, name=name, created_at=now))
            except VersionConflict:  # another pusher created it first
                self._repo.get_model(model_id)
        for env_name in DEFAULT_ENVIRONMENTS:
            try:
                self._repo.create_environment(
                    EnvironmentRecord(model_id=model_id, name=env_name, created_at=now)
                )
            except Conflict:
                pass

    # -- queries ----------------------------------------------------------------------
    def list_models(self) -> list[ModelSummary]:
        return [self._summary(model) for model in self._repo.list_models()]

    def get_model(self, model_id: str) -> ModelSummary:
        return self._summary(self._repo.get_model(model_id))

    def _summary(self, model: ModelRecord) -> ModelSummary:
        environments = {
            env.name: env.current_deployment_id for env in self._repo.list_environments(model.id)
        }
        count = len(self._repo.list_deployments(model.id))
        return ModelSummary(model=model, deployments_count=count, environments=environments)

    def list_deployments(self, model_id: str) -> list[DeploymentRecord]:
        self._repo.get_model(model_id)
        return self._repo.list_deployments(model_id)

    def get_deployment(self, model_id: str, deployment_id: str) -> DeploymentRecord:
        return self._repo.get_deployment(model_id, deployment_id)

    def environments_of(self, model_id: str) -> list[EnvironmentRecord]:
        return self._repo.list_environments(model_id)

    # -- lifecycle --------------------------------------------------------------------
    def activate(self, model_id: str, deployment_id: str) -> DeploymentRecord:
        """Bring a scaled-to-zero deployment back up, or keep a draining one up.

        A deployment draining after a promotion replaced it has its retirement cancelled.
        """
        return self._bring_up(model_id, deployment_id, "activate", keep_draining=False)

    def wake(self, model_id: str, deployment_id: str) -> DeploymentRecord:
        """A gateway holds requests for this deployment: bring it up if scaled to zero.

        Unlike activate, a draining deployment (it has ready replicas) keeps draining.
        """
        return self._bring_up(model_id, deployment_id, "wake", keep_draining=True)

    def _bring_up(
        self, model_id: str, deployment_id: str, action: str, *, keep_draining: bool
    ) -> DeploymentRecord:
        def change(dep: DeploymentRecord) -> bool:
            if lifecycle.bring_up(dep, self._clock(), action):
                return True
            return not keep_draining and lifecycle.cancel_retirement(dep)

        return self._repo.update_deployment(model_id, deployment_id, change)

    def deactivate(self, model_id: str, deployment_id: str) -> DeploymentRecord:
        def change(dep: DeploymentRecord) -> bool:
            return lifecycle.scale_to_zero(dep, self._clock(), "deactivate")

        return self._repo.update_deployment(model_id, deployment_id, change)

    def update_autoscaling(
        self, model_id: str, deployment_id: str, changes: dict[str, Any]
    ) -> DeploymentRecord:
        def change(dep: DeploymentRecord) -> None:
            lifecycle.apply_autoscaling(dep, dep.autoscaling_settings.with_changes(changes))

        return self._repo.update_deployment(model_id, deployment_id, change)


def _target_environment(request: PushRequest) -> str:
    if request.promote and request.environment not in (None, "production"):
        raise ValidationFailed(
            f"environment: {request.environment!r} conflicts with promote=true "
            "(promote means environment 'production')"
        )
    if request.promote:
        return "production"
    return request.environment or "development"
