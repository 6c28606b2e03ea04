"""Cluster records: the clusters one Plinth control plane places replicas on.

A cluster is one workload plane (a local set of processes, an EKS/GKE cluster, or a
customer's self-hosted cluster reached through an assumed role). Placement
(``placement.py``) reads these records; the stacks write them (``infra/programs/hybrid.py``).
Records convert to and from the JSON dict stored in the metadata store's ``clusters`` table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from control_plane.exceptions import ValidationFailed

RESIDENCY_LABEL = "residency"
_EARTH_RADIUS_KM = 6371.0


class ClusterKind(StrEnum):
    CLOUD = "cloud"
    SELF_HOSTED = "self-hosted"


class DriverKind(StrEnum):
    LOCAL = "local"
    KUBERNETES = "kubernetes"
    # Kubernetes reached through the customer's role (sts:AssumeRole with an external id).
    KUBERNETES_ASSUMED_ROLE = "kubernetes-assumed-role"


@dataclass(frozen=True)
class GeoPoint:
    """Where a cluster is, for "nearest" (routing) and the added-latency estimate."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValidationFailed(f"latitude {self.latitude} is outside [-90, 90]")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValidationFailed(f"longitude {self.longitude} is outside [-180, 180]")

    def distance_km(self, other: GeoPoint) -> float:
        """Great-circle (haversine) distance."""
        lat1, lat2 = math.radians(self.latitude), math.radians(other.latitude)
        dlat = lat2 - lat1
        dlon = math.radians(other.longitude - self.longitude)
        h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
        return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class DriverSettings:
    """How the reconciler reaches the cluster. Holds references, never credentials: the
    external id lives in a secret store and only its ARN is recorded here."""

    kind: DriverKind = DriverKind.LOCAL
    namespace: str = "plinth"
    endpoint: str = ""  # Kubernetes API server URL
    role_arn: str = ""  # assumed for self-hosted clusters
    external_id_secret_arn: str = ""


@dataclass(frozen=True)
class ClusterHealth:
    """What the control plane last heard from the cluster, and the operator's flags."""

    last_heartbeat: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    # Cordoned: no new replicas go there. Draining: its replicas move elsewhere as well.
    cordoned: bool = False
    draining: bool = False


@dataclass(frozen=True)
class Cluster:
    id: str
    cloud: str  # "aws", "gcp", "local", a customer's name for its datacenter ...
    region: str
    location: GeoPoint
    kind: ClusterKind = ClusterKind.CLOUD
    # GPUs Plinth may use, by accelerator type ("H100": 16). CPU-only replicas use "cpu".
    capacity: Mapping[str, int] = field(default_factory=dict)
    # Lower is preferred; equal priorities share load evenly.
    priority: int = 100
    # Cost of one GPU-hour; breaks ties between clusters of the same priority.
    gpu_hour_cost: float = 0.0
    # Self-hosted cap on the GPUs Plinth fills before spilling over (None: no cap).
    max_gpus: int | None = None
    spill_over_to: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    gateway_url: str = ""
    driver: DriverSettings = field(default_factory=DriverSettings)
    health: ClusterHealth = field(default_factory=ClusterHealth)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValidationFailed("cluster id must not be empty")
        for accelerator, gpus in self.capacity.items():
            if gpus < 0:
                raise ValidationFailed(
                    f"cluster {self.id}: capacity[{accelerator!r}] = {gpus} is negative"
                )
        if self.max_gpus is not None and self.max_gpus < 0:
            raise ValidationFailed(f"cluster {self.id}: max_gpus = {self.max_gpus} is negative")
        if self.spill_over_to == self.id:
            raise ValidationFailed(f"cluster {self.id}: spill_over_to names the cluster itself")

    @property
    def residency(self) -> str | None:
        return self.labels.get(RESIDENCY_LABEL)

    def gpu_limit(self, accelerator: str) -> int:
        """GPUs of this type Plinth may use here (capacity, capped by ``max_gpus``)."""
        gpus = self.capacity.get(accelerator, 0)
        return gpus if self.max_gpus is None else min(gpus, self.max_gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cloud": self.cloud,
            "region": self.region,
            "location": {"latitude": self.location.latitude, "longitude": self.location.longitude},
            "kind": self.kind.value,
            "capacity": dict(self.capacity),
            "priority": self.priority,
            "gpu_hour_cost": self.gpu_hour_cost,
            "max_gpus": self.max_gpus,
            "spill_over_to": self.spill_over_to,
            "labels": dict(self.labels),
            "gateway_url": self.gateway_url,
            "driver": {
                "kind": self.driver.kind.value,
                "namespace": self.driver.namespace,
                "endpoint": self.driver.endpoint,
                "role_arn": self.driver.role_arn,
                "external_id_secret_arn": self.driver.external_id_secret_arn,
            },
            "health": {
                "last_heartbeat": self.health.last_heartbeat,
                "last_error": self.health.last_error,
                "last_error_at": self.health.last_error_at,
                "cordoned": self.health.cordoned,
                "draining": self.health.draining,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cluster:
        try:
            location = data["location"]
            driver = data.get("driver", {})
            health = data.get("health", {})
            return cls(
                id=str(data["id"]),
                cloud=str(data["cloud"]),
                region=str(data["region"]),
                location=GeoPoint(float(location["latitude"]), float(location["longitude"])),
                kind=ClusterKind(data.get("kind", ClusterKind.CLOUD.value)),
                capacity={str(k): int(v) for k, v in data.get("capacity", {}).items()},
                priority=int(data.get("priority", 100)),
                gpu_hour_cost=float(data.get("gpu_hour_cost", 0.0)),
                max_gpus=None if data.get("max_gpus") is None else int(data["max_gpus"]),
                spill_over_to=data.get("spill_over_to"),
                labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
                gateway_url=str(data.get("gateway_url", "")),
                driver=DriverSettings(
                    kind=DriverKind(driver.get("kind", DriverKind.LOCAL.value)),
                    namespace=str(driver.get("namespace", "plinth")),
                    endpoint=str(driver.get("endpoint", "")),
                    role_arn=str(driver.get("role_arn", "")),
                    external_id_secret_arn=str(driver.get("external_id_secret_arn", "")),
                ),
                health=ClusterHealth(
                    last_heartbeat=health.get("last_heartbeat"),
                    last_error=str(health.get("last_error", "")),
                    last_error_at=health.get("last_error_at"),
                    cordoned=bool(health.get("cordoned", False)),
                    draining=bool(health.get("draining", False)),
                ),
            )
        except KeyError as missing:
            raise ValidationFailed(f"cluster record lacks field {missing}") from None
        except ValueError as bad:  # an unknown kind, a non-numeric capacity ...
            raise ValidationFailed(f"cluster record has a bad value: {bad}") from None
