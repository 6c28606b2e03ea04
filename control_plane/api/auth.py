"""Request authentication: ``Authorization: Api-Key <key>`` or ``Bearer <key>``.

Gateways may present the internal token instead, on the routes they need
(routing table, wake). Keys are compared by hash and never logged.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from control_plane.exceptions import Unauthorized
from control_plane.wiring import Platform

_SCHEMES = ("api-key", "bearer")


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


def require_api_key(request: Request) -> None:
    if not platform_of(request).api_keys.is_valid(presented_credential(request)):
        raise Unauthorized("invalid API key")


def require_api_key_or_internal_token(request: Request) -> None:
    credential = presented_credential(request)
    platform = platform_of(request)
    token = platform.settings.internal_token
    if token and hmac.compare_digest(credential.encode(), token.encode()):
        return
    if not platform.api_keys.is_valid(credential):
        raise Unauthorized("invalid API key or internal token")
