"""What a replica calls before ``load()``: settings read once from the environment, then
``ensure_weights`` for every manifest of the deployment.

The environment (the ``PLINTH_WEIGHTS_*`` variables the cluster driver sets on each replica) is
``plinth.contracts.replica_env.WeightsDelivery``; this module adds the node's defaults: files
land under ``/`` and the node cache is ``~/.cache/plinth/weights`` unless the variables say
otherwise, and an origin (or a cluster cache) is required when there are manifests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpu_nodes.weights.agent import EnsureOptions, EnsureResult, ensure_weights
from gpu_nodes.weights.exceptions import WeightsError
from gpu_nodes.weights.progress import ProgressCallback
from plinth.contracts.exceptions import ReplicaEnvError
from plinth.contracts.replica_env import ReplicaEnv, ReplicaVar


@dataclass(frozen=True)
class WeightsSettings:
    manifests: tuple[str, ...]
    mount_root: Path
    cache_dir: Path
    origin_url: str | None = None
    cluster_url: str | None = None
    budget_bytes: int | None = None
    status_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WeightsSettings:
        try:
            delivery = ReplicaEnv.from_env(environ).weights
        except ReplicaEnvError as exc:
            raise WeightsError(str(exc)) from exc
        default_cache = Path.home() / ".cache" / "plinth" / "weights"
        return cls(
            manifests=delivery.manifests,
            mount_root=Path(delivery.mount_root or "/"),
            cache_dir=Path(delivery.cache_dir) if delivery.cache_dir else default_cache,
            origin_url=delivery.origin_url,
            cluster_url=delivery.cluster_url,
            budget_bytes=delivery.cache_budget_bytes,
            status_dir=Path(delivery.status_dir) if delivery.status_dir else None,
        )


def ensure_deployment_weights(
    settings: WeightsSettings, progress: ProgressCallback | None = None
) -> list[EnsureResult]:
    """Materialise every manifest in ``settings``; a no-op when the deployment has none."""
    if settings.manifests and not (settings.origin_url or settings.cluster_url):
        raise WeightsError(f"{ReplicaVar.WEIGHTS_ORIGIN_URL} is required when manifests are set")
    results = []
    for manifest_id in settings.manifests:
        status = settings.status_dir / f"{manifest_id}.json" if settings.status_dir else None
        options = EnsureOptions(
            mount_root=settings.mount_root,
            cache_dir=settings.cache_dir,
            cluster_url=settings.cluster_url,
            origin_url=settings.origin_url,
            budget_bytes=settings.budget_bytes,
            status_path=status,
        )
        results.append(ensure_weights(manifest_id, options, progress))
    return results
