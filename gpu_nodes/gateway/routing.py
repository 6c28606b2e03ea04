"""Lookups over the routing table (``plinth.contracts.routing``): names and ids to a target."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from gpu_nodes.gateway.exceptions import ModelNotFoundError, NotFoundError
from plinth.contracts.routing import DeploymentRoute, RoutingTable

PRODUCTION = "production"


@dataclass(frozen=True)
class Selector:
    """Which deployment of a model: an environment by name, or a deployment by id."""

    kind: Literal["environment", "deployment"]
    name: str


@dataclass(frozen=True)
class Target:
    model_id: str
    model_name: str
    deployment_id: str
    environment: str | None


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class RoutingSnapshot:
    """An immutable table plus the indexes lookups need."""

    table: RoutingTable
    # Multi-cluster: this gateway's cluster; it picks only replicas there (others are reached
    # through their cluster's gateway, see global_routing.py).
    cluster_id: str | None = None
    key_hashes: frozenset[str] = field(init=False)
    ids_by_name: dict[str, str] = field(init=False)
    _local: dict[tuple[str, str], DeploymentRoute] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.key_hashes = frozenset(self.table.api_key_hashes)
        self.ids_by_name = {route.name: model_id for model_id, route in self.table.models.items()}
        if self.cluster_id and self.table.clusters:
            own = {"", self.cluster_id}
            self._local = {
                (model_id, dep_id): dep.model_copy(
                    update={"replicas": [r for r in dep.replicas if r.cluster in own]}
                )
                for model_id, model in self.table.models.items()
                for dep_id, dep in model.deployments.items()
            }

    def key_is_valid(self, key: str) -> bool:
        return hash_api_key(key) in self.key_hashes

    def deployment(self, model_id: str, deployment_id: str) -> DeploymentRoute | None:
        """The deployment with the replicas this gateway may pick (its cluster's)."""
        if self._local:
            return self._local.get((model_id, deployment_id))
        return self.global_deployment(model_id, deployment_id)

    def global_deployment(self, model_id: str, deployment_id: str) -> DeploymentRoute | None:
        """The deployment with the replicas of every cluster."""
        model = self.table.models.get(model_id)
        return None if model is None else model.deployments.get(deployment_id)

    def resolve(self, model_id: str, selector: Selector) -> Target:
        model = self.table.models.get(model_id)
        if model is None:
            raise ModelNotFoundError(f"model '{model_id}' not found", param="model")
        if selector.kind == "deployment":
            if selector.name not in model.deployments:
                raise NotFoundError(f"deployment '{selector.name}' of model '{model_id}' not found")
            return Target(model_id, model.name, selector.name, None)
        if selector.name not in model.environments:
            known = ", ".join(sorted(model.environments)) or "none"
            raise NotFoundError(
                f"environment '{selector.name}' of model '{model_id}' not found (known: {known})"
            )
        deployment_id = model.environments[selector.name]
        if deployment_id is None or deployment_id not in model.deployments:
            raise NotFoundError(
                f"environment '{selector.name}' of model '{model_id}' has no deployment yet"
            )
        return Target(model_id, model.name, deployment_id, selector.name)

    def resolve_openai_model(self, requested: str) -> Target:
        """``model`` field of an OpenAI request: a model name or id, optionally ``@environment``."""
        base, _, environment = requested.partition("@")
        model_id = base if base in self.table.models else self.ids_by_name.get(base)
        if model_id is None:
            raise ModelNotFoundError(f"The model '{requested}' does not exist", param="model")
        try:
            return self.resolve(model_id, Selector("environment", environment or PRODUCTION))
        except NotFoundError as exc:
            raise ModelNotFoundError(exc.message, param="model") from exc

    def openai_models(self) -> list[dict[str, object]]:
        """Models whose production deployment serves the OpenAI API (``GET /v1/models``)."""
        listed: list[dict[str, object]] = []
        for model_id, model in sorted(self.table.models.items(), key=lambda item: item[1].name):
            deployment_id = model.environments.get(PRODUCTION)
            deployment = model.deployments.get(deployment_id) if deployment_id else None
            if deployment is not None and (deployment.engine or deployment.openai):
                listed.append(
                    {"id": model.name, "object": "model", "created": 0, "owned_by": model_id}
                )
        return listed
