"""The one place where domain errors become HTTP responses.

Body: ``{"error": {"code": <stable code>, "message": <what is wrong>}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Api-Key"
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": message}}, headers=headers
    )


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path`` (the ``Allow`` of a 405)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods.update(route.methods)
    return sorted(methods)


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
            problems.append(f"{field}: {error.get('msg', 'invalid')}{_shown_input(error)}")
        return error_response(422, "VALIDATION", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, f"HTTP_{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # one route may not know the methods its siblings serve
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return error_response(exc.status_code, code, str(exc.detail), headers)


def _shown_input(error: Any) -> str:
    """The rejected value, when short and not possibly a secret (a secret's ``value``)."""
    value = error.get("input")
    loc = error.get("loc") or ()
    if isinstance(value, dict | list) or value is None or (loc and loc[-1] == "value"):
        return ""
    text = repr(value)
    return f" (got {text})" if len(text) <= 100 else ""
