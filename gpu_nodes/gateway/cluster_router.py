"""Sends a request to this cluster's replicas or on to another cluster's gateway.

Multi-cluster only (a gateway started with ``--cluster-id``); with one cluster every request
goes straight to the proxy. ``global_routing.choose_cluster`` says where; a cluster gateway
that refuses the connection is avoided for ``AVOID_S`` and the next nearest is tried, so a
dead cluster loses no request even before the routing table marks it unhealthy. A request
parked here while the deployment wakes leaves as soon as another cluster has a ready replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from gpu_nodes.gateway.exceptions import ClusterUnreachableError, NoClusterAvailableError
from gpu_nodes.gateway.global_routing import (
    CLIENT_REGION_HEADER,
    HOPS_HEADER,
    VIA_HEADER,
    Forward,
    Here,
    Hop,
    choose_cluster,
    ready_elsewhere,
)
from gpu_nodes.gateway.paths import model_id_from_host
from gpu_nodes.gateway.picker import ReplicaElsewhere
from gpu_nodes.gateway.proxy import HOP_BY_HOP, ReplicaProxy, UpstreamRequest
from gpu_nodes.gateway.routing import RoutingSnapshot, Target
from gpu_nodes.gateway.settings import GatewaySettings

log = logging.getLogger("plinth.gateway")

AVOID_S = 5.0  # a cluster gateway that refused a connection gets no request for this long
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", VIA_HEADER, HOPS_HEADER}


class ClusterRouter:
    def __init__(
        self,
        settings: GatewaySettings,
        snapshot: Callable[[], RoutingSnapshot],
        proxy: ReplicaProxy,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._proxy = proxy
        self._avoid_until: dict[str, float] = {}

    async def send(self, request: Request, target: Target, upstream: UpstreamRequest) -> Response:
        own = self._settings.cluster_id
        if not own:
            return await self._proxy.forward(target, upstream)
        hop = hop_of(request)
        tried: set[str] = set()
        for _ in range(len(self._snapshot().table.clusters) + 2):
            choice = self._choose(target, hop, tried)
            if not isinstance(choice, Forward):
                try:
                    return await self._proxy.forward(target, upstream, self._elsewhere(target, hop))
                except ReplicaElsewhere:
                    continue  # a replica got ready in another cluster: go there
            onward = self._onward(request, upstream, hop, own)
            try:
                return await self._proxy.forward_to_cluster(
                    choice.cluster_id, choice.gateway_url, target, onward
                )
            except ClusterUnreachableError as exc:
                log.warning("request_id=%s %s; trying the next", upstream.request_id, exc.message)
                self._avoid_until[choice.cluster_id] = time.monotonic() + AVOID_S
                tried.add(choice.cluster_id)
        raise NoClusterAvailableError(
            f"no cluster could serve deployment {target.deployment_id}: every one tried failed"
        )

    def _choose(self, target: Target, hop: Hop, tried: set[str]) -> Here | Forward | None:
        snapshot = self._snapshot()
        deployment = snapshot.global_deployment(target.model_id, target.deployment_id)
        if deployment is None:
            return None  # resolution already checked it; the proxy answers the 404
        return choose_cluster(
            snapshot.table,
            self._settings.cluster_id,
            deployment,
            hop,
            max_hops=self._settings.max_hops,
            avoid=tried | self._avoided(),
        )

    def _elsewhere(self, target: Target, hop: Hop) -> Callable[[], bool] | None:
        if hop.hops >= self._settings.max_hops:
            return None  # it may not move again: park here

        def ready_in_another_cluster() -> bool:
            snapshot = self._snapshot()
            deployment = snapshot.global_deployment(target.model_id, target.deployment_id)
            if deployment is None:
                return False
            avoided = self._avoided() | set(hop.via)
            return ready_elsewhere(snapshot.table, self._settings.cluster_id, deployment, avoided)

        return ready_in_another_cluster

    def _avoided(self) -> set[str]:
        now = time.monotonic()
        return {cid for cid, until in self._avoid_until.items() if until > now}

    def _onward(
        self, request: Request, upstream: UpstreamRequest, hop: Hop, own: str
    ) -> UpstreamRequest:
        """The request as the next gateway must see it: its gateway path, the caller's key,
        where it has been, and the client's region (this cluster's, when the edge set none)."""
        headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.decode("latin-1").lower() not in _NOT_FORWARDED | {CLIENT_REGION_HEADER}
        ]
        region = hop.origin_region or self._own_region()
        if region:
            headers.append((CLIENT_REGION_HEADER, region))
        via = (*hop.via, own)
        headers += [(VIA_HEADER, ",".join(via)), (HOPS_HEADER, str(len(via)))]
        path = request.url.path
        host_model = model_id_from_host(request.headers.get("host"), self._settings.domain)
        if host_model is not None:  # the next gateway is reached by address, not model host
            path = f"/models/{host_model}{path}"
        return UpstreamRequest(
            method=upstream.method,
            path=path,
            query=upstream.query,
            headers=headers,
            body=upstream.body,
            request_id=upstream.request_id,
        )

    def _own_region(self) -> str:
        own = self._snapshot().table.clusters.get(self._settings.cluster_id or "")
        return own.region if own is not None else ""


def hop_of(request: Request) -> Hop:
    via_header = request.headers.get(VIA_HEADER, "")
    via = tuple(v.strip() for v in via_header.split(",") if v.strip())
    return Hop(origin_region=request.headers.get(CLIENT_REGION_HEADER) or None, via=via)
