"""The routing table (``GET /v1/routing``, format in docs/architecture.md).

The control plane builds it with these models (``control_plane.domain.routing``) and the
gateways parse it with the same models (``gpu_nodes.gateway.routing``). Readers ignore fields
they do not know, so the writer may add one before every gateway is upgraded. The
multi-cluster fields (clusters, a replica's cluster and region, a deployment's residency) are
written only when set.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Where the Truss model server answers predict (what `predict` reaches by default).
TRUSS_PREDICT_PATH = "/v1/models/model:predict"


def _unset(value: object) -> bool:
    """Multi-cluster fields are left out while empty: a single-cluster table is unchanged."""
    return not value


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ReplicaRoute(_Frozen):
    id: str = Field(description="Replica id, unique within the deployment.")
    url: str = Field(description="Base URL of the replica's model server.")
    ready: bool = Field(default=False, description="True when the replica takes traffic.")
    cluster: str = Field(
        default="", exclude_if=_unset, description="Cluster running it (multi-cluster only)."
    )
    region: str = Field(
        default="", exclude_if=_unset, description="That cluster's region (multi-cluster only)."
    )


class DeploymentRoute(_Frozen):
    status: str = Field(default="ACTIVE", description="Deployment status (Baseten's names).")
    engine: bool = Field(default=False, description="Serves the OpenAI API (engine package).")
    predict_concurrency: int = Field(default=1, description="Per-replica predict concurrency.")
    openai: bool = Field(
        default=False,
        description="Serves OpenAI-style /v1 routes: a Model class with chat_completions, "
        "completions, embeddings, messages or responses, or a custom server.",
    )
    predict_path: str = Field(
        default=TRUSS_PREDICT_PATH,
        description="The replica's path that `predict` reaches (a custom server's "
        "predict_endpoint).",
    )
    replicas: list[ReplicaRoute] = Field(default_factory=list)
    residency: str | None = Field(
        default=None,
        exclude_if=_unset,
        description="Only clusters with this residency label may serve it.",
    )
    regions: list[str] = Field(
        default_factory=list, exclude_if=_unset, description="Region lock (empty: any)."
    )
    unavailable_reason: str = Field(
        default="",
        exclude_if=_unset,
        description="Why the placement is short of replicas (the 503's reason).",
    )


class ModelRoute(_Frozen):
    name: str = Field(description="Model name.")
    environments: dict[str, str | None] = Field(
        default_factory=dict, description="Environment name -> deployment id (or null)."
    )
    deployments: dict[str, DeploymentRoute] = Field(default_factory=dict)


class ClusterRoute(_Frozen):
    """A cluster as gateways see it: where it is, how to reach its gateway, whether to."""

    region: str = Field(description="Region name.")
    latitude: float = Field(default=0.0, description="For 'nearest': great-circle distance.")
    longitude: float = Field(default=0.0)
    gateway_url: str = Field(default="", description="Base URL of the cluster's gateway.")
    residency: str | None = Field(default=None, description="The cluster's residency label.")
    healthy: bool = Field(default=True, description="False: route nothing there.")


class RoutingTable(_Frozen):
    version: int = Field(default=0, description="Increases whenever the table changes.")
    api_key_hashes: list[str] = Field(default_factory=list, description="sha256 hex of API keys.")
    models: dict[str, ModelRoute] = Field(default_factory=dict)
    clusters: dict[str, ClusterRoute] = Field(
        default_factory=dict,
        exclude_if=_unset,
        description="Registered clusters (multi-cluster only), by id.",
    )
