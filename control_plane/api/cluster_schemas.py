"""Bodies of /v1/clusters: the record shape of ``Cluster.to_dict()``, with its rules stated.

Every constraint the domain checks is declared here too, so /openapi.json states it. Two
rules need other records and are answered with their own statuses: a ``spill_over_to`` that
names no registered cluster (404) or the cluster itself (409).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from control_plane.domain.clusters import Cluster, ClusterKind, DriverKind

CLUSTER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAMESPACE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
URL_PATTERN = r"^(https?://[!-~]+)?$"  # printable ASCII, no spaces
ROLE_ARN_PATTERN = r"^(arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+)?$"
SECRET_ARN_PATTERN = r"^(arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+)?$"
MAX_GPUS = 1_000_000
MAX_PRIORITY = 1_000_000
MAX_COST = 1_000_000.0

ClusterId = Annotated[str, StringConstraints(pattern=CLUSTER_ID_PATTERN)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=253)]
AcceleratorName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Gpus = Annotated[int, Field(ge=0, le=MAX_GPUS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocationBody(_Body):
    latitude: float = Field(ge=-90, le=90, description="Degrees, -90 to 90.")
    longitude: float = Field(ge=-180, le=180, description="Degrees, -180 to 180.")


class DriverBody(_Body):
    """How the reconciler reaches the cluster: references only, never credentials."""

    kind: DriverKind = Field(default=DriverKind.LOCAL, description="How replicas are run there.")
    namespace: str = Field(
        default="plinth", pattern=NAMESPACE_PATTERN, description="Kubernetes namespace."
    )
    endpoint: str = Field(
        default="", pattern=URL_PATTERN, max_length=2048, description="Kubernetes API server URL."
    )
    role_arn: str = Field(
        default="",
        pattern=ROLE_ARN_PATTERN,
        max_length=2048,
        description="IAM role assumed for a self-hosted cluster (kubernetes-assumed-role).",
    )
    external_id_secret_arn: str = Field(
        default="",
        pattern=SECRET_ARN_PATTERN,
        max_length=2048,
        description="ARN of the secret holding the sts:ExternalId (the id itself is never sent).",
    )


class _ClusterFields(_Body):
    cloud: str = Field(pattern=NAME_PATTERN, description="aws, gcp, local, a datacenter's name.")
    region: str = Field(pattern=NAME_PATTERN, description="e.g. eu-west-1.")
    location: LocationBody = Field(description="Where it is: nearest-cluster routing, latency.")
    kind: ClusterKind = Field(default=ClusterKind.CLOUD, description="cloud or self-hosted.")
    capacity: dict[AcceleratorName, Gpus] = Field(
        default_factory=dict,
        description='GPUs Plinth may use by accelerator type ({"H100": 64}); "cpu" for CPU-only.',
    )
    priority: int = Field(
        default=100, ge=0, le=MAX_PRIORITY, description="Lower is preferred (default 100)."
    )
    gpu_hour_cost: float = Field(
        default=0.0, ge=0, le=MAX_COST, description="Cost of one GPU-hour; breaks priority ties."
    )
    max_gpus: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GPUS,
        description="Hybrid: GPUs of each type filled here before spilling over (null: no cap).",
    )
    spill_over_to: ClusterId | None = Field(
        default=None,
        description="Hybrid: the registered cluster that takes what does not fit here "
        "(404 if not registered, 409 if it is this cluster).",
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="e.g. residency: eu (placement keeps to it)."
    )
    gateway_url: str = Field(
        default="", pattern=URL_PATTERN, max_length=2048, description="The cluster's gateway."
    )
    driver: DriverBody = Field(default_factory=DriverBody)


class ClusterCreateBody(_ClusterFields):
    id: ClusterId = Field(description="Lowercase letters, digits and '-'; 409 if taken.")


# In a patch only max_gpus and spill_over_to may be sent as null (to clear them); for the
# other fields null is refused rather than read as "keep".
CLEARABLE_FIELDS = ("max_gpus", "spill_over_to")


def _patch_schema(schema: dict[str, Any]) -> None:
    # A left-out field keeps its value: the schema shows no default, and offers null only
    # where null means something.
    for name, prop in schema.get("properties", {}).items():
        prop.pop("default", None)
        alternatives = prop.get("anyOf")
        if name not in CLEARABLE_FIELDS and alternatives:
            kept = [alt for alt in alternatives if alt.get("type") != "null"]
            if len(kept) == 1:
                del prop["anyOf"]
                prop.update(kept[0])


class ClusterPatchBody(_Body):
    """Fields left out keep their value; ``location`` and ``driver`` are replaced as a whole.
    Health (heartbeat, errors, cordon, drain) has its own operations."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)

    cloud: str | None = Field(default=None, pattern=NAME_PATTERN)
    region: str | None = Field(default=None, pattern=NAME_PATTERN)
    location: LocationBody | None = None
    kind: ClusterKind | None = None
    capacity: dict[AcceleratorName, Gpus] | None = None
    priority: int | None = Field(default=None, ge=0, le=MAX_PRIORITY)
    gpu_hour_cost: float | None = Field(default=None, ge=0, le=MAX_COST)
    max_gpus: int | None = Field(default=None, ge=0, le=MAX_GPUS, description="null: no cap.")
    spill_over_to: ClusterId | None = Field(default=None, description="null: no spill-over.")
    labels: dict[LabelKey, LabelValue] | None = None
    gateway_url: str | None = Field(default=None, pattern=URL_PATTERN, max_length=2048)
    driver: DriverBody | None = None

    @field_validator(
        "cloud",
        "region",
        "location",
        "kind",
        "capacity",
        "priority",
        "gpu_hour_cost",
        "labels",
        "gateway_url",
        "driver",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave the field out to keep its value)")
        return value

    def changes(self) -> dict[str, Any]:
        """Only the fields the request sent (an explicit null clears max_gpus/spill_over_to)."""
        return self.model_dump(mode="json", exclude_unset=True)


# -- responses --------------------------------------------------------------------------
class LocationOut(BaseModel):
    latitude: float
    longitude: float


class DriverOut(BaseModel):
    kind: DriverKind
    namespace: str
    endpoint: str
    role_arn: str
    external_id_secret_arn: str


class HealthOut(BaseModel):
    last_heartbeat: float | None = Field(description="When the cluster last reported in.")
    last_error: str
    last_error_at: float | None
    cordoned: bool = Field(description="No new replicas go there.")
    draining: bool = Field(description="Its replicas are being moved elsewhere (and cordoned).")


class ClusterOut(BaseModel):
    id: str
    cloud: str
    region: str
    location: LocationOut
    kind: ClusterKind
    capacity: dict[str, int]
    priority: int
    gpu_hour_cost: float
    max_gpus: int | None
    spill_over_to: str | None
    labels: dict[str, str]
    gateway_url: str
    driver: DriverOut
    health: HealthOut


class ClusterListOut(BaseModel):
    clusters: list[ClusterOut]


def cluster_out(cluster: Cluster) -> ClusterOut:
    return ClusterOut.model_validate(cluster.to_dict())


class ShortfallOut(BaseModel):
    missing: int = Field(description="Replicas desired but not placed (0: none missing).")
    reason: str


class PlacementOut(BaseModel):
    model_id: str
    deployment_id: str
    replicas: dict[str, int] = Field(description="Replicas placed, by cluster id.")
    shortfall: ShortfallOut | None
    updated_at: float | None


class ClusterHealthChangeOut(BaseModel):
    cluster_id: str
    healthy: bool
    reason: str
    at: float


class PlacementListOut(BaseModel):
    """What the reconciler's placement decided last (recorded; not applied yet)."""

    placements: list[PlacementOut]
    cluster_health: list[ClusterHealthChangeOut]
