"""Which cluster serves a request: this gateway's own, or the nearest other one (multi-cluster).

Pure: ``choose_cluster`` reads the routing table's clusters (region, coordinates, gateway URL,
residency, health) and the deployment's replicas (each with its cluster). The rules:

- only healthy clusters allowed by the deployment's residency and region lock serve it; none
  left is a 503 that says why (the request never goes outside its geography);
- "nearest" is the great-circle distance from the client's region (``x-plinth-client-region``,
  set by the edge) or else from this gateway's own cluster;
- the nearest allowed cluster with a ready replica serves it: here, or through that cluster's
  gateway; a request already forwarded is not sent back to a cluster it passed (``via``) and
  is forwarded at most ``max_hops`` times;
- no ready replica anywhere (every replica cold): it parks here while the deployment wakes,
  or, when this cluster may not serve it, at the nearest cluster that may.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from gpu_nodes.gateway.exceptions import NoClusterAvailableError
from plinth.contracts.routing import ClusterRoute, DeploymentRoute, RoutingTable

CLIENT_REGION_HEADER = "x-plinth-client-region"
HOPS_HEADER = "x-plinth-hops"
VIA_HEADER = "x-plinth-via"
_EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Here:
    """Serve from this gateway's own replicas (or park here)."""


@dataclass(frozen=True)
class Forward:
    cluster_id: str
    gateway_url: str


@dataclass(frozen=True)
class Hop:
    """Where the request has been: the clusters it passed and how often it was forwarded."""

    origin_region: str | None = None
    via: tuple[str, ...] = ()

    @property
    def hops(self) -> int:
        return len(self.via)


HERE = Here()


def choose_cluster(
    table: RoutingTable,
    own: str | None,
    deployment: DeploymentRoute,
    hop: Hop,
    *,
    max_hops: int,
    avoid: Collection[str] = (),
) -> Here | Forward:
    """Where to send a request for ``deployment`` that reached cluster ``own``'s gateway."""
    if not own or own not in table.clusters:
        return HERE  # a single cluster: every replica is ours
    allowed = [cid for cid, c in table.clusters.items() if c.healthy and _allows(c, deployment)]
    if not allowed:
        raise NoClusterAvailableError(_why_none(deployment))
    origin = _origin(table, own, hop.origin_region)
    order = sorted(allowed, key=lambda cid: (_distance_km(origin, table.clusters[cid]), cid))
    may_forward = hop.hops < max_hops
    skip = set(hop.via) | set(avoid) | {own}
    ready = {r.cluster for r in deployment.replicas if r.ready}
    for cluster_id in order:
        if cluster_id not in ready:
            continue
        if cluster_id == own:
            return HERE
        if may_forward and cluster_id not in skip:
            return _forward(table, cluster_id)
    if own in allowed:
        return HERE  # every replica is cold (or out of reach): park here while it wakes
    if may_forward:
        for cluster_id in order:
            if cluster_id not in skip:
                return _forward(table, cluster_id)
    raise NoClusterAvailableError(
        f"{_why_none(deployment)}; this cluster ({own}) may not serve it and the allowed"
        " clusters could not be reached"
    )


def ready_elsewhere(
    table: RoutingTable,
    own: str | None,
    deployment: DeploymentRoute,
    avoid: Collection[str] = (),
) -> bool:
    """A healthy, allowed cluster other than ``own`` (and not avoided) has a ready replica:
    a request parked here should go there."""
    if not own or own not in table.clusters:
        return False
    for replica in deployment.replicas:
        cluster = table.clusters.get(replica.cluster)
        if (
            replica.ready
            and replica.cluster != own
            and replica.cluster not in avoid
            and cluster is not None
            and cluster.healthy
            and _allows(cluster, deployment)
        ):
            return True
    return False


def _forward(table: RoutingTable, cluster_id: str) -> Forward:
    return Forward(cluster_id, table.clusters[cluster_id].gateway_url)


def _allows(cluster: ClusterRoute, deployment: DeploymentRoute) -> bool:
    if deployment.residency is not None and cluster.residency != deployment.residency:
        return False
    return not deployment.regions or cluster.region in deployment.regions


def _why_none(deployment: DeploymentRoute) -> str:
    where = []
    if deployment.residency is not None:
        where.append(f"residency {deployment.residency}")
    if deployment.regions:
        where.append(f"regions {', '.join(deployment.regions)}")
    scope = f"with {' and '.join(where)}" if where else "anywhere"
    reason = f"no healthy cluster {scope} can serve this deployment"
    if deployment.unavailable_reason:
        reason += f" ({deployment.unavailable_reason})"
    return reason


def _origin(table: RoutingTable, own: str, client_region: str | None) -> ClusterRoute:
    if client_region:
        for cluster in table.clusters.values():
            if cluster.region == client_region:
                return cluster
    return table.clusters[own]


def _distance_km(a: ClusterRoute, b: ClusterRoute) -> float:
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
