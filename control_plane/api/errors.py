"""The one place where domain errors become HTTP responses.

Body: ``{"error": {"code": <stable code>, "message": <what is wrong>}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane.exceptions import ControlPlaneError

logger = logging.getLogger(__name__)

STATUS_BY_CODE: dict[str, int] = {
    "NOT_FOUND": 404,
    "VALIDATION": 422,
    "BAD_REQUEST": 400,
    "CONFLICT": 409,
    "PROMOTION_IN_PROGRESS": 409,
    "UNAUTHORIZED": 401,
    "ARCHIVE_INVALID": 400,
    "HASH_MISMATCH": 400,
    "PAYLOAD_TOO_LARGE": 413,
    "SETTINGS": 500,
    "ADAPTER_UNAVAILABLE": 501,
    "INTERNAL": 500,
}

_CODE_BY_HTTP_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Api-Key"} if status == 401 else None
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message}}, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControlPlaneError)
    async def domain_error(request: Request, exc: ControlPlaneError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 500)
        if exc.code == "INTERNAL":
            # An adapter's or port's error that the domain did not turn into a domain error:
            # its message may name internals (paths, tables), so it goes to the log only.
            logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            return error_response(status, exc.code, "internal error (see the control plane log)")
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ()) if part != "body"]
            field = ".".join(location) or "body"
            problems.append(f"{field}: {error.get('msg', 'invalid')}")
        return error_response(422, "VALIDATION", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, f"HTTP_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail))
