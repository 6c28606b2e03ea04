"""Request authentication: ``Authorization: Api-Key <key>`` or ``Bearer <key>``.

Gateways may present the internal token instead, on the routes they need
(routing table, wake). Keys are compared by hash and never logged.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from control_plane.exceptions import Unauthorized
from control_plane.wiring import Platform

_SCHEMES = ("api-key", "bearer")

# Declared so the OpenAPI document states how to authenticate (and Swagger UI's "Authorize"
# works); either one is accepted. The check itself is presented_credential below.
API_KEY_SCHEME = APIKeyHeader(
    name="Authorization",
    scheme_name="ApiKey",
    description="The whole header value: `Api-Key <key>`.",
    auto_error=False,
)
BEARER_SCHEME = HTTPBearer(
    scheme_name="Bearer", description="`Authorization: Bearer <key>`.", auto_error=False
)


def presented_credential(request: Request) -> str:
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise Unauthorized("missing Authorization header (use 'Api-Key <key>' or 'Bearer <key>')")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() not in _SCHEMES or not credential.strip():
        raise Unauthorized("Authorization header must be 'Api-Key <key>' or 'Bearer <key>'")
    return credential.strip()


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def require_api_key(
    request: Request,
    _api_key: str | None = Security(API_KEY_SCHEME),
    _bearer: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME),
) -> None:
    if not platform_of(request).api_keys.is_valid(presented_credential(request)):
        raise Unauthorized("invalid API key")


def require_api_key_or_internal_token(
    request: Request,
    _api_key: str | None = Security(API_KEY_SCHEME),
    _bearer: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME),
) -> None:
    credential = presented_credential(request)
    platform = platform_of(request)
    token = platform.settings.internal_token
    if token and hmac.compare_digest(credential.encode(), token.encode()):
        return
    if not platform.api_keys.is_valid(credential):
        raise Unauthorized("invalid API key or internal token")
