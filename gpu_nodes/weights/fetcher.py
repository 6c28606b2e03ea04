"""Fetch one chunk over HTTP from the first tier that has it, resuming partial downloads.

Tiers are base URLs serving ``GET /chunks/<sha256>`` with Range support (cluster cache first,
then origin). ``fetch`` streams into ``<hash>.part``; after a dropped connection, a 5xx or a
crash of the whole process, the next attempt asks for ``Range: bytes=<part size>-`` so finished
bytes are never fetched twice. The completed part is verified against its sha256 before it is
renamed into place; a mismatch deletes it and starts over. ``fetch_into`` writes the chunk
straight into its place in a file blob (no second copy), resuming the same way in process.
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
from typing import Any

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


@dataclass
class _Received:
    """What has arrived of one chunk so far: resumed from here after a dropped transfer."""

    digest: Any
    have: int = 0

    def restart(self) -> None:
        self.digest, self.have = hashlib.sha256(), 0


def _hash_existing(part: Path) -> _Received:
    received = _Received(hashlib.sha256())
    if part.exists():
        with part.open("rb") as handle:
            while piece := handle.read(8 << 20):
                received.digest.update(piece)
                received.have += len(piece)
    return received


_BATCH_BYTES = 1 << 20


def _pwrite_all(fd: int, data: bytes | bytearray, position: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written


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
        """Download the chunk to ``dest`` via ``part`` (resumed from its size after a crash)."""

        def attempt(tier: str) -> None:
            received = _hash_existing(part)
            if received.have > length:
                part.unlink()
                received.restart()
            opened: list[int] = []

            def open_part() -> int:
                # Created only once the tier answered: an empty part is never left behind.
                opened.append(os.open(part, os.O_WRONLY | os.O_CREAT, 0o644))
                return opened[0]

            try:
                self._receive(tier, chunk_hash, length, received, open_part, 0, whole_file=True)
            finally:
                for fd in opened:
                    os.close(fd)
            if not self._verified(chunk_hash, length, received):
                part.unlink(missing_ok=True)
                raise IntegrityError(f"chunk {chunk_hash}: got bytes that do not verify")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, dest)

        self._with_retries(chunk_hash, attempt)

    def fetch_into(self, chunk_hash: str, length: int, fd: int, offset: int) -> None:
        """Download the chunk into ``fd`` at ``offset`` (a file blob being written in place);
        a dropped transfer resumes from what arrived, bad bytes are fetched again."""
        received = _Received(hashlib.sha256())

        def attempt(tier: str) -> None:
            self._receive(tier, chunk_hash, length, received, lambda: fd, offset)
            if not self._verified(chunk_hash, length, received):
                received.restart()
                raise IntegrityError(f"chunk {chunk_hash}: got bytes that do not verify")

        self._with_retries(chunk_hash, attempt)

    def _with_retries(self, chunk_hash: str, attempt: Callable[[str], None]) -> None:
        """Run ``attempt(tier)`` until it returns; ChunkFetchError when out of tries."""
        if not self._tiers:
            raise ChunkFetchError(
                f"chunk {chunk_hash} is not on this node and no cluster or origin URL was given"
            )
        errors: list[str] = []
        for number in range(self._retry.attempts):
            tier = self._pick_tier(number)
            try:
                attempt(tier)
                return
            except httpx.ConnectError as exc:
                errors.append(f"{tier}: {type(exc).__name__}: {exc}")
                if self._mark_down(tier):
                    continue  # another tier is up: try it without backing off
            except (httpx.HTTPError, OSError, IntegrityError, ChunkFetchError) as exc:
                errors.append(f"{tier}: {type(exc).__name__}: {exc}")
            time.sleep(self._retry.delay(number))
        raise ChunkFetchError(
            f"chunk {chunk_hash} failed after {self._retry.attempts} attempts: {errors[-3:]}"
        )

    def _receive(
        self,
        tier: str,
        chunk_hash: str,
        length: int,
        received: _Received,
        open_fd: Callable[[], int],
        base: int,
        *,
        whole_file: bool = False,
    ) -> None:
        """One GET (ranged when resuming) writing at ``base + received.have`` as bytes arrive.

        ``open_fd`` gives the descriptor once the tier answered; ``whole_file``: it holds only
        this chunk (a part file) and is truncated when the transfer starts over."""
        if received.have >= length:
            return
        have = received.have
        headers = {"Range": f"bytes={have}-{length - 1}"} if have else {}
        with self._client.stream("GET", f"{tier}/chunks/{chunk_hash}", headers=headers) as resp:
            if resp.status_code not in (200, 206):
                raise ChunkFetchError(f"HTTP {resp.status_code}")
            fd = open_fd()
            if resp.status_code == 200 and have:
                # The server ignored the Range header: start over.
                received.restart()
                if whole_file:
                    os.ftruncate(fd, 0)
            batch = bytearray()
            try:
                for piece in resp.iter_raw():
                    batch += piece
                    if len(batch) >= _BATCH_BYTES:
                        self._store(fd, base, received, batch)
            finally:
                # What arrived before a dropped transfer is kept: the next attempt resumes there.
                self._store(fd, base, received, batch)

    def _store(self, fd: int, base: int, received: _Received, batch: bytearray) -> None:
        """Write and hash the buffered bytes: one syscall and one hash call per ~1 MiB instead
        of per 64 KiB network read keeps download threads from contending for the GIL."""
        if not batch:
            return
        _pwrite_all(fd, batch, base + received.have)
        received.digest.update(batch)
        received.have += len(batch)
        if self._on_bytes is not None:
            self._on_bytes(len(batch))
        batch.clear()

    @staticmethod
    def _verified(chunk_hash: str, length: int, received: _Received) -> bool:
        """True for the whole verified chunk; raises (keeping what arrived) when it is short."""
        if received.have < length:
            raise ChunkFetchError(f"short body: {received.have} of {length} bytes")
        return received.have == length and received.digest.hexdigest() == chunk_hash
