"""A cluster's gateway tells the control plane that its cluster is alive.

``POST /v1/clusters/{id}/heartbeat`` (internal token) every ``heartbeat_interval_s`` while the
gateway runs with ``--cluster-id``. The placement marks a cluster whose heartbeats stop as
unhealthy and re-places its replicas; the routing table stops sending traffic there as soon
as the heartbeat is late.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import describe_error

log = logging.getLogger("plinth.gateway")


class ClusterHeartbeat:
    def __init__(self, settings: GatewaySettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._failing = False

    async def run(self) -> None:
        """Beat until cancelled (nothing to do without a cluster id)."""
        if not self._settings.cluster_id:
            return
        while True:
            await self.beat_once()
            await asyncio.sleep(self._settings.heartbeat_interval_s)

    async def beat_once(self) -> bool:
        url = (
            f"{self._settings.control_plane_base}/v1/clusters/{self._settings.cluster_id}/heartbeat"
        )
        try:
            response = await self._client.post(
                url,
                headers=self._settings.control_plane_headers,
                timeout=self._settings.control_plane_timeout_s,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if not self._failing:  # once per outage, not once a beat
                self._failing = True
                log.warning("heartbeats to %s failing: %s", url, describe_error(exc))
            return False
        if self._failing:
            self._failing = False
            log.info("heartbeats to %s accepted again", url)
        return True
