"""Draining in the local driver: how busy a replica is, which replicas go first, when to stop.

A ready replica chosen for removal is not stopped at once: it is listed as DRAINING (so the
routing table stops sending it requests) and stopped when its in-flight requests finished, or
when the drain timeout expired. Its in-flight count is its own ``/metrics`` gauge, so requests
from every gateway count, and the same number is what a Kubernetes preStop waits on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from control_plane.adapters._local_replica import ReplicaProcess
from control_plane.ports.cluster import ReplicaPhase

IN_FLIGHT_METRIC = "plinth_replica_in_flight_requests"


def in_flight(client: httpx.Client, url: str) -> int | None:
    """Requests the replica is handling now; None when it does not answer."""
    try:
        response = client.get(f"{url}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    try:
        families = list(text_string_to_metric_families(response.text))
    except ValueError:
        return None
    for family in families:
        if family.name == IN_FLIGHT_METRIC:
            return int(sum(sample.value for sample in family.samples))
    return 0  # a server without the gauge serves nothing we could wait for


def removal_order(
    replicas: Sequence[ReplicaProcess], busy: Mapping[str, int]
) -> list[ReplicaProcess]:
    """Who goes first: replicas that are not ready (they serve nothing), then the least busy
    (``busy``: replica id -> in-flight requests); ties go newest first, the oldest are warmest."""
    ranked = sorted(
        enumerate(replicas),
        key=lambda item: (
            item[1].phase is ReplicaPhase.READY,
            busy.get(item[1].replica_id, 0),
            -item[0],
        ),
    )
    return [replica for _, replica in ranked]


@dataclass(frozen=True)
class DrainPolicy:
    # At least this long draining before a stop, so every gateway has read a routing table
    # without the replica (one reconcile tick + one gateway poll) before it goes away.
    settle_s: float
    # At most this long: then it is stopped with whatever is still in flight.
    timeout_s: float

    def stop_reason(self, since: float, now: float, in_flight: int | None) -> str | None:
        """Why a replica draining since ``since`` stops now, or None to keep draining."""
        elapsed = now - since
        if in_flight is None:
            return "stopped answering while draining"
        if elapsed >= self.timeout_s:
            return f"drain timeout ({self.timeout_s:g}s) expired with {in_flight} in flight"
        if in_flight == 0 and elapsed >= min(self.settle_s, self.timeout_s):
            return f"drained after {elapsed:.1f}s: nothing in flight"
        return None
