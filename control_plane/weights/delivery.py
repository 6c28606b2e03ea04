"""Where replicas fetch mirrored weights from and where they put them, from the settings.

The origin is the control plane itself: ``<control plane URL>/weights`` serves
``/chunks/<sha256>`` and ``/manifests/<id>.json`` (``control_plane.weights.origin``) without
authentication, because replicas hold no API key. Everything it serves is named by a sha256
(of the chunk, or of the manifest's JSON), so one can only read what one already knows the
hash of; ``/stats`` shows counters only.
"""

from __future__ import annotations

from control_plane.settings import Settings
from plinth.contracts.replica_env import WeightsDelivery

WEIGHTS_ORIGIN_PATH = "/weights"
# On the local driver a replica's working directory is its own directory: a relative mount
# root keeps each replica's files apart (the model server makes it absolute).
LOCAL_MOUNT_ROOT = "weights"


def weights_delivery_for(settings: Settings, *, origin_url: str | None = None) -> WeightsDelivery:
    """Origin on the control plane (``origin_url`` overrides it, e.g. its in-cluster URL),
    node cache under the state dir; no manifests yet (each deployment adds its own)."""
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    on_laptop = settings.cluster_kind != "kubernetes"
    return WeightsDelivery(
        origin_url=origin_url or f"http://{host}:{settings.port}{WEIGHTS_ORIGIN_PATH}",
        cache_dir=str((settings.state_dir / "weights-cache").resolve()),
        # In a pod mount_location is used as is (Truss: /app/model_cache/...).
        mount_root=LOCAL_MOUNT_ROOT if on_laptop else "/",
    )
