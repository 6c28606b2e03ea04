"""The environment of a replica: every ``PLINTH_*`` variable the control plane gives a replica's
model server, written and read by the same object.

Writers: ``control_plane.domain.package.replica_spec_for`` (ids, environment, weights) and the
cluster drivers (secrets directory, log level). Readers: ``gpu_nodes.model_server`` and
``gpu_nodes.weights.hooks``. Neither side spells a variable's name: both go through
``ReplicaEnv`` (or, for a single variable, ``ReplicaVar``).
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from plinth.contracts.exceptions import ReplicaEnvError


class ReplicaVar(enum.StrEnum):
    """The names of the variables, for the few places that set or pass on one of them alone."""

    MODEL_ID = "PLINTH_MODEL_ID"
    DEPLOYMENT_ID = "PLINTH_DEPLOYMENT_ID"
    ENVIRONMENT = "PLINTH_ENVIRONMENT"
    SECRETS_DIR = "PLINTH_SECRETS_DIR"
    LOG_LEVEL = "PLINTH_LOG_LEVEL"
    WEIGHTS_MANIFESTS = "PLINTH_WEIGHTS_MANIFESTS"
    WEIGHTS_ORIGIN_URL = "PLINTH_WEIGHTS_ORIGIN_URL"
    WEIGHTS_CACHE_DIR = "PLINTH_WEIGHTS_CACHE_DIR"
    WEIGHTS_MOUNT_ROOT = "PLINTH_WEIGHTS_MOUNT_ROOT"
    WEIGHTS_CLUSTER_URL = "PLINTH_WEIGHTS_CLUSTER_URL"
    WEIGHTS_CACHE_BUDGET_BYTES = "PLINTH_WEIGHTS_CACHE_BUDGET_BYTES"
    WEIGHTS_STATUS_DIR = "PLINTH_WEIGHTS_STATUS_DIR"


@dataclass(frozen=True)
class WeightsDelivery:
    """How a replica gets its deployment's mirrored weights (the ``PLINTH_WEIGHTS_*`` variables).

    The control plane fills in where the origin is and where files go, the same for every
    deployment, and adds each deployment's manifest ids with ``for_manifests``.
    """

    manifests: tuple[str, ...] = ()  # manifest ids, config order; none: the replica has no weights
    origin_url: str | None = None  # serves /chunks and /manifests
    cache_dir: str | None = None  # node cache shared by the node's replicas
    mount_root: str | None = None  # files land at <mount_root>/<mount_location>
    cluster_url: str | None = None  # cluster cache in front of the origin
    cache_budget_bytes: int | None = None  # node cache LRU budget; None: unlimited
    status_dir: str | None = None  # progress JSON per manifest

    def for_manifests(self, manifest_ids: Iterable[str]) -> WeightsDelivery:
        return dataclasses.replace(self, manifests=tuple(manifest_ids))

    def to_env(self) -> dict[str, str]:
        """The set variables; none at all without manifests (a replica without weights)."""
        if not self.manifests:
            return {}
        values = {
            ReplicaVar.WEIGHTS_MANIFESTS: ",".join(self.manifests),
            ReplicaVar.WEIGHTS_ORIGIN_URL: self.origin_url,
            ReplicaVar.WEIGHTS_CACHE_DIR: self.cache_dir,
            ReplicaVar.WEIGHTS_MOUNT_ROOT: self.mount_root,
            ReplicaVar.WEIGHTS_CLUSTER_URL: self.cluster_url,
            ReplicaVar.WEIGHTS_CACHE_BUDGET_BYTES: _optional_str(self.cache_budget_bytes),
            ReplicaVar.WEIGHTS_STATUS_DIR: self.status_dir,
        }
        return _set_only(values)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WeightsDelivery:
        manifests = env.get(ReplicaVar.WEIGHTS_MANIFESTS, "").split(",")
        return cls(
            manifests=tuple(m.strip() for m in manifests if m.strip()),
            origin_url=env.get(ReplicaVar.WEIGHTS_ORIGIN_URL) or None,
            cache_dir=env.get(ReplicaVar.WEIGHTS_CACHE_DIR) or None,
            mount_root=env.get(ReplicaVar.WEIGHTS_MOUNT_ROOT) or None,
            cluster_url=env.get(ReplicaVar.WEIGHTS_CLUSTER_URL) or None,
            cache_budget_bytes=_optional_int(env, ReplicaVar.WEIGHTS_CACHE_BUDGET_BYTES),
            status_dir=env.get(ReplicaVar.WEIGHTS_STATUS_DIR) or None,
        )


@dataclass(frozen=True)
class ReplicaEnv:
    """Every ``PLINTH_*`` variable of a replica; None (or no manifests) means not set."""

    model_id: str | None = None
    deployment_id: str | None = None
    environment: str | None = None  # the environment the deployment serves, e.g. production
    secrets_dir: str | None = None  # one file per secret
    log_level: str | None = None
    weights: WeightsDelivery = field(default_factory=WeightsDelivery)

    def to_env(self) -> dict[str, str]:
        values = {
            ReplicaVar.MODEL_ID: self.model_id,
            ReplicaVar.DEPLOYMENT_ID: self.deployment_id,
            ReplicaVar.ENVIRONMENT: self.environment,
            ReplicaVar.SECRETS_DIR: self.secrets_dir,
            ReplicaVar.LOG_LEVEL: self.log_level,
        }
        return {**_set_only(values), **self.weights.to_env()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReplicaEnv:
        """Read from ``environ`` (default: this process); a bad value raises ReplicaEnvError."""
        env = os.environ if environ is None else environ
        return cls(
            model_id=env.get(ReplicaVar.MODEL_ID) or None,
            deployment_id=env.get(ReplicaVar.DEPLOYMENT_ID) or None,
            environment=env.get(ReplicaVar.ENVIRONMENT) or None,
            secrets_dir=env.get(ReplicaVar.SECRETS_DIR) or None,
            log_level=env.get(ReplicaVar.LOG_LEVEL) or None,
            weights=WeightsDelivery.from_env(env),
        )


def _set_only(values: Mapping[ReplicaVar, str | None]) -> dict[str, str]:
    return {str(name): value for name, value in values.items() if value is not None}


def _optional_str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _optional_int(env: Mapping[str, str], name: ReplicaVar) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ReplicaEnvError(f"{name} must be an integer, got {raw!r}") from None
