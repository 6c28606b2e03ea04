"""Keeps the gateway's copy of the routing table fresh.

Polls ``GET {control_plane}/v1/routing`` in a background task. The last good table stays in use
while the control plane is unreachable (logged once per outage) and is optionally written to a
cache file so a restarted gateway can serve before the control plane is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import ValidationError

from gpu_nodes.gateway.routing import RoutingSnapshot
from gpu_nodes.gateway.settings import GatewaySettings
from plinth.contracts.routing import RoutingTable

log = logging.getLogger("plinth.gateway")

# A request for something the table lacks triggers an immediate refresh (a model pushed or a
# key created since the last poll), but no more often than this, so a flood of requests for
# unknown names cannot turn into a flood of control-plane calls.
MISS_REFRESH_MIN_S = 0.25


class RoutingTableSource:
    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self.snapshot: RoutingSnapshot | None = None
        self._digest: str | None = None
        self._changed = asyncio.Event()
        self._in_outage = False
        self._miss_lock = asyncio.Lock()
        self._miss_refresh_started_at = float("-inf")  # monotonic start of the last miss refresh

    # ---- table ---------------------------------------------------------------------------
    def load_cache(self) -> None:
        path = self._settings.cache_file
        if path is None or not path.is_file() or self.snapshot is not None:
            return
        try:
            self._install(path.read_bytes(), persist=False)
            log.info("serving from cached routing table %s until the control plane answers", path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable routing table cache %s: %s", path, exc)

    def _install(self, raw: bytes, *, persist: bool) -> None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            return
        table = RoutingTable.model_validate_json(raw)
        self.snapshot = RoutingSnapshot(table, self._settings.cluster_id)
        self._digest = digest
        # Wake everything parked on the previous version, then start a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()
        if persist and self._settings.cache_file is not None:
            _write_atomic(self._settings.cache_file, raw)

    async def refresh(self) -> bool:
        url = f"{self._settings.control_plane_base}/v1/routing"
        try:
            response = await self._client.get(
                url,
                headers=self._settings.control_plane_headers,
                timeout=self._settings.control_plane_timeout_s,
            )
            response.raise_for_status()
            self._install(response.content, persist=True)
        except (httpx.HTTPError, ValidationError, ValueError) as exc:
            if not self._in_outage:
                self._in_outage = True
                log.warning(
                    "routing table unavailable from %s (%s); serving the last good copy",
                    url,
                    describe_error(exc),
                )
            return False
        if self._in_outage:
            self._in_outage = False
            log.info("routing table reachable again at %s", url)
        return True

    async def refresh_on_miss(self) -> None:
        """Refresh now because a request named something our copy lacks.

        Single-flight: a request whose miss came before a miss refresh started reuses that
        refresh. Rate-limited by waiting, not skipping, so every miss is answered from a
        table fetched after it happened.
        """
        missed_at = time.monotonic()
        async with self._miss_lock:
            if self._miss_refresh_started_at >= missed_at:
                return
            wait = self._miss_refresh_started_at + MISS_REFRESH_MIN_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._miss_refresh_started_at = time.monotonic()
            await self.refresh()

    async def run(self, requests_parked: Callable[[], bool] = lambda: False) -> None:
        """Poll until cancelled; faster while ``requests_parked()`` (they wait for a replica)."""
        while True:
            await self.refresh()
            interval = self._settings.poll_interval_s
            if requests_parked():
                interval = min(interval, self._settings.parked_poll_interval_s)
            await asyncio.sleep(interval)

    async def wait_for_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass


def describe_error(exc: BaseException) -> str:
    """The first line of an error, at most 200 characters, for a log line."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
