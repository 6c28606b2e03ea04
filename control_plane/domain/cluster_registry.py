"""Cluster records in the metadata store (the ``clusters`` table), typed.

Every change is a read-modify-write with the store's conditional put, retried on
:class:`VersionConflict`: heartbeats from a cluster and an operator's cordon race on the same
item and neither may be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from control_plane.domain.clusters import Cluster, ClusterHealth
from control_plane.exceptions import Conflict, NotFound
from control_plane.ports.store import ABSENT, MetadataStore, VersionConflict

CLUSTERS = "clusters"  # the table infra/programs/hybrid.py writes its registrations to

_MAX_UPDATE_ATTEMPTS = 50


class ClusterRegistry:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def register(self, cluster: Cluster) -> None:
        try:
            self.store.put(CLUSTERS, cluster.id, cluster.to_dict(), expected_version=ABSENT)
        except VersionConflict:
            raise Conflict(f"cluster {cluster.id!r} is already registered") from None

    def get(self, cluster_id: str) -> Cluster:
        item = self.store.get(CLUSTERS, cluster_id)
        if item is None:
            raise NotFound(f"cluster {cluster_id!r} not found")
        return Cluster.from_dict(item.value)

    def list(self) -> list[Cluster]:
        return [Cluster.from_dict(item.value) for item in self.store.scan(CLUSTERS)]

    def remove(self, cluster_id: str) -> None:
        self.get(cluster_id)  # NotFound names the cluster
        self.store.delete(CLUSTERS, cluster_id)

    def update(self, cluster_id: str, change: Callable[[Cluster], Cluster]) -> Cluster:
        """Apply ``change`` to the stored record; retried when another writer got there first."""
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            item = self.store.get(CLUSTERS, cluster_id)
            if item is None:
                raise NotFound(f"cluster {cluster_id!r} not found")
            changed = change(Cluster.from_dict(item.value))
            if changed.id != cluster_id:
                raise Conflict(f"cluster {cluster_id!r} cannot be renamed to {changed.id!r}")
            try:
                self.store.put(
                    CLUSTERS, cluster_id, changed.to_dict(), expected_version=item.version
                )
                return changed
            except VersionConflict:
                continue
        raise Conflict(f"cluster {cluster_id!r} changed too often to update; try again")

    def heartbeat(self, cluster_id: str, now: float) -> Cluster:
        return self._health(cluster_id, lambda h: replace(h, last_heartbeat=now))

    def record_error(self, cluster_id: str, message: str, now: float) -> Cluster:
        return self._health(cluster_id, lambda h: replace(h, last_error=message, last_error_at=now))

    def set_cordon(self, cluster_id: str, *, cordoned: bool, draining: bool = False) -> Cluster:
        """Cordon (no new replicas) and optionally drain (move the running ones); draining
        implies cordoned."""
        return self._health(
            cluster_id, lambda h: replace(h, cordoned=cordoned or draining, draining=draining)
        )

    def _health(self, cluster_id: str, change: Callable[[ClusterHealth], ClusterHealth]) -> Cluster:
        return self.update(cluster_id, lambda c: replace(c, health=change(c.health)))
