"""The placement policy's records: what it observes, what it remembers, what it decides.

Apart from the policy (`placement.py`) and the health tracking (`placement_health.py`) so
both can use them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control_plane.domain.clusters import Cluster


@dataclass(frozen=True)
class ClusterTrack:
    healthy: bool
    reason: str = ""
    # While unhealthy: since when every signal has been good again (None: still bad).
    good_since: float | None = None


@dataclass(frozen=True)
class SetClusterHealth:
    """Record the cluster's health (gateways stop routing to an unhealthy one)."""

    cluster_id: str
    healthy: bool
    reason: str


@dataclass(frozen=True)
class PlacementConstraints:
    residency: str | None = None  # the clusters' ``residency`` label must equal this
    regions: frozenset[str] = frozenset()  # region lock; empty: any region
    min_clusters: int = 1  # active-active: spread over at least this many clusters


@dataclass(frozen=True)
class ReplicaCounts:
    """A deployment's replicas in one cluster, as its driver last reported them."""

    ready: int = 0
    pending_no_capacity: int = 0  # unschedulable: no free GPU of the type
    failed: int = 0


@dataclass(frozen=True)
class DeploymentDemand:
    model_id: str
    deployment_id: str
    desired_replicas: int  # from the autoscaler
    accelerator: str = "cpu"
    gpus_per_replica: int = 1
    constraints: PlacementConstraints = field(default_factory=PlacementConstraints)
    observed: Mapping[str, ReplicaCounts] = field(default_factory=dict)
    # Requests per region lately (from the gateways); empty: spread evenly.
    demand_by_region: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model_id}/{self.deployment_id}"


@dataclass(frozen=True)
class ClusterObservation:
    cluster: Cluster
    # GPUs taken by workloads placement does not manage (other tenants, system pods).
    gpus_used_elsewhere: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlacementObservation:
    clusters: tuple[ClusterObservation, ...]
    deployments: tuple[DeploymentDemand, ...]


@dataclass(frozen=True)
class CapacityCap:
    gpus: int
    until: float


@dataclass(frozen=True)
class DeploymentTrack:
    ideal: Mapping[str, int] = field(default_factory=dict)  # the placement without extras
    applied: Mapping[str, int] = field(default_factory=dict)  # last sent: ideal + extras kept
    last_move_at: float | None = None
    pending_since: Mapping[str, float] = field(default_factory=dict)
    shortfall: tuple[int, str] = (0, "")


@dataclass(frozen=True)
class PlacementState:
    clusters: Mapping[str, ClusterTrack] = field(default_factory=dict)
    deployments: Mapping[str, DeploymentTrack] = field(default_factory=dict)
    caps: Mapping[tuple[str, str], CapacityCap] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaceReplicas:
    model_id: str
    deployment_id: str
    cluster_id: str
    replicas: int


@dataclass(frozen=True)
class ReportShortfall:
    """Fewer replicas placed than desired, and why (missing 0 clears an earlier report)."""

    model_id: str
    deployment_id: str
    missing: int
    reason: str


PlacementDecision = PlaceReplicas | SetClusterHealth | ReportShortfall
