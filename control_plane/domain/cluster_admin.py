"""What an operator does to cluster records through ``/v1/clusters`` and ``plinth clusters``.

Records arrive as the dict shape of :meth:`Cluster.to_dict` (without ``health``, which only
heartbeats, errors and cordons change). Beyond the record's own checks, a spill-over target
must be another cluster that is already registered: a Hybrid cluster that spills into a name
nobody registered would silently never spill.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import Cluster
from control_plane.exceptions import Conflict, NotFound, ValidationFailed

# The parts of a record an operator may change; health has its own operations.
EDITABLE_FIELDS = frozenset(
    {
        "cloud",
        "region",
        "location",
        "kind",
        "capacity",
        "priority",
        "gpu_hour_cost",
        "max_gpus",
        "spill_over_to",
        "labels",
        "gateway_url",
        "driver",
    }
)


def register_cluster(registry: ClusterRegistry, record: Mapping[str, Any]) -> Cluster:
    """Register a new cluster (``Conflict`` if its id is taken)."""
    cluster_id = str(record.get("id", ""))
    _check_spill_over(registry, cluster_id, record.get("spill_over_to"))
    cluster = Cluster.from_dict({key: value for key, value in record.items() if key != "health"})
    registry.register(cluster)
    return cluster


def update_cluster(
    registry: ClusterRegistry, cluster_id: str, changes: Mapping[str, Any]
) -> Cluster:
    """Replace the given top-level fields (``location`` and ``driver`` as a whole); the rest,
    health included, keeps its value."""
    unknown = sorted(set(changes) - EDITABLE_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"cluster {cluster_id!r}: {', '.join(unknown)} cannot be changed here"
        )
    registry.get(cluster_id)  # NotFound names the cluster before the target is checked
    if "spill_over_to" in changes:
        _check_spill_over(registry, cluster_id, changes["spill_over_to"])
    return registry.update(cluster_id, lambda current: _merged(current, changes))


def _merged(current: Cluster, changes: Mapping[str, Any]) -> Cluster:
    return Cluster.from_dict({**current.to_dict(), **changes})


def _check_spill_over(registry: ClusterRegistry, cluster_id: str, target: Any) -> None:
    if target is None:
        return
    if target == cluster_id:
        raise Conflict(f"cluster {cluster_id!r}: spill_over_to names the cluster itself")
    try:
        registry.get(str(target))
    except NotFound:
        raise NotFound(
            f"cluster {cluster_id!r}: spill_over_to {target!r} is not a registered cluster "
            "(register the spill-over target first)"
        ) from None
