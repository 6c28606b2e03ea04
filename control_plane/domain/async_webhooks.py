"""Webhooks of async requests: Baseten's body and signature, target checks, the secret.

The body is serialised once and those exact bytes are both signed and sent, so a receiver
that computes ``HMAC-SHA256(secret, raw body)`` matches byte for byte. While a secret is
being rotated every live secret signs: ``X-BASETEN-SIGNATURE: v1=<a>,v1=<b>``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from control_plane.exceptions import ValidationFailed
from control_plane.ports.store import MetadataStore

SIGNATURE_HEADER = "X-BASETEN-SIGNATURE"
DELIVERY_ID_HEADER = "X-Plinth-Delivery-Id"
WEBHOOK_SECRETS = "async_webhook_secrets"
_SECRETS_KEY = "current"
DEFAULT_ROTATION_S = 24 * 3600.0
# Cloud metadata endpoints: never a webhook target, whatever the settings say.
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def check_webhook_target(url: str, *, allow_private: bool, resolve: Resolver) -> None:
    """http(s) only; no link-local or metadata address; private/loopback only when allowed.

    Called at submit (early 422) and again before each delivery (DNS may have changed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"webhook_endpoint: {url!r} must be an http(s) URL with a host")
    try:
        addresses = resolve(parts.hostname)
    except OSError:
        raise ValidationFailed(
            f"webhook_endpoint: host {parts.hostname!r} does not resolve"
        ) from None
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address in _METADATA_ADDRESSES or address.is_link_local:
            raise ValidationFailed(
                f"webhook_endpoint: {parts.hostname!r} is a link-local or metadata address"
            )
        if not allow_private and not address.is_global:
            raise ValidationFailed(
                f"webhook_endpoint: {parts.hostname!r} is a private address "
                "(set PLINTH_ASYNC_ALLOW_PRIVATE_WEBHOOKS to allow it)"
            )


def signature(body: bytes, secret_values: list[str]) -> str:
    return ",".join(
        "v1=" + hmac.new(value.encode(), body, hashlib.sha256).hexdigest()
        for value in secret_values
    )


def webhook_body(record: dict[str, Any], now: float) -> bytes:
    """Baseten's ``async_request_completed`` body, as the exact bytes to sign and send."""
    body = {
        "request_id": record["request_id"],
        "model_id": record["model_id"],
        "deployment_id": record["deployment_id"],
        "type": "async_request_completed",
        "time": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(),
        "data": record.get("data"),
        "errors": record.get("errors", []),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def delivery_id(request_id: str) -> str:
    """The same for every attempt (and replay) of one request: receivers drop duplicates."""
    return f"whd_{request_id}"


@dataclass(frozen=True)
class SecretInfo:
    secret_id: str
    created_at: float
    expires_at: float | None


class WebhookSecretService:
    """Secrets that sign webhooks. Creating one returns its value once; the previous ones
    keep signing for ``rotation_s`` so receivers can switch without dropping deliveries."""

    def __init__(
        self, store: MetadataStore, clock: Callable[[], float], *, rotation_s: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._rotation_s = rotation_s

    def _entries(self) -> tuple[list[dict[str, Any]], int]:
        item = self._store.get(WEBHOOK_SECRETS, _SECRETS_KEY)
        if item is None:
            return [], 0
        return list(item.value["secrets"]), item.version

    def create(self) -> tuple[str, SecretInfo]:
        now = self._clock()
        entries, version = self._entries()
        entries = [
            {
                **e,
                "expires_at": min(
                    e["expires_at"] or now + self._rotation_s, now + self._rotation_s
                ),
            }
            for e in entries
            if e["expires_at"] is None or e["expires_at"] > now
        ]
        value = "whsec_" + secrets.token_urlsafe(32)
        secret_id = secrets.token_hex(4)
        entries.append(
            {"secret_id": secret_id, "value": value, "created_at": now, "expires_at": None}
        )
        self._store.put(
            WEBHOOK_SECRETS, _SECRETS_KEY, {"secrets": entries}, expected_version=version
        )
        return value, SecretInfo(secret_id, now, None)

    def list_secrets(self) -> list[SecretInfo]:
        now = self._clock()
        return [
            SecretInfo(e["secret_id"], e["created_at"], e["expires_at"])
            for e in self._entries()[0]
            if e["expires_at"] is None or e["expires_at"] > now
        ]

    def signing_values(self) -> list[str]:
        """Live secrets, newest first (never logged or returned)."""
        now = self._clock()
        live = [e for e in self._entries()[0] if e["expires_at"] is None or e["expires_at"] > now]
        return [e["value"] for e in reversed(live)]  # entries are kept oldest first
