"""/v1/archives/{sha256}/uploads: archive uploads that bypass the API (presigned URLs)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from control_plane.api.auth import platform_of, require_api_key
from control_plane.api.schemas import SHA256_PATTERN, ArchiveOut, error_responses
from control_plane.domain.archive_uploads import UploadPlan

router = APIRouter(prefix="/v1", tags=["archives"], dependencies=[Depends(require_api_key)])
Sha256Path = Annotated[
    str, Path(pattern=SHA256_PATTERN, description="sha256 of the archive (64 lowercase hex).")
]
UploadIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{16}$", description="upload_id from the upload plan.")
]


class UploadStartBody(BaseModel):
    size: int = Field(gt=0, description="Archive size in bytes.")


class UploadPartOut(BaseModel):
    part_number: int = Field(description="1-based; complete lists the ETags in this order.")
    offset: int = Field(description="First byte of the archive this part carries.")
    size: int
    url: str = Field(description="Presigned: PUT the bytes with no Authorization header.")


class UploadPlanOut(BaseModel):
    sha256: str
    size: int
    mode: Literal["stored", "api", "single", "multipart"] = Field(
        description="stored: nothing to send. api: PUT the body to `url` on this API with the "
        "API key. single: PUT the body to the presigned `url`, then complete. multipart: PUT "
        "each part to its url, then complete with the ETags."
    )
    upload_id: str | None = None
    url: str | None = None
    multipart_id: str | None = None
    parts: list[UploadPartOut] = Field(default_factory=list)


class UploadCompleteBody(BaseModel):
    size: int = Field(gt=0, description="Archive size in bytes (checked against the object).")
    multipart_id: str | None = Field(default=None, max_length=1024)
    etags: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=10_000, description="Multipart: ETag of each part."
    )


def _plan_out(plan: UploadPlan) -> UploadPlanOut:
    parts = [UploadPartOut(**vars(part)) for part in plan.parts]
    fields = {name: value for name, value in vars(plan).items() if name != "parts"}
    return UploadPlanOut(**fields, parts=parts)


@router.post(
    "/archives/{sha256}/uploads",
    response_model=UploadPlanOut,
    responses=error_responses(400, 413, 422),
)
async def plan_archive_upload(
    sha256: Sha256Path, body: UploadStartBody, request: Request
) -> UploadPlanOut:
    """How to send the archive: presigned URL(s) straight to the blob store where it has them."""
    uploads = platform_of(request).archive_uploads
    return _plan_out(await run_in_threadpool(uploads.plan, sha256, body.size))


@router.post(
    "/archives/{sha256}/uploads/{upload_id}/complete",
    response_model=ArchiveOut,
    status_code=201,
    responses=error_responses(400, 413, 422),
)
async def complete_archive_upload(
    sha256: Sha256Path, upload_id: UploadIdPath, body: UploadCompleteBody, request: Request
) -> ArchiveOut:
    """Check the uploaded object's size and sha256; only a match is stored as the archive."""
    uploads = platform_of(request).archive_uploads
    size = await run_in_threadpool(
        lambda: uploads.complete(
            sha256, upload_id, body.size, multipart_id=body.multipart_id, etags=body.etags
        )
    )
    return ArchiveOut(sha256=sha256, size=size)
