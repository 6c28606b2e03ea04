"""The routing table gateways poll (``GET /v1/routing``), built with ``plinth.contracts.routing``.

``version`` increases exactly when the table's content changes: the content's digest and
version are kept in the store and bumped with a conditional put, so every control-plane
process (or Lambda) hands out the same numbering.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from control_plane.domain.cluster_routes import ClusterRoutes, residency_fields
from control_plane.domain.package import predict_path_of
from control_plane.domain.records import DeploymentRecord
from control_plane.domain.repository import META, Repository
from control_plane.exceptions import Conflict
from control_plane.ports.store import ABSENT, VersionConflict
from plinth.contracts.routing import DeploymentRoute, ModelRoute, ReplicaRoute, RoutingTable

_ROUTING_META_KEY = "routing"
_MAX_ATTEMPTS = 50


class RoutingTableService:
    def __init__(
        self,
        repo: Repository,
        api_key_hashes: Callable[[], list[str]],
        clusters: ClusterRoutes | None = None,
    ) -> None:
        self._repo = repo
        self._api_key_hashes = api_key_hashes
        self._clusters = clusters  # set when each registered cluster has its own gateway

    def table(self) -> RoutingTable:
        body = self.content()
        content_json = json.dumps(body.model_dump(mode="json", exclude={"version"}), sort_keys=True)
        digest = hashlib.sha256(content_json.encode()).hexdigest()
        return body.model_copy(update={"version": self._version_for(digest)})

    def content(self) -> RoutingTable:
        """The table without its version (``version`` 0)."""
        observed = self._repo.all_observed_replicas()
        shortfalls = self._clusters.shortfalls() if self._clusters is not None else {}
        deployments_by_model: dict[str, dict[str, DeploymentRoute]] = {}
        for dep in self._repo.list_deployments():
            entry = _deployment_route(dep, observed.get(dep.key, []))
            if self._clusters is not None:
                entry = entry.model_copy(
                    update={
                        **residency_fields(dep.config),
                        "unavailable_reason": shortfalls.get(dep.key, ""),
                    }
                )
            deployments_by_model.setdefault(dep.model_id, {})[dep.id] = entry
        environments_by_model: dict[str, dict[str, str | None]] = {}
        for env in self._repo.list_environments():
            environments_by_model.setdefault(env.model_id, {})[env.name] = env.current_deployment_id
        models = {
            model.id: ModelRoute(
                name=model.name,
                environments=environments_by_model.get(model.id, {}),
                deployments=deployments_by_model.get(model.id, {}),
            )
            for model in self._repo.list_models()
        }
        clusters = self._clusters.clusters() if self._clusters is not None else {}
        return RoutingTable(api_key_hashes=self._api_key_hashes(), models=models, clusters=clusters)

    def _version_for(self, digest: str) -> int:
        store = self._repo.store
        for _ in range(_MAX_ATTEMPTS):
            item = store.get(META, _ROUTING_META_KEY)
            if item is not None and item.value.get("digest") == digest:
                return int(item.value["version"])
            version = 1 if item is None else int(item.value["version"]) + 1
            expected = ABSENT if item is None else item.version
            try:
                store.put(
                    META,
                    _ROUTING_META_KEY,
                    {"version": version, "digest": digest},
                    expected_version=expected,
                )
                return version
            except VersionConflict:
                continue
        raise Conflict("routing table is changing too fast; try again")


def _deployment_route(dep: DeploymentRecord, replicas: list[dict[str, Any]]) -> DeploymentRoute:
    return DeploymentRoute(
        status=dep.status.value,
        engine=dep.is_engine,
        predict_concurrency=dep.predict_concurrency,
        openai=dep.is_engine or dep.openai_api,
        predict_path=predict_path_of(dep.config),
        replicas=[
            ReplicaRoute(
                id=r["id"],
                url=r["url"],
                ready=bool(r["ready"]),
                cluster=str(r.get("cluster_id", "")),
                region=str(r.get("region", "")),
            )
            for r in replicas
        ],
    )
