"""Request and response bodies of /v1 (Baseten's field names), and record -> body conversion."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control_plane.domain.api_keys import ApiKeyInfo
from control_plane.domain.deployments import ModelSummary
from control_plane.domain.records import DeploymentRecord, EnvironmentRecord
from control_plane.domain.secrets import MAX_SECRET_BYTES, SecretInfo


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The domain's rules, declared so that /openapi.json states them (the domain checks them too).
# The patterns end in `$` with no newline allowed before it, as JSON Schema (ECMA) reads them.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,127}$"
ENVIRONMENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
SECRET_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
API_KEY_NAME_PATTERN = r"^[A-Za-z0-9 _.:@-]{1,64}$"
MAX_REPLICAS = 1000
MAX_SECONDS = 7 * 24 * 3600


# -- requests ---------------------------------------------------------------------------
class PushBody(_Body):
    # promote=true means environment 'production': another environment with it is a 422.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"promote": {"const": True}}, "required": ["promote"]},
            "then": {"properties": {"environment": {"enum": ["production", None]}}},
        },
    )

    model_name: str = Field(
        pattern=MODEL_NAME_PATTERN, description="Model name; a new name creates the model."
    )
    archive_sha256: str = Field(
        pattern=SHA256_PATTERN, description="sha256 of the archive uploaded to /v1/archives."
    )
    config: dict[str, Any] = Field(description="The package's config.yaml as a JSON object.")
    environment: str | None = Field(
        default=None,
        pattern=ENVIRONMENT_NAME_PATTERN,
        description="Environment the deployment joins once ACTIVE (with promote: production).",
    )
    promote: bool = Field(default=False, description="Same as environment='production'.")


class AutoscalingPatch(_Body):
    """Fields left out keep their value. max_replica must stay >= min_replica once merged with
    the current settings (409 CONFLICT otherwise, naming both)."""

    min_replica: int | None = Field(
        default=None, ge=0, le=MAX_REPLICAS, description="Replicas kept up (default 0)."
    )
    max_replica: int | None = Field(
        default=None, ge=1, le=MAX_REPLICAS, description="Most replicas (default 1)."
    )
    autoscaling_window: int | None = Field(
        default=None, ge=10, le=3600, description="Seconds, 10-3600 (default 60)."
    )
    scale_down_delay: int | None = Field(
        default=None, ge=0, le=3600, description="Seconds, 0-3600 (default 900)."
    )
    concurrency_target: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Requests per replica (default 1)."
    )
    target_utilization_percentage: int | None = Field(
        default=None, ge=1, le=100, description="Percent of concurrency_target (default 70)."
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EnvironmentCreateBody(_Body):
    name: str = Field(
        pattern=ENVIRONMENT_NAME_PATTERN, description="Lowercase letters, digits and '-'."
    )
    autoscaling_settings: AutoscalingPatch | None = None


class EnvironmentPatchBody(_Body):
    autoscaling_settings: AutoscalingPatch


class PromoteBody(_Body):
    deployment_id: str


class SecretBody(_Body):
    name: str = Field(pattern=SECRET_NAME_PATTERN, description="It becomes a file name.")
    value: str = Field(
        min_length=1,
        max_length=MAX_SECRET_BYTES,
        description=f"Never returned by any API; not empty, at most {MAX_SECRET_BYTES} bytes.",
    )


class ApiKeyCreateBody(_Body):
    name: str = Field(
        default="default", pattern=API_KEY_NAME_PATTERN, description="A label shown in listings."
    )


# -- errors -----------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable code, e.g. NOT_FOUND, VALIDATION, CONFLICT.")
    message: str = Field(description="What is wrong, naming the field and value.")


class ErrorOut(BaseModel):
    """Every error answer of /v1."""

    error: ErrorDetail


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


class PhaseSecondsOut(BaseModel):
    environment: float | None = Field(
        default=None, description="Scheduled -> the model server runs (image, Python up)."
    )
    weights: float | None = Field(
        default=None,
        description="Environment ready -> weights on disk (null where the driver cannot tell;"
        " then it counts in model_load).",
    )
    model_load: float = Field(description="Weights ready -> load() returned (READY).")
    total: float = Field(description="Scheduled -> READY.")


class ColdStartOut(BaseModel):
    """The phases of the deployment's last replica start (epoch seconds, and seconds each)."""

    replica_id: str
    scheduled_at: float
    environment_ready_at: float | None = None
    weights_ready_at: float | None = None
    model_loaded_at: float
    seconds: PhaseSecondsOut


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
    cold_start: ColdStartOut | None = Field(
        default=None, description="The last replica start's phases; null before the first."
    )
    # The OCI image the replicas run, by digest; null until built, or when images are off.
    image: str | None = None


class PushOut(BaseModel):
    model_id: str
    deployment: DeploymentOut
    predict_url: str
    warnings: list[str] = Field(
        default_factory=list,
        description="Config fields this platform records but cannot honour, one sentence each "
        "naming the field.",
    )


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
        image=dep.image,
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


_ERROR_DESCRIPTIONS = {
    400: "BAD_REQUEST (the body is not JSON), ARCHIVE_INVALID or HASH_MISMATCH.",
    401: "UNAUTHORIZED: missing or invalid API key.",
    404: ("NOT_FOUND: the model, deployment, environment, secret, key or cluster does not exist."),
    409: "CONFLICT or PROMOTION_IN_PROGRESS: the request conflicts with the current state.",
    413: "PAYLOAD_TOO_LARGE: the archive is over the size limit.",
    422: "VALIDATION: a field is missing or invalid (the message names it and its value).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer (401 always)."""
    return {
        status: {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[status]}
        for status in sorted({401, *statuses})
    }


class ArchiveOut(BaseModel):
    sha256: str
    size: int
