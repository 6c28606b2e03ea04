"""Metadata store port: versioned documents in named tables.

Shaped so DynamoDB fits it directly: ``table`` + ``key`` are the partition and
sort key, ``version`` is the attribute a conditional write checks. Optimistic
concurrency is how the domain serialises racing writers (e.g. two promotions of
one environment): read an item, compute, ``put(..., expected_version=item.version)``;
the loser gets :class:`VersionConflict` and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from control_plane.exceptions import ControlPlaneError


class VersionConflict(ControlPlaneError):
    """A conditional write lost: the item changed (or exists / is gone) since it was read."""

    code = "CONFLICT"

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"{table}/{key} was changed by another writer")
        self.table = table
        self.key = key


@dataclass(frozen=True)
class Item:
    key: str
    version: int
    value: dict[str, Any]


# ``expected_version`` sentinel meaning "the item must not exist yet".
ABSENT = 0
# A document's field naming its place in the table's secondary index (a string; absent or
# None: not indexed). Written atomically with the document, so it never drifts from it;
# ``find`` reads by it without reading the whole table (a GSI on DynamoDB, an index on SQLite).
INDEX_FIELD = "_index"


class MetadataStore(Protocol):
    def get(self, table: str, key: str) -> Item | None:
        """The item, or None when absent."""
        ...

    def put(
        self, table: str, key: str, value: dict[str, Any], *, expected_version: int | None = None
    ) -> int:
        """Write ``value`` (JSON-serialisable) and return the new version (1 for a new item).

        ``expected_version=None`` writes unconditionally; ``ABSENT`` (0) only creates;
        any other number only replaces that exact version. Otherwise raises VersionConflict.
        """
        ...

    def delete(self, table: str, key: str, *, expected_version: int | None = None) -> None:
        """Remove the item (no error when already absent unless ``expected_version`` is set)."""
        ...

    def scan(self, table: str, *, prefix: str = "") -> list[Item]:
        """Every item of ``table`` whose key starts with ``prefix``, ordered by key."""
        ...

    def find(self, table: str, index_prefix: str) -> list[Item]:
        """The items of ``table`` whose ``INDEX_FIELD`` starts with ``index_prefix``, in
        index order; reads only those. May lag a write by a moment (DynamoDB's GSI)."""
        ...

    def close(self) -> None: ...
