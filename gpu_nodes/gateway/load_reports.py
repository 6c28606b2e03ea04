"""The gateway's load signal for the autoscaler: counters on the hot path, a report a second.

The picker bumps two plain integer counters per deployment (``LoadCounters``): requests that
arrived and requests parked (no replica ready). In-flight requests are not counted again here:
the balancer already holds each replica's outstanding requests, and the reporter reads them
once a second. So the per-request cost is one dict update on arrival and two while parked.

``LoadReporter`` POSTs ``/v1/load_reports`` to the control plane about every second: one entry
per deployment with activity, and a few more (all zeros) after its activity ends so the
autoscaler sees the load drop rather than waiting for the last report to expire. The gateway
does not queue requests for a replica slot (the least-loaded replica takes each request and
queues it itself), so ``waiting`` is always 0 from this gateway. Everything runs on the event
loop: no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from gpu_nodes.gateway.balancer import ReplicaBalancer
from gpu_nodes.gateway.routing import RoutingSnapshot
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import describe_error

log = logging.getLogger("plinth.gateway")

LOAD_REPORTS_PATH = "/v1/load_reports"
# Reports (all zeros) still sent for a deployment after its last activity.
QUIET_REPORTS = 3
# Most deployments in one POST; more are sent in further POSTs of the same round.
MAX_DEPLOYMENTS_PER_REPORT = 500


class LoadCounters:
    """Per-deployment counts since the last report; written by the picker, read by the reporter.

    Keyed by deployment id (a string whose hash Python caches): no allocation per request.
    """

    def __init__(self) -> None:
        self.arrivals: dict[str, int] = {}
        self.parked: dict[str, int] = {}

    def arrived(self, deployment_id: str) -> None:
        self.arrivals[deployment_id] = self.arrivals.get(deployment_id, 0) + 1

    def park(self, deployment_id: str) -> None:
        self.parked[deployment_id] = self.parked.get(deployment_id, 0) + 1

    def unpark(self, deployment_id: str) -> None:
        left = self.parked.get(deployment_id, 0) - 1
        if left > 0:
            self.parked[deployment_id] = left
        else:
            self.parked.pop(deployment_id, None)

    def take_arrivals(self) -> dict[str, int]:
        """The arrivals since the last call; the counts start again from zero."""
        taken, self.arrivals = self.arrivals, {}
        return taken


def collect_load(
    counters: LoadCounters,
    balancer: ReplicaBalancer,
    snapshot: RoutingSnapshot | None,
    quiet_left: dict[str, int],
) -> list[dict[str, Any]]:
    """One entry per deployment with activity now, or within the last ``QUIET_REPORTS``.

    ``quiet_left`` (deployment id -> zero reports still to send) is updated in place.
    """
    arrivals = counters.take_arrivals()
    entries: list[dict[str, Any]] = []
    if snapshot is None:
        return entries
    for model_id, model in snapshot.table.models.items():
        for deployment_id, route in model.deployments.items():
            replicas = {
                r.id: balancer.outstanding(r.url)
                for r in route.replicas
                if balancer.outstanding(r.url) > 0
            }
            entry = {
                "model_id": model_id,
                "deployment_id": deployment_id,
                "in_flight": sum(replicas.values()),
                "waiting": 0,
                "parked": counters.parked.get(deployment_id, 0),
                "arrivals": arrivals.get(deployment_id, 0),
                "replicas": replicas,
            }
            if entry["in_flight"] or entry["parked"] or entry["arrivals"]:
                quiet_left[deployment_id] = QUIET_REPORTS
            elif quiet_left.get(deployment_id, 0) > 0:
                quiet_left[deployment_id] -= 1
            else:
                quiet_left.pop(deployment_id, None)
                continue
            entries.append(entry)
    return entries


class LoadReporter:
    """Sends the collected load to the control plane every ``load_report_interval_s``."""

    def __init__(
        self,
        settings: GatewaySettings,
        client: httpx.AsyncClient,
        counters: LoadCounters,
        balancer: ReplicaBalancer,
        snapshot: Callable[[], RoutingSnapshot | None],
    ) -> None:
        self._settings = settings
        self._client = client
        self._counters = counters
        self._balancer = balancer
        self._snapshot = snapshot
        self._quiet_left: dict[str, int] = {}
        self._failing = False

    async def run(self) -> None:
        """Report until cancelled."""
        while True:
            await asyncio.sleep(self._settings.load_report_interval_s)
            await self.report_once()

    async def report_once(self) -> int:
        """Send one round; returns the deployments reported (0 when nothing was active)."""
        entries = collect_load(self._counters, self._balancer, self._snapshot(), self._quiet_left)
        at = time.time()
        for start in range(0, len(entries), MAX_DEPLOYMENTS_PER_REPORT):
            chunk = entries[start : start + MAX_DEPLOYMENTS_PER_REPORT]
            await self._send(
                {"gateway_id": self._settings.gateway_id, "at": at, "deployments": chunk}
            )
        return len(entries)

    async def _send(self, body: dict[str, Any]) -> None:
        url = self._settings.control_plane_base + LOAD_REPORTS_PATH
        try:
            response = await self._client.post(
                url,
                json=body,
                headers=self._settings.control_plane_headers,
                timeout=self._settings.control_plane_timeout_s,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if not self._failing:  # once per outage, not once a second
                self._failing = True
                log.warning("load reports to %s failing: %s", url, describe_error(exc))
            return
        if self._failing:
            self._failing = False
            log.info("load reports to %s accepted again", url)
