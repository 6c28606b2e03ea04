"""The routing table gateways poll (``GET /v1/routing``; format in docs/architecture.md).

``version`` increases exactly when the table's content changes: the content's digest and
version are kept in the store and bumped with a conditional put, so every control-plane
process (or Lambda) hands out the same numbering.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from control_plane.domain.records import DeploymentRecord
from control_plane.domain.repository import META, Repository
from control_plane.exceptions import Conflict
from control_plane.ports.store import ABSENT, VersionConflict

_ROUTING_META_KEY = "routing"
_MAX_ATTEMPTS = 50


class RoutingTableService:
    def __init__(self, repo: Repository, api_key_hashes: Callable[[], list[str]]) -> None:
        self._repo = repo
        self._api_key_hashes = api_key_hashes

    def table(self) -> dict[str, Any]:
        body = self.content()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return {"version": self._version_for(digest), **body}

    def content(self) -> dict[str, Any]:
        """The table without its version."""
        observed = self._repo.all_observed_replicas()
        deployments_by_model: dict[str, dict[str, Any]] = {}
        for dep in self._repo.list_deployments():
            entry = _deployment_entry(dep, observed.get(dep.key, []))
            deployments_by_model.setdefault(dep.model_id, {})[dep.id] = entry
        environments_by_model: dict[str, dict[str, str | None]] = {}
        for env in self._repo.list_environments():
            environments_by_model.setdefault(env.model_id, {})[env.name] = env.current_deployment_id
        models = {
            model.id: {
                "name": model.name,
                "environments": environments_by_model.get(model.id, {}),
                "deployments": deployments_by_model.get(model.id, {}),
            }
            for model in self._repo.list_models()
        }
        return {"api_key_hashes": self._api_key_hashes(), "models": models}

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


def _deployment_entry(dep: DeploymentRecord, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": dep.status.value,
        "engine": dep.is_engine,
        "predict_concurrency": dep.predict_concurrency,
        "replicas": [{"id": r["id"], "url": r["url"], "ready": bool(r["ready"])} for r in replicas],
    }
