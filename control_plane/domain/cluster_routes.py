"""The clusters' part of the routing table: where each cluster is and whether to route there.

A cluster is routable while its gateways' heartbeats are fresh and the placement has not
marked it unhealthy. The heartbeat check makes gateways stop routing to a dead cluster as
soon as its heartbeat is late, before the placement has re-placed its replicas; the
placement's mark keeps it out until its recovery hold is over (no flapping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import Cluster
from control_plane.domain.placement_recorder import (
    CLUSTER_HEALTH_PREFIX,
    PLACEMENTS,
    placement_constraints,
)
from control_plane.ports.store import MetadataStore
from plinth.contracts.routing import ClusterRoute


class ClusterRoutes:
    def __init__(
        self,
        store: MetadataStore,
        clock: Callable[[], float],
        *,
        heartbeat_timeout_s: float,
    ) -> None:
        self._store = store
        self._registry = ClusterRegistry(store)
        self._clock = clock
        self._heartbeat_timeout_s = heartbeat_timeout_s

    def clusters(self) -> dict[str, ClusterRoute]:
        now = self._clock()
        marked = self._placement_health()
        return {
            c.id: ClusterRoute(
                region=c.region,
                latitude=c.location.latitude,
                longitude=c.location.longitude,
                gateway_url=c.gateway_url,
                residency=c.residency,
                healthy=self._routable(c, now) and marked.get(c.id, True),
            )
            for c in self._registry.list()
        }

    def shortfalls(self) -> dict[str, str]:
        """Why each short deployment is short, by deployment key (the gateways' 503 reason)."""
        reasons: dict[str, str] = {}
        for item in self._store.scan(PLACEMENTS):
            if item.key.startswith(CLUSTER_HEALTH_PREFIX):
                continue
            shortfall = item.value.get("shortfall") or {}
            if shortfall.get("missing"):
                reasons[item.key] = str(shortfall.get("reason", ""))
        return reasons

    def _routable(self, cluster: Cluster, now: float) -> bool:
        heartbeat = cluster.health.last_heartbeat
        if cluster.health.draining or heartbeat is None:
            return False
        return now - heartbeat <= self._heartbeat_timeout_s

    def _placement_health(self) -> dict[str, bool]:
        return {
            item.key[len(CLUSTER_HEALTH_PREFIX) :]: bool(item.value.get("healthy", True))
            for item in self._store.scan(PLACEMENTS)
            if item.key.startswith(CLUSTER_HEALTH_PREFIX)
        }


def residency_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment route's residency and region lock, from its package's placement section."""
    constraints = placement_constraints(config)
    return {"residency": constraints.residency, "regions": sorted(constraints.regions)}
