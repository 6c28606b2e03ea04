"""What a replica calls before ``load()``: settings read once from the environment, then
``ensure_weights`` for every manifest of the deployment.

Environment (set by the cluster driver on each replica):

- ``PLINTH_WEIGHTS_MANIFESTS``: comma-separated manifest ids from ``mirror_weights`` (none: no-op)
- ``PLINTH_WEIGHTS_MOUNT_ROOT``: files land at ``<root>/<mount_location>`` (default ``/``)
- ``PLINTH_WEIGHTS_CACHE_DIR``: node cache shared by the node's replicas
  (default ``~/.cache/plinth/weights``)
- ``PLINTH_WEIGHTS_ORIGIN_URL``: origin serving ``/chunks`` and ``/manifests`` (required with
  manifests unless a cluster URL is given)
- ``PLINTH_WEIGHTS_CLUSTER_URL``: cluster cache in front of the origin (optional)
- ``PLINTH_WEIGHTS_CACHE_BUDGET_BYTES``: node cache LRU budget (default unlimited)
- ``PLINTH_WEIGHTS_STATUS_DIR``: progress JSON per manifest, ``<id>.json`` (default: in the cache)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpu_nodes.weights.agent import EnsureOptions, EnsureResult, ensure_weights
from gpu_nodes.weights.exceptions import WeightsError
from gpu_nodes.weights.progress import ProgressCallback


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
        env = os.environ if environ is None else environ
        manifests = tuple(m.strip() for m in env.get("PLINTH_WEIGHTS_MANIFESTS", "").split(","))
        budget = env.get("PLINTH_WEIGHTS_CACHE_BUDGET_BYTES")
        try:
            budget_bytes = int(budget) if budget else None
        except ValueError as exc:
            raise WeightsError(
                f"PLINTH_WEIGHTS_CACHE_BUDGET_BYTES must be an integer, got {budget!r}"
            ) from exc
        status = env.get("PLINTH_WEIGHTS_STATUS_DIR")
        default_cache = Path.home() / ".cache" / "plinth" / "weights"
        return cls(
            manifests=tuple(m for m in manifests if m),
            mount_root=Path(env.get("PLINTH_WEIGHTS_MOUNT_ROOT", "/")),
            cache_dir=Path(env.get("PLINTH_WEIGHTS_CACHE_DIR", str(default_cache))),
            origin_url=env.get("PLINTH_WEIGHTS_ORIGIN_URL") or None,
            cluster_url=env.get("PLINTH_WEIGHTS_CLUSTER_URL") or None,
            budget_bytes=budget_bytes,
            status_dir=Path(status) if status else None,
        )


def ensure_deployment_weights(
    settings: WeightsSettings, progress: ProgressCallback | None = None
) -> list[EnsureResult]:
    """Materialise every manifest in ``settings``; a no-op when the deployment has none."""
    if settings.manifests and not (settings.origin_url or settings.cluster_url):
        raise WeightsError("PLINTH_WEIGHTS_ORIGIN_URL is required when manifests are set")
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
