"""API keys: stored as sha256 hashes only; the key itself is shown once, at creation."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.domain.repository import API_KEYS
from control_plane.exceptions import Conflict, NotFound, ValidationFailed
from control_plane.ports.store import ABSENT, MetadataStore, VersionConflict

KEY_PREFIX = "pl_"
# Characters of the key shown in listings (enough to tell keys apart, useless to an attacker).
DISPLAY_PREFIX_LENGTH = 10
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9 _.:@-]{1,64}$")


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyInfo:
    prefix: str
    name: str
    created_at: float


class ApiKeyService:
    def __init__(
        self,
        store: MetadataStore,
        clock: Callable[[], float],
        *,
        bootstrap_key: str | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._bootstrap_key = bootstrap_key

    def create(self, name: str) -> tuple[str, ApiKeyInfo]:
        """A new key and its listing entry; the key is never retrievable again."""
        if not _NAME_PATTERN.match(name):
            raise ValidationFailed(f"name: {name!r} must be 1-64 letters, digits, spaces or _.:@-")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        return key, self._store_key(key, name)

    def list_keys(self) -> list[ApiKeyInfo]:
        infos = [_info(item.value) for item in self._store.scan(API_KEYS)]
        return sorted(infos, key=lambda info: info.created_at)

    def delete(self, prefix: str) -> None:
        matches = [item for item in self._store.scan(API_KEYS) if item.value["prefix"] == prefix]
        if not matches:
            raise NotFound(f"no API key with prefix {prefix!r}")
        if len(matches) > 1:
            raise Conflict(f"prefix {prefix!r} matches {len(matches)} keys; delete is ambiguous")
        self._store.delete(API_KEYS, matches[0].key)

    def is_valid(self, key: str) -> bool:
        if not key:
            return False
        if self._bootstrap_key and hmac.compare_digest(key, self._bootstrap_key):
            return True
        return self._store.get(API_KEYS, hash_api_key(key)) is not None

    def hashes(self) -> list[str]:
        """sha256 hex of every valid key (the gateways check keys against these)."""
        hashes = {item.key for item in self._store.scan(API_KEYS)}
        if self._bootstrap_key:
            hashes.add(hash_api_key(self._bootstrap_key))
        return sorted(hashes)

    def ensure_admin_key(self) -> str | None:
        """Store the bootstrap key, or create one when no key exists; returns a key it stored."""
        if self._bootstrap_key:
            if self._store.get(API_KEYS, hash_api_key(self._bootstrap_key)) is not None:
                return None
            try:
                self._store_key(self._bootstrap_key, "admin")
            except Conflict:
                return None
            return self._bootstrap_key
        if self._store.scan(API_KEYS):
            return None
        key, _ = self.create("admin")
        return key

    def _store_key(self, key: str, name: str) -> ApiKeyInfo:
        # Never show more than half of a (possibly short, user-chosen) key.
        shown = key[: min(DISPLAY_PREFIX_LENGTH, len(key) // 2)]
        info = ApiKeyInfo(prefix=shown, name=name, created_at=self._clock())
        value = {"prefix": info.prefix, "name": info.name, "created_at": info.created_at}
        try:
            self._store.put(API_KEYS, hash_api_key(key), value, expected_version=ABSENT)
        except VersionConflict:
            raise Conflict("that API key already exists") from None
        return info


def _info(value: dict[str, Any]) -> ApiKeyInfo:
    return ApiKeyInfo(
        prefix=str(value["prefix"]), name=str(value["name"]), created_at=float(value["created_at"])
    )
