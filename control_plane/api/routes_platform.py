"""/v1/archives, /v1/secrets, /v1/api_keys and the gateways' /v1/routing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from control_plane.api.auth import platform_of, require_api_key, require_api_key_or_internal_token
from control_plane.api.schemas import (
    SHA256_PATTERN,
    ApiKeyCreateBody,
    ApiKeyCreatedOut,
    ApiKeyListOut,
    ArchiveOut,
    SecretBody,
    SecretListOut,
    SecretOut,
    api_key_out,
    error_responses,
    secret_out,
)
from control_plane.domain.archives import check_sha256
from control_plane.exceptions import PayloadTooLarge
from plinth.contracts.routing import RoutingTable

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
Sha256Path = Annotated[
    str, Path(pattern=SHA256_PATTERN, description="sha256 of the archive (64 lowercase hex).")
]
routing_router = APIRouter(
    prefix="/v1", tags=["gateway"], dependencies=[Depends(require_api_key_or_internal_token)]
)


# -- archives ---------------------------------------------------------------------------
@router.head(
    "/archives/{sha256}",
    tags=["archives"],
    responses={
        200: {"description": "Stored (Content-Length: its size)."},
        404: {"description": "Not stored."},
        401: {"description": "UNAUTHORIZED"},
        422: {"description": "VALIDATION"},
    },
)
def archive_exists(sha256: Sha256Path, request: Request) -> Response:
    size = platform_of(request).archives.size_of(sha256)
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.put(
    "/archives/{sha256}",
    tags=["archives"],
    status_code=201,
    response_model=ArchiveOut,
    responses=error_responses(400, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_archive(sha256: Sha256Path, request: Request) -> ArchiveOut:
    """Body: the package tar.gz. Stored only if it hashes to ``sha256``."""
    platform = platform_of(request)
    check_sha256(sha256)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > platform.settings.max_archive_bytes:
        raise PayloadTooLarge(
            f"archive of {declared} bytes is over the limit of "
            f"{platform.settings.max_archive_bytes}"
        )
    upload = await run_in_threadpool(platform.archives.begin_upload, sha256)
    try:
        async for chunk in request.stream():
            upload.write(chunk)
        size = await run_in_threadpool(upload.commit)
    finally:
        upload.discard()
    return ArchiveOut(sha256=sha256, size=size)


# -- secrets ----------------------------------------------------------------------------
@router.post(
    "/secrets", response_model=SecretOut, tags=["secrets"], responses=error_responses(400, 422)
)
def upsert_secret(body: SecretBody, request: Request) -> SecretOut:
    return secret_out(platform_of(request).secrets.upsert(body.name, body.value))


@router.get("/secrets", response_model=SecretListOut, tags=["secrets"], responses=error_responses())
def list_secrets(request: Request) -> SecretListOut:
    infos = platform_of(request).secrets.list_secrets()
    return SecretListOut(secrets=[secret_out(info) for info in infos])


@router.delete("/secrets/{name}", status_code=204, tags=["secrets"], responses=error_responses(404))
def delete_secret(name: str, request: Request) -> Response:
    platform_of(request).secrets.delete(name)
    return Response(status_code=204)


# -- API keys ---------------------------------------------------------------------------
@router.post(
    "/api_keys",
    response_model=ApiKeyCreatedOut,
    status_code=201,
    tags=["api keys"],
    responses=error_responses(400, 409, 422),
)
def create_api_key(request: Request, body: ApiKeyCreateBody | None = None) -> ApiKeyCreatedOut:
    name = body.name if body else "default"
    key, info = platform_of(request).api_keys.create(name)
    return ApiKeyCreatedOut(api_key=key, **api_key_out(info).model_dump())


@router.get(
    "/api_keys", response_model=ApiKeyListOut, tags=["api keys"], responses=error_responses()
)
def list_api_keys(request: Request) -> ApiKeyListOut:
    infos = platform_of(request).api_keys.list_keys()
    return ApiKeyListOut(api_keys=[api_key_out(info) for info in infos])


@router.delete(
    "/api_keys/{prefix}", status_code=204, tags=["api keys"], responses=error_responses(404, 409)
)
def delete_api_key(prefix: str, request: Request) -> Response:
    platform_of(request).api_keys.delete(prefix)
    return Response(status_code=204)


# -- routing table ----------------------------------------------------------------------
@routing_router.get("/routing", responses=error_responses())
def routing_table(request: Request) -> RoutingTable:
    return platform_of(request).routing.table()
