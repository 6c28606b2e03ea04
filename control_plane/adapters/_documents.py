"""JSON encoding of metadata documents, shared by the metadata store adapters."""

from __future__ import annotations

import json
from typing import Any

from control_plane.adapters.exceptions import NotSerializable


def encode_document(table: str, key: str, value: dict[str, Any]) -> str:
    """Compact JSON of ``value``; NotSerializable names the item when it cannot be stored."""
    if not isinstance(value, dict):
        raise NotSerializable(table, key, f"expected a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(table, key, str(exc)) from exc


def index_of(table: str, key: str, value: dict[str, Any]) -> str | None:
    """The document's secondary index entry (``INDEX_FIELD``), checked to be a string."""
    from control_plane.ports.store import INDEX_FIELD

    entry = value.get(INDEX_FIELD)
    if entry is not None and (not isinstance(entry, str) or not entry):
        raise NotSerializable(table, key, f"{INDEX_FIELD} must be a non-empty string: {entry!r}")
    return entry
