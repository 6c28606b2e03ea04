"""The routing table (``GET /v1/routing``, format in docs/architecture.md).

The control plane builds it with these models (``control_plane.domain.routing``) and the
gateways parse it with the same models (``gpu_nodes.gateway.routing``). Readers ignore fields
they do not know, so the writer may add one before every gateway is upgraded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Where the Truss model server answers predict (what `predict` reaches by default).
TRUSS_PREDICT_PATH = "/v1/models/model:predict"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ReplicaRoute(_Frozen):
    id: str = Field(description="Replica id, unique within the deployment.")
    url: str = Field(description="Base URL of the replica's model server.")
    ready: bool = Field(default=False, description="True when the replica takes traffic.")


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


class ModelRoute(_Frozen):
    name: str = Field(description="Model name.")
    environments: dict[str, str | None] = Field(
        default_factory=dict, description="Environment name -> deployment id (or null)."
    )
    deployments: dict[str, DeploymentRoute] = Field(default_factory=dict)


class RoutingTable(_Frozen):
    version: int = Field(default=0, description="Increases whenever the table changes.")
    api_key_hashes: list[str] = Field(default_factory=list, description="sha256 hex of API keys.")
    models: dict[str, ModelRoute] = Field(default_factory=dict)
