"""Fetch one chunk over HTTP from the first tier that has it, resuming partial downloads.

Tiers are base URLs serving ``GET /chunks/<sha256>`` with Range support (cluster cache first,
then origin). A download streams into ``<hash>.part``; after a dropped connection, a 5xx or a
crash of the whole process, the next attempt asks for ``Range: bytes=<part size>-`` so finished
bytes are never fetched twice. The completed part is verified against its sha256 before it is
renamed into place; a mismatch deletes it and starts over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from gpu_nodes.weights.exceptions import ChunkFetchError, IntegrityError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    tier_cooldown_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay_s, self.base_delay_s * (2**attempt)))


def _hash_existing(part: Path) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    size = 0
    if part.exists():
        with part.open("rb") as handle:
            while piece := handle.read(8 << 20):
                digest.update(piece)
                size += len(piece)
    return digest, size


class ChunkFetcher:
    """Downloads chunks into place; ``on_bytes`` is told how many network bytes arrived."""

    def __init__(
        self,
        tiers: Sequence[str],
        *,
        client: httpx.Client,
        retry: RetryPolicy | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._tiers = [t.rstrip("/") for t in tiers]
        self._client = client
        self._retry = retry or RetryPolicy()
        self._on_bytes = on_bytes
        # A tier that refused a connection is skipped for a while, so a dead cluster cache costs
        # one failed connect per cool-down instead of one per chunk.
        self._down_until: dict[str, float] = {}
        self._down_lock = threading.Lock()

    def _pick_tier(self, attempt: int) -> str:
        now = time.monotonic()
        with self._down_lock:
            healthy = [t for t in self._tiers if self._down_until.get(t, 0.0) <= now]
        candidates = healthy or self._tiers
        return candidates[attempt % len(candidates)]

    def _mark_down(self, tier: str) -> bool:
        """Cool ``tier`` down; True if another tier is still up."""
        now = time.monotonic()
        with self._down_lock:
            self._down_until[tier] = now + self._retry.tier_cooldown_s
            return any(self._down_until.get(t, 0.0) <= now for t in self._tiers)

    def fetch(self, chunk_hash: str, length: int, part: Path, dest: Path) -> None:
        """Download the chunk to ``dest`` via ``part``; ChunkFetchError when out of tries."""
        if not self._tiers:
            raise ChunkFetchError(
                f"chunk {chunk_hash} is not on this node and no cluster or origin URL was given"
            )
        errors: list[str] = []
        for attempt in range(self._retry.attempts):
            tier = self._pick_tier(attempt)
            try:
                if self._try_tier(tier, chunk_hash, length, part):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(part, dest)
                    return
            except httpx.ConnectError as exc:
                errors.append(f"{tier}: {type(exc).__name__}: {exc}")
                if self._mark_down(tier):
                    continue  # another tier is up: try it without backing off
            except (httpx.HTTPError, OSError, IntegrityError, ChunkFetchError) as exc:
                errors.append(f"{tier}: {type(exc).__name__}: {exc}")
            time.sleep(self._retry.delay(attempt))
        raise ChunkFetchError(
            f"chunk {chunk_hash} failed after {self._retry.attempts} attempts: {errors[-3:]}"
        )

    def _try_tier(self, tier: str, chunk_hash: str, length: int, part: Path) -> bool:
        """One GET (ranged when resuming); True once ``part`` holds the verified chunk."""
        digest, have = _hash_existing(part)
        if have > length:
            part.unlink()
            digest, have = hashlib.sha256(), 0
        if have < length:
            headers = {"Range": f"bytes={have}-{length - 1}"} if have else {}
            with self._client.stream("GET", f"{tier}/chunks/{chunk_hash}", headers=headers) as resp:
                if resp.status_code == 200 and have:
                    # The server ignored the Range header: start over.
                    digest, have = hashlib.sha256(), 0
                    part.unlink(missing_ok=True)
                elif resp.status_code not in (200, 206):
                    raise ChunkFetchError(f"HTTP {resp.status_code}")
                with part.open("ab") as handle:
                    for piece in resp.iter_raw():
                        handle.write(piece)
                        digest.update(piece)
                        have += len(piece)
                        if self._on_bytes is not None:
                            self._on_bytes(len(piece))
        if have < length:
            # Keep the part: the next attempt resumes from here.
            raise ChunkFetchError(f"short body: {have} of {length} bytes")
        if have != length or digest.hexdigest() != chunk_hash:
            part.unlink(missing_ok=True)
            raise IntegrityError(f"chunk {chunk_hash}: got {have} bytes that do not verify")
        return True
