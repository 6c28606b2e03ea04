"""Secrets: upserted by name, values handed only to replicas (never returned or logged).

Values are stored sealed (``control_plane.domain.envelope``): a data key per write, wrapped by
the current key-encryption key. A record written before encryption (``{"value": ...}``) is
still read, and is sealed on its next write or by :meth:`SecretService.rewrap`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from control_plane.domain.envelope import SecretEnvelope
from control_plane.domain.repository import SECRETS
from control_plane.exceptions import NotFound, ValidationFailed
from control_plane.ports.store import Item, MetadataStore, VersionConflict

logger = logging.getLogger(__name__)

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RewrapReport:
    """What a re-wrap did: secrets moved to ``kek_id`` and those already under it."""

    kek_id: str
    rewrapped: list[str]
    already_current: list[str]


class SecretService:
    def __init__(
        self, store: MetadataStore, clock: Callable[[], float], envelope: SecretEnvelope
    ) -> None:
        self._store = store
        self._clock = clock
        self._envelope = envelope

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
        record = {
            "sealed": self._envelope.seal(name, value),
            "created_at": created_at,
            "updated_at": now,
        }
        self._store.put(SECRETS, name, record)
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
                values[name] = self._value_of(item)
        return values

    def rewrap(self) -> RewrapReport:
        """Seal every secret under the current KEK: plaintext records and older KEK versions.

        Each write is conditional on the version read, so a value upserted meanwhile (already
        sealed under the current KEK) is never overwritten with the older one.
        """
        kek_id = self._envelope.current_kek_id()
        rewrapped: list[str] = []
        current: list[str] = []
        for item in self._store.scan(SECRETS):
            sealed = item.value.get("sealed")
            if isinstance(sealed, dict) and SecretEnvelope.kek_of(sealed) == kek_id:
                current.append(item.key)
                continue
            record = {**item.value, "sealed": self._envelope.seal(item.key, self._value_of(item))}
            record.pop("value", None)
            try:
                self._store.put(SECRETS, item.key, record, expected_version=item.version)
            except VersionConflict:
                current.append(item.key)  # rewritten meanwhile by an upsert (current KEK)
                continue
            rewrapped.append(item.key)
        logger.info(
            "secrets re-wrapped under %s: %d moved, %d already current",
            kek_id,
            len(rewrapped),
            len(current),
        )
        return RewrapReport(kek_id=kek_id, rewrapped=rewrapped, already_current=current)

    def _value_of(self, item: Item) -> str:
        sealed: Any = item.value.get("sealed")
        if isinstance(sealed, dict):
            return self._envelope.open(item.key, sealed)
        return str(item.value["value"])  # written before secrets were encrypted
