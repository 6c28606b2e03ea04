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
