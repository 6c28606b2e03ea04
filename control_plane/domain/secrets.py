"""Secrets: upserted by name, values handed only to replicas (never returned or logged)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from control_plane.domain.repository import SECRETS
from control_plane.exceptions import NotFound, ValidationFailed
from control_plane.ports.store import MetadataStore

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: float
    updated_at: float


class SecretService:
    def __init__(self, store: MetadataStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def upsert(self, name: str, value: str) -> SecretInfo:
        if not _NAME_PATTERN.match(name):
            raise ValidationFailed(
                f"name: {name!r} must be 1-128 letters, digits or _.- (it becomes a file name)"
            )
        if not value:
            # An empty secret is always a mistake (an empty stdin, an unset variable) and would
            # only surface later as a confusing auth failure inside the model.
            raise ValidationFailed(f"value: secret {name!r} is empty; nothing was stored")
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise ValidationFailed(
                f"value: secret {name!r} is larger than {MAX_SECRET_BYTES} bytes"
            )
        now = self._clock()
        existing = self._store.get(SECRETS, name)
        created_at = float(existing.value["created_at"]) if existing else now
        self._store.put(
            SECRETS, name, {"value": value, "created_at": created_at, "updated_at": now}
        )
        return SecretInfo(name=name, created_at=created_at, updated_at=now)

    def list_secrets(self) -> list[SecretInfo]:
        return [
            SecretInfo(
                name=item.key,
                created_at=float(item.value["created_at"]),
                updated_at=float(item.value["updated_at"]),
            )
            for item in self._store.scan(SECRETS)
        ]

    def delete(self, name: str) -> None:
        if self._store.get(SECRETS, name) is None:
            raise NotFound(f"secret {name!r} not found")
        self._store.delete(SECRETS, name)

    def values_for(self, names: Iterable[str]) -> dict[str, str]:
        """Values of the named secrets that exist (the model server reports missing ones)."""
        values: dict[str, str] = {}
        for name in names:
            item = self._store.get(SECRETS, name)
            if item is not None:
                values[name] = str(item.value["value"])
        return values
