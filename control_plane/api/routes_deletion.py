"""DELETE /v1/models/{model_id} and /v1/models/{model_id}/deployments/{deployment_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from control_plane.api.auth import platform_of, require_api_key
from control_plane.api.schemas import error_responses
from control_plane.domain.deletion import DeletedDeployment

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])

ForceQuery = Annotated[
    bool,
    Query(
        description="Delete even what an environment serves; that environment then serves "
        "nothing (it does not fall back to its previous deployment)."
    ),
]


class DeletedDeploymentOut(BaseModel):
    model_id: str
    deployment_id: str
    environments_cleared: list[str]
    archive_deleted: bool


class DeletedModelOut(BaseModel):
    model_id: str
    name: str
    deployments: list[DeletedDeploymentOut]
    environments: list[str]


def _deployment_out(deleted: DeletedDeployment) -> DeletedDeploymentOut:
    return DeletedDeploymentOut(
        model_id=deleted.model_id,
        deployment_id=deleted.deployment_id,
        environments_cleared=deleted.environments_cleared,
        archive_deleted=deleted.archive_deleted,
    )


@router.delete(
    "/models/{model_id}/deployments/{deployment_id}",
    response_model=DeletedDeploymentOut,
    responses=error_responses(404, 409, 422),
)
def delete_deployment(
    model_id: str, deployment_id: str, request: Request, force: ForceQuery = False
) -> DeletedDeploymentOut:
    """Stop the deployment's replicas and remove it, and its archive if nothing else uses it.

    409 when an environment serves it, unless ``force``."""
    deleted = platform_of(request).deletion.delete_deployment(model_id, deployment_id, force=force)
    return _deployment_out(deleted)


@router.delete(
    "/models/{model_id}",
    response_model=DeletedModelOut,
    responses=error_responses(404, 409, 422),
)
def delete_model(model_id: str, request: Request, force: ForceQuery = False) -> DeletedModelOut:
    """Delete every deployment of the model (as above), its environments and the model.

    409 when an environment serves one of its deployments, unless ``force``."""
    deleted = platform_of(request).deletion.delete_model(model_id, force=force)
    return DeletedModelOut(
        model_id=deleted.model_id,
        name=deleted.name,
        deployments=[_deployment_out(dep) for dep in deleted.deployments],
        environments=deleted.environments,
    )
