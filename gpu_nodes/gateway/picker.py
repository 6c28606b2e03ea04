"""Which replica serves a request: the balancer's choice, or parking until one is ready.

A deployment with no ready replica (scaled to zero, starting) parks the request, bounded in time
by ``park_timeout_s`` and in length by ``max_parked_requests`` per deployment (beyond either: 503
with ``Retry-After``), after asking the control plane once to wake it (one wake per deployment per
``WAKE_REPEAT_S``, however many requests park). While any request is parked the routing table is
polled faster (``parked``). A pick is a lease: the replica counts one more outstanding request
for the balancer until ``release``. One instance per gateway, used only from the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

import httpx

from gpu_nodes.gateway.balancer import ReplicaBalancer
from gpu_nodes.gateway.exceptions import (
    NoReplicaError,
    NotFoundError,
    ParkedQueueFullError,
    ParkingBoundError,
    UpstreamError,
)
from gpu_nodes.gateway.load_reports import LoadCounters
from gpu_nodes.gateway.routing import Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import RoutingTableSource, describe_error
from plinth.contracts.routing import DeploymentRoute, ReplicaRoute

log = logging.getLogger("plinth.gateway")

WAKE_REPEAT_S = 5.0  # one wake per deployment per this many seconds, however many requests park


class ReplicaElsewhere(Exception):  # a signal to re-route, not an error
    """Parking here ended: another cluster has a ready replica of the deployment."""


class ReplicaPicker:
    def __init__(
        self,
        settings: GatewaySettings,
        source: RoutingTableSource,
        client: httpx.AsyncClient,
        balancer: ReplicaBalancer | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._client = client  # for wake calls to the control plane
        self._balancer = balancer or ReplicaBalancer()
        self._last_wake: dict[tuple[str, str], float] = {}
        self.parked = 0  # requests waiting for a replica
        self.load = LoadCounters()  # per deployment, for the autoscaler's load reports

    @property
    def balancer(self) -> ReplicaBalancer:
        """Holds each replica's outstanding requests (the load reports read them)."""
        return self._balancer

    # ---- leases ----------------------------------------------------------------------------
    async def pick(
        self, target: Target, elsewhere: Callable[[], bool] | None = None
    ) -> ReplicaRoute:
        """A ready replica now, or after parking (bounded) while the deployment wakes up.

        Multi-cluster: parking ends with ``ReplicaElsewhere`` once ``elsewhere()`` says another
        cluster has a ready replica (the gateway forwards the request there)."""
        self.load.arrived(target.deployment_id)
        deployment = self._deployment(target)
        replica = None
        if deployment is not None:
            replica = self._balancer.choose(target.deployment_id, deployment.replicas)
        if replica is None:
            replica = await self._park(target, elsewhere)
        self._balancer.acquire(replica.url)
        return replica

    def pick_another(self, target: Target, tried: Collection[str]) -> ReplicaRoute:
        """A ready replica whose URL is not in ``tried``, without parking (a retry)."""
        deployment = self._deployment(target)
        replicas = deployment.replicas if deployment else []
        replica = self._balancer.choose(target.deployment_id, replicas, exclude=tried)
        if replica is None:
            raise UpstreamError(
                f"the replica of deployment {target.deployment_id} could not be reached "
                "and no other replica is ready"
            )
        self._balancer.acquire(replica.url)
        return replica

    def release(self, replica: ReplicaRoute) -> None:
        """The request picked onto ``replica`` ended (answered, failed or abandoned)."""
        self._balancer.release(replica.url)

    def unreachable(self, replica: ReplicaRoute) -> None:
        """``replica`` refused the connection: end the lease and avoid it for a while."""
        self._balancer.release(replica.url)
        self._balancer.eject(replica.url)

    # ---- parking ---------------------------------------------------------------------------
    def _deployment(self, target: Target) -> DeploymentRoute | None:
        snapshot = self._source.snapshot
        return snapshot.deployment(target.model_id, target.deployment_id) if snapshot else None

    async def _park(
        self, target: Target, elsewhere: Callable[[], bool] | None = None
    ) -> ReplicaRoute:
        deadline = time.monotonic() + self._settings.park_timeout_s
        parked = False
        try:
            while True:
                deployment = self._deployment(target)
                if deployment is None:
                    raise NotFoundError(f"deployment '{target.deployment_id}' no longer exists")
                replica = self._balancer.choose(target.deployment_id, deployment.replicas)
                if replica is not None:
                    return replica
                if elsewhere is not None and elsewhere():
                    raise ReplicaElsewhere(target.deployment_id)
                if deployment.status == "FAILED":
                    raise NoReplicaError(
                        f"deployment '{target.deployment_id}' is FAILED and has no ready replica"
                    )
                if not parked:
                    if self._queue_full(target.deployment_id):
                        # Still wake it: with max_parked_requests 0 nothing else would.
                        await self.request_wake(target.model_id, target.deployment_id)
                        raise self._queue_full_error(target.deployment_id)
                    parked = True
                    self.parked += 1
                    self.load.park(target.deployment_id)
                    await self.request_wake(target.model_id, target.deployment_id)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ParkingBoundError(
                        f"no replica of deployment '{target.deployment_id}' became ready within "
                        f"{self._settings.park_timeout_s:g}s (status {deployment.status})",
                        limit=self._settings.park_timeout_s,
                        retry_after_s=self._settings.park_retry_after_s,
                    )
                await self._source.wait_for_change(min(remaining, 1.0))
        finally:
            if parked:
                self.parked -= 1
                self.load.unpark(target.deployment_id)

    def _queue_full(self, deployment_id: str) -> bool:
        """At most ``max_parked_requests`` parked per deployment: memory stays bounded, and a
        caller told to come back beats one left behind a queue it could not pass in time."""
        return self.load.parked.get(deployment_id, 0) >= self._settings.max_parked_requests

    def _queue_full_error(self, deployment_id: str) -> ParkedQueueFullError:
        limit = self._settings.max_parked_requests
        return ParkedQueueFullError(
            f"deployment '{deployment_id}' has no ready replica and already {limit} parked"
            " requests waiting for one; retry later",
            limit=limit,
            retry_after_s=self._settings.park_retry_after_s,
        )

    # ---- wake ------------------------------------------------------------------------------
    async def request_wake(self, model_id: str, deployment_id: str, *, force: bool = False) -> bool:
        """POST the control plane's wake for a deployment; deduplicated unless ``force``."""
        now = time.monotonic()
        key = (model_id, deployment_id)
        if not force and now - self._last_wake.get(key, -WAKE_REPEAT_S) < WAKE_REPEAT_S:
            return True
        self._last_wake[key] = now
        url = (
            f"{self._settings.control_plane_base}/v1/models/{model_id}"
            f"/deployments/{deployment_id}/wake"
        )
        try:
            response = await self._client.post(
                url,
                headers=self._settings.control_plane_headers,
                timeout=self._settings.control_plane_timeout_s,
            )
        except httpx.HTTPError as exc:
            log.warning("wake of deployment %s failed: %s", deployment_id, describe_error(exc))
            return False
        if response.status_code >= 400:
            log.warning("wake of deployment %s answered %d", deployment_id, response.status_code)
            return False
        log.info("asked the control plane to wake deployment %s", deployment_id)
        return True
