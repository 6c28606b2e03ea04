"""Request and response bodies of /v1 (Baseten's field names), and record -> body conversion."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control_plane.domain.api_keys import ApiKeyInfo
from control_plane.domain.deployments import ModelSummary
from control_plane.domain.records import DeploymentRecord, EnvironmentRecord
from control_plane.domain.secrets import SecretInfo


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------
class PushBody(_Body):
    model_name: str = Field(description="Model name; a new name creates the model.")
    archive_sha256: str = Field(description="sha256 of the archive uploaded to /v1/archives.")
    config: dict[str, Any] = Field(description="The package's config.yaml as a JSON object.")
    environment: str | None = Field(
        default=None, description="Environment the deployment joins once ACTIVE."
    )
    promote: bool = Field(default=False, description="Same as environment='production'.")


class AutoscalingPatch(_Body):
    min_replica: int | None = Field(default=None, description="Replicas kept up (default 0).")
    max_replica: int | None = Field(default=None, description="Most replicas (default 1).")
    autoscaling_window: int | None = Field(default=None, description="Seconds (default 60).")
    scale_down_delay: int | None = Field(default=None, description="Seconds (default 900).")
    concurrency_target: int | None = Field(default=None, description="Requests per replica.")
    target_utilization_percentage: int | None = Field(default=None, description="Default 70.")

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EnvironmentCreateBody(_Body):
    name: str = Field(description="Lowercase letters, digits and '-'.")
    autoscaling_settings: AutoscalingPatch | None = None


class EnvironmentPatchBody(_Body):
    autoscaling_settings: AutoscalingPatch


class PromoteBody(_Body):
    deployment_id: str


class SecretBody(_Body):
    name: str
    value: str = Field(min_length=1, description="Never returned by any API; not empty.")


class ApiKeyCreateBody(_Body):
    name: str = Field(default="default", description="A label shown in listings.")


# -- responses --------------------------------------------------------------------------
class AutoscalingOut(BaseModel):
    min_replica: int
    max_replica: int
    autoscaling_window: int
    scale_down_delay: int
    concurrency_target: int
    target_utilization_percentage: int


class ModelOut(BaseModel):
    id: str
    name: str
    created_at: float
    deployments_count: int
    production_deployment_id: str | None
    development_deployment_id: str | None


class DeploymentOut(BaseModel):
    id: str
    name: str
    model_id: str
    status: str
    status_message: str
    environment: str | None
    is_production: bool
    is_development: bool
    active_replica_count: int
    desired_replica_count: int
    # Set while it drains after a promotion replaced it: when it will be scaled to zero.
    scale_down_at: float | None = None
    autoscaling_settings: AutoscalingOut
    created_at: float


class PushOut(BaseModel):
    model_id: str
    deployment: DeploymentOut
    predict_url: str


class PromotionOut(BaseModel):
    deployment_id: str
    started_at: float


class EnvironmentOut(BaseModel):
    name: str
    model_id: str
    created_at: float
    current_deployment: DeploymentOut | None
    current_deployment_id: str | None
    previous_deployment_id: str | None
    history: list[dict[str, Any]]
    promotion_in_progress: bool
    promotion: PromotionOut | None
    autoscaling_settings: AutoscalingOut


class SecretOut(BaseModel):
    name: str
    created_at: float
    updated_at: float


class ApiKeyOut(BaseModel):
    prefix: str
    name: str
    created_at: float


class ApiKeyCreatedOut(ApiKeyOut):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class ModelListOut(BaseModel):
    models: list[ModelOut]


class DeploymentListOut(BaseModel):
    deployments: list[DeploymentOut]


class EnvironmentListOut(BaseModel):
    environments: list[EnvironmentOut]


class SecretListOut(BaseModel):
    secrets: list[SecretOut]


class ApiKeyListOut(BaseModel):
    api_keys: list[ApiKeyOut]


class LogsOut(BaseModel):
    build: list[str]
    replicas: list[str]


# -- conversion -------------------------------------------------------------------------
def model_out(summary: ModelSummary) -> ModelOut:
    return ModelOut(
        id=summary.model.id,
        name=summary.model.name,
        created_at=summary.model.created_at,
        deployments_count=summary.deployments_count,
        production_deployment_id=summary.environments.get("production"),
        development_deployment_id=summary.environments.get("development"),
    )


def deployment_out(
    dep: DeploymentRecord, environments: list[EnvironmentRecord], ready_replicas: int
) -> DeploymentOut:
    serving = [env.name for env in environments if env.current_deployment_id == dep.id]
    if "production" in serving:
        environment: str | None = "production"
    elif serving:
        environment = sorted(serving)[0]
    else:
        environment = dep.target_environment
    return DeploymentOut(
        id=dep.id,
        name=dep.name,
        model_id=dep.model_id,
        status=dep.status.value,
        status_message=dep.status_message,
        environment=environment,
        is_production="production" in serving,
        is_development="development" in serving,
        active_replica_count=ready_replicas,
        desired_replica_count=dep.desired_replicas,
        scale_down_at=dep.retire_at,
        autoscaling_settings=AutoscalingOut(**dep.autoscaling_settings.to_dict()),
        created_at=dep.created_at,
    )


def environment_out(env: EnvironmentRecord, current: DeploymentOut | None) -> EnvironmentOut:
    return EnvironmentOut(
        name=env.name,
        model_id=env.model_id,
        created_at=env.created_at,
        current_deployment=current,
        current_deployment_id=env.current_deployment_id,
        previous_deployment_id=env.previous_deployment_id,
        history=env.history,
        promotion_in_progress=env.promotion is not None,
        promotion=PromotionOut(**env.promotion.to_dict()) if env.promotion else None,
        autoscaling_settings=AutoscalingOut(**env.autoscaling_settings.to_dict()),
    )


def secret_out(info: SecretInfo) -> SecretOut:
    return SecretOut(name=info.name, created_at=info.created_at, updated_at=info.updated_at)


def api_key_out(info: ApiKeyInfo) -> ApiKeyOut:
    return ApiKeyOut(prefix=info.prefix, name=info.name, created_at=info.created_at)
