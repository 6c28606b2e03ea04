"""/v1/models/{model_id}/environments/..."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.auth import platform_of, require_api_key
from control_plane.api.presenters import present_environment
from control_plane.api.schemas import (
    EnvironmentCreateBody,
    EnvironmentListOut,
    EnvironmentOut,
    EnvironmentPatchBody,
    PromoteBody,
    error_responses,
)

router = APIRouter(
    prefix="/v1/models/{model_id}/environments",
    tags=["environments"],
    dependencies=[Depends(require_api_key)],
)


@router.get("", response_model=EnvironmentListOut, responses=error_responses(404))
def list_environments(model_id: str, request: Request) -> EnvironmentListOut:
    platform = platform_of(request)
    environments = platform.environments.list_for(model_id)
    return EnvironmentListOut(
        environments=[present_environment(platform, env) for env in environments]
    )


@router.post(
    "",
    response_model=EnvironmentOut,
    status_code=201,
    responses=error_responses(400, 404, 409, 422),
)
def create_environment(
    model_id: str, body: EnvironmentCreateBody, request: Request
) -> EnvironmentOut:
    platform = platform_of(request)
    changes = body.autoscaling_settings.changes() if body.autoscaling_settings else None
    env = platform.environments.create(model_id, body.name, changes)
    return present_environment(platform, env)


@router.get("/{env_name}", response_model=EnvironmentOut, responses=error_responses(404))
def get_environment(model_id: str, env_name: str, request: Request) -> EnvironmentOut:
    platform = platform_of(request)
    return present_environment(platform, platform.environments.get(model_id, env_name))


@router.patch(
    "/{env_name}", response_model=EnvironmentOut, responses=error_responses(400, 404, 409, 422)
)
def update_environment(
    model_id: str, env_name: str, body: EnvironmentPatchBody, request: Request
) -> EnvironmentOut:
    platform = platform_of(request)
    changes = body.autoscaling_settings.changes()
    env = platform.environments.update_autoscaling(model_id, env_name, changes)
    return present_environment(platform, env)


@router.post(
    "/{env_name}/promote",
    response_model=EnvironmentOut,
    responses={202: {"model": EnvironmentOut}, **error_responses(400, 404, 409, 422)},
)
def promote_to_environment(
    model_id: str, env_name: str, body: PromoteBody, request: Request, response: Response
) -> EnvironmentOut:
    """200 when swapped; 202 while the deployment comes up (the swap follows when ACTIVE)."""
    platform = platform_of(request)
    result = platform.environments.promote(model_id, env_name, body.deployment_id)
    response.status_code = 200 if result.completed else 202
    return present_environment(platform, result.environment)
