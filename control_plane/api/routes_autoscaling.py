"""The autoscaler's routes: gateways' ``POST /v1/load_reports`` and the scaling history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from control_plane.api.auth import platform_of, require_api_key, require_api_key_or_internal_token
from control_plane.api.schemas import error_responses
from control_plane.domain.autoscaler import DeploymentLoad

# Bounds of one report: a gateway sends at most this many deployments per POST (more go in
# further POSTs), and counts no request twice, so a count is below any real concurrency.
MAX_DEPLOYMENTS_PER_REPORT = 500
MAX_REPLICAS_PER_DEPLOYMENT = 1000
MAX_COUNT = 10_000_000
MAX_EPOCH_S = 1e11  # year 5138: a timestamp beyond is a unit mistake (milliseconds)
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

router = APIRouter(prefix="/v1", tags=["autoscaling"], dependencies=[Depends(require_api_key)])
gateway_router = APIRouter(
    prefix="/v1", tags=["gateway"], dependencies=[Depends(require_api_key_or_internal_token)]
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


ReplicaInFlight = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class DeploymentLoadIn(_Body):
    model_id: str = Field(pattern=ID_PATTERN)
    deployment_id: str = Field(pattern=ID_PATTERN)
    in_flight: int = Field(default=0, ge=0, le=MAX_COUNT, description="Requests at a replica.")
    waiting: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Requests the gateway holds for a slot."
    )
    parked: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Requests waiting for a ready replica."
    )
    arrivals: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="Requests received since the last report."
    )
    replicas: dict[str, ReplicaInFlight] = Field(
        default_factory=dict,
        max_length=MAX_REPLICAS_PER_DEPLOYMENT,
        description="Replica id -> its in-flight requests (replicas with none may be left out).",
    )


class LoadReportsIn(_Body):
    gateway_id: str = Field(pattern=ID_PATTERN, description="Names the gateway; reports add up.")
    at: float = Field(
        ge=0, le=MAX_EPOCH_S, allow_inf_nan=False, description="When measured, epoch seconds."
    )
    deployments: list[DeploymentLoadIn] = Field(max_length=MAX_DEPLOYMENTS_PER_REPORT)


class LoadReportsOut(BaseModel):
    stored: int = Field(description="Deployments stored (unknown deployments are skipped).")


class ScalingEventOut(BaseModel):
    at: float = Field(description="Epoch seconds.")
    from_replicas: int
    to_replicas: int
    reason: str
    cold_start: dict[str, float | None] | None = Field(
        default=None,
        description="On a replica's cold start (from == to): seconds per phase, environment,"
        " weights, model_load, total.",
    )


class ScalingEventsOut(BaseModel):
    scaling_events: list[ScalingEventOut] = Field(description="Oldest first, the last 100.")


@gateway_router.post(
    "/load_reports",
    response_model=LoadReportsOut,
    status_code=202,
    responses=error_responses(400, 422),
)
def post_load_reports(body: LoadReportsIn, request: Request) -> LoadReportsOut:
    """A gateway's load per deployment, about once a second (internal token or API key)."""
    loads = [DeploymentLoad(**entry.model_dump()) for entry in body.deployments]
    stored = platform_of(request).autoscaler.record_load(body.gateway_id, body.at, loads)
    return LoadReportsOut(stored=stored)


@router.get(
    "/models/{model_id}/deployments/{deployment_id}/scaling_events",
    response_model=ScalingEventsOut,
    responses=error_responses(404),
)
def scaling_events(model_id: str, deployment_id: str, request: Request) -> ScalingEventsOut:
    """Every change of the deployment's replica count, with its time and reason."""
    events = platform_of(request).autoscaler.scaling_events(model_id, deployment_id)
    return ScalingEventsOut(scaling_events=[ScalingEventOut(**e.to_dict()) for e in events])
