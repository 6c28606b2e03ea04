"""/v1 routes of async inference (the gateway forwards its public async routes here) and
the webhook secret. Bodies are Baseten's; the domain validates them (docs/async.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from control_plane.api.auth import platform_of, require_api_key, require_api_key_or_internal_token
from control_plane.api.schemas import error_responses
from control_plane.domain.async_requests import MAX_QUEUE_S, MIN_QUEUE_S, parse_request
from control_plane.domain.async_webhooks import check_webhook_target, resolve_host
from control_plane.exceptions import PayloadTooLarge

router = APIRouter(
    prefix="/v1", tags=["async"], dependencies=[Depends(require_api_key_or_internal_token)]
)
secrets_router = APIRouter(prefix="/v1", tags=["async"], dependencies=[Depends(require_api_key)])


class RetryConfigIn(BaseModel):
    max_attempts: int = Field(default=1, ge=1, le=10)
    initial_delay_ms: int = Field(default=1000, ge=0, le=10_000)
    max_delay_ms: int = Field(default=5000, ge=0, le=60_000)


class AsyncPredictIn(BaseModel):
    """Baseten's async_predict body."""

    model_config = ConfigDict(extra="forbid")

    model_input: Any
    webhook_endpoint: str | None = Field(default=None, description="http(s) URL")
    priority: int = Field(default=1, ge=0, le=2, description="0 runs first")
    max_time_in_queue_seconds: int = Field(default=600, ge=MIN_QUEUE_S, le=MAX_QUEUE_S)
    inference_retry_config: RetryConfigIn | None = None


class AsyncRequestIdOut(BaseModel):
    request_id: str


class WebhookSecretOut(BaseModel):
    secret_id: str
    created_at: float
    expires_at: float | None


class WebhookSecretCreatedOut(WebhookSecretOut):
    secret: str = Field(description="Shown once: store it where your receiver can read it.")


@router.post(
    "/models/{model_id}/deployments/{deployment_id}/async_requests",
    status_code=201,
    response_model=AsyncRequestIdOut,
    responses=error_responses(400, 413, 422),
)
async def submit(
    model_id: str, deployment_id: str, declared: AsyncPredictIn, request: Request
) -> AsyncRequestIdOut:
    """Queue an async request for a deployment the gateway resolved. ``declared`` states the
    body in /openapi.json; the domain validates the raw bytes (size first: 413)."""
    platform = platform_of(request)
    settings = platform.settings
    limit = settings.async_max_payload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"async_predict body of {length} bytes exceeds {limit}")
    body = await request.body()

    def check(url: str) -> None:
        allow = settings.async_allow_private_webhooks
        check_webhook_target(url, allow_private=allow, resolve=resolve_host)

    spec = await run_in_threadpool(parse_request, body, payload_limit=limit, check_webhook=check)
    request_id = await run_in_threadpool(
        platform.async_requests.submit, model_id, deployment_id, spec
    )
    return AsyncRequestIdOut(request_id=request_id)


@router.get("/async_requests/{request_id}", responses=error_responses(404))
def get_request(request_id: str, request: Request) -> dict[str, Any]:
    return platform_of(request).async_requests.view(request_id)


@router.delete("/async_requests/{request_id}", responses=error_responses(404, 409))
def cancel_request(request_id: str, request: Request) -> dict[str, Any]:
    return platform_of(request).async_requests.cancel(request_id)


@router.post("/async_requests/{request_id}/replay_webhook", responses=error_responses(404, 409))
def replay_webhook(request_id: str, request: Request) -> dict[str, Any]:
    return platform_of(request).async_processor.replay(request_id)


@router.get(
    "/models/{model_id}/deployments/{deployment_id}/async_queue_status", responses=error_responses()
)
def queue_status(model_id: str, deployment_id: str, request: Request) -> dict[str, Any]:
    return platform_of(request).async_requests.queue_status(model_id, deployment_id)


@secrets_router.post(
    "/webhook_secrets", status_code=201, response_model=WebhookSecretCreatedOut,
    responses=error_responses(409),
)  # fmt: skip
def create_webhook_secret(request: Request) -> WebhookSecretCreatedOut:
    """A new signing secret (shown once); older ones keep signing for the rotation window."""
    value, info = platform_of(request).webhook_secrets.create()
    return WebhookSecretCreatedOut(secret=value, **vars(info))


@secrets_router.get("/webhook_secrets", responses=error_responses())
def list_webhook_secrets(request: Request) -> dict[str, list[WebhookSecretOut]]:
    infos = platform_of(request).webhook_secrets.list_secrets()
    return {"webhook_secrets": [WebhookSecretOut(**vars(info)) for info in infos]}
