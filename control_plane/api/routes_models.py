"""/v1/deployments and /v1/models/{model_id}/deployments/..."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.auth import platform_of, require_api_key, require_api_key_or_internal_token
from control_plane.api.presenters import present_deployment, present_environment
from control_plane.api.schemas import (
    AutoscalingPatch,
    DeploymentListOut,
    DeploymentOut,
    EnvironmentOut,
    LogsOut,
    ModelListOut,
    ModelOut,
    PushBody,
    PushOut,
    error_responses,
    model_out,
)
from control_plane.domain.deployments import PushRequest

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])
# wake is called by gateways, which hold the internal token rather than an API key.
wake_router = APIRouter(
    prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key_or_internal_token)]
)

_DEPLOYMENT = "/models/{model_id}/deployments/{deployment_id}"


@router.post(
    "/deployments",
    response_model=PushOut,
    status_code=201,
    responses=error_responses(400, 404, 409, 422),
)
def push_deployment(body: PushBody, request: Request) -> PushOut:
    platform = platform_of(request)
    model, dep = platform.deployments.push(
        PushRequest(
            model_name=body.model_name,
            archive_sha256=body.archive_sha256,
            config=body.config,
            environment=body.environment,
            promote=body.promote,
        )
    )
    env_path = dep.target_environment or "development"
    if env_path not in ("production", "development"):
        env_path = f"environments/{env_path}"
    gateway = platform.settings.gateway_url.rstrip("/")
    return PushOut(
        model_id=model.id,
        deployment=present_deployment(platform, dep),
        predict_url=f"{gateway}/models/{model.id}/{env_path}/predict",
        warnings=platform.deployments.config_warnings(body.config),
    )


@router.get("/models", response_model=ModelListOut, responses=error_responses())
def list_models(request: Request) -> ModelListOut:
    summaries = platform_of(request).deployments.list_models()
    return ModelListOut(models=[model_out(summary) for summary in summaries])


@router.get("/models/{model_id}", response_model=ModelOut, responses=error_responses(404))
def get_model(model_id: str, request: Request) -> ModelOut:
    return model_out(platform_of(request).deployments.get_model(model_id))


@router.get(
    "/models/{model_id}/deployments",
    response_model=DeploymentListOut,
    responses=error_responses(404),
)
def list_deployments(model_id: str, request: Request) -> DeploymentListOut:
    platform = platform_of(request)
    deployments = platform.deployments.list_deployments(model_id)
    environments = platform.repo.list_environments(model_id)
    return DeploymentListOut(
        deployments=[present_deployment(platform, dep, environments) for dep in deployments]
    )


@router.get(_DEPLOYMENT, response_model=DeploymentOut, responses=error_responses(404))
def get_deployment(model_id: str, deployment_id: str, request: Request) -> DeploymentOut:
    platform = platform_of(request)
    dep = platform.deployments.get_deployment(model_id, deployment_id)
    return present_deployment(platform, dep)


@router.get(_DEPLOYMENT + "/logs", response_model=LogsOut, responses=error_responses(404))
def deployment_logs(model_id: str, deployment_id: str, request: Request) -> LogsOut:
    logs = platform_of(request).deployment_logs(model_id, deployment_id)
    return LogsOut(**logs)


@router.post(
    _DEPLOYMENT + "/promote",
    response_model=EnvironmentOut,
    responses={202: {"model": EnvironmentOut}, **error_responses(404, 409)},
)
def promote_deployment(
    model_id: str, deployment_id: str, request: Request, response: Response
) -> EnvironmentOut:
    """Promote to production (``POST .../environments/production/promote`` does the same)."""
    platform = platform_of(request)
    result = platform.environments.promote(model_id, "production", deployment_id)
    response.status_code = 200 if result.completed else 202
    return present_environment(platform, result.environment)


@router.post(
    _DEPLOYMENT + "/activate", response_model=DeploymentOut, responses=error_responses(404, 409)
)
def activate_deployment(model_id: str, deployment_id: str, request: Request) -> DeploymentOut:
    platform = platform_of(request)
    return present_deployment(platform, platform.deployments.activate(model_id, deployment_id))


@router.post(
    _DEPLOYMENT + "/deactivate", response_model=DeploymentOut, responses=error_responses(404, 409)
)
def deactivate_deployment(model_id: str, deployment_id: str, request: Request) -> DeploymentOut:
    platform = platform_of(request)
    return present_deployment(platform, platform.deployments.deactivate(model_id, deployment_id))


@router.patch(
    _DEPLOYMENT + "/autoscaling_settings",
    response_model=DeploymentOut,
    responses=error_responses(400, 404, 409, 422),
)
def update_autoscaling(
    model_id: str, deployment_id: str, body: AutoscalingPatch, request: Request
) -> DeploymentOut:
    platform = platform_of(request)
    dep = platform.deployments.update_autoscaling(model_id, deployment_id, body.changes())
    return present_deployment(platform, dep)


@wake_router.post(
    _DEPLOYMENT + "/wake",
    response_model=DeploymentOut,
    status_code=202,
    responses=error_responses(404, 409),
)
def wake_deployment(model_id: str, deployment_id: str, request: Request) -> DeploymentOut:
    platform = platform_of(request)
    return present_deployment(platform, platform.deployments.wake(model_id, deployment_id))
