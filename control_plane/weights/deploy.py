"""Weights in the deploy path: mirror on build, tell replicas where to fetch on scale-up.

- Build: ``mirror_for_build(entries, blobs, secret_values, log)`` mirrors each ``weights:``
  entry of the package config into the blob store and returns the manifest ids stored on the
  deployment record (``DeploymentRecord.weights_manifests``).
- Scale-up: ``weights_env(manifest_ids, delivery)`` is the replica environment read by
  ``gpu_nodes.weights.hooks.WeightsSettings.from_env`` in the model server.

The origin is the control plane itself: ``<control plane URL>/weights`` serves
``/chunks/<sha256>`` and ``/manifests/<id>.json`` (``gpu_nodes.weights.origin``) without
authentication, because replicas hold no API key. Everything it serves is named by a sha256
(of the chunk, or of the manifest's JSON), so one can only read what one already knows the
hash of; ``/stats`` shows counters only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from control_plane.ports.blob import BlobInfo, BlobStore
from control_plane.settings import Settings
from control_plane.weights.mirror import MirrorStats, mirror_source
from control_plane.weights.sources import open_source, redact_url
from gpu_nodes.weights.exceptions import WeightSourceError

WEIGHTS_ORIGIN_PATH = "/weights"
# On the local driver a replica's working directory is its own directory: a relative mount
# root keeps each replica's files apart (the model server makes it absolute).
LOCAL_MOUNT_ROOT = "weights"


@dataclass(frozen=True)
class WeightsDelivery:
    """Where replicas fetch weights from and where they put them."""

    origin_url: str
    cache_dir: str
    mount_root: str


def weights_delivery_for(settings: Settings, *, origin_url: str | None = None) -> WeightsDelivery:
    """Origin on the control plane (``origin_url`` overrides it, e.g. its in-cluster URL),
    node cache under the state dir."""
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


def weights_env(manifest_ids: Iterable[str], delivery: WeightsDelivery | None) -> dict[str, str]:
    """The ``PLINTH_WEIGHTS_*`` variables of a replica; empty when it has no weights."""
    ids = list(manifest_ids)
    if not ids or delivery is None:
        return {}
    return {
        "PLINTH_WEIGHTS_MANIFESTS": ",".join(ids),
        "PLINTH_WEIGHTS_ORIGIN_URL": delivery.origin_url,
        "PLINTH_WEIGHTS_CACHE_DIR": delivery.cache_dir,
        "PLINTH_WEIGHTS_MOUNT_ROOT": delivery.mount_root,
    }


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)


def mirror_for_build(
    entries: Iterable[Any],
    blobs: BlobStore,
    secret_values: Callable[[list[str]], dict[str, str]],
    log: Callable[[str], None],
    *,
    hf_endpoint: str | None = None,
) -> list[str]:
    """Mirror every ``weights:`` entry (config models or dicts); one manifest id per entry.

    Raises WeightSourceError naming ``weights[i].<field>`` and the (redacted) source.
    """
    manifest_ids: list[str] = []
    for index, entry in enumerate(entries):
        source_uri = str(_field(entry, "source"))
        shown = redact_url(source_uri)
        secret_name = _field(entry, "auth_secret_name")
        secret = None
        if secret_name:
            found = secret_values([secret_name])
            if secret_name not in found:
                raise WeightSourceError(
                    f"weights[{index}].auth_secret_name: secret {secret_name!r} is not defined"
                )
            secret = found[secret_name]
        log(f"mirroring weights[{index}] from {shown}")
        stats = MirrorStats()
        try:
            source = open_source(source_uri, secret=secret, hf_endpoint=hf_endpoint)
            manifest = mirror_source(
                source,
                blobs,
                mount_location=str(_field(entry, "mount_location") or ""),
                allow_patterns=_field(entry, "allow_patterns"),
                ignore_patterns=_field(entry, "ignore_patterns"),
                stats=stats,
            )
        except WeightSourceError as exc:
            raise WeightSourceError(f"weights[{index}].source {shown}: {exc}") from exc
        except OSError as exc:
            raise WeightSourceError(
                f"weights[{index}].source {shown}: {type(exc).__name__}: {exc}"
            ) from exc
        log(
            f"weights[{index}]: {stats.files} file(s), {stats.bytes_total} bytes; "
            f"{stats.chunks_uploaded}/{stats.chunks_total} chunk(s) new, "
            f"{stats.bytes_uploaded} bytes uploaded; manifest {manifest.manifest_id}"
        )
        manifest_ids.append(manifest.manifest_id)
    return manifest_ids


def progress_message(weights: Mapping[str, Any]) -> str:
    """``fetching weights 120/512 MB (3/7 files)`` from a model server's readiness body."""
    mib = 1 << 20
    done = int(weights.get("bytes_done") or 0)
    total = int(weights.get("bytes_total") or 0)
    text = f"fetching weights {done / mib:.0f}/{total / mib:.0f} MB"
    if weights.get("files_total"):
        text += f" ({int(weights.get('files_done') or 0)}/{int(weights['files_total'])} files)"
    return text


class LazyBlobStore:
    """A BlobStore built on first use (the origin is mounted before adapters exist)."""

    def __init__(self, factory: Callable[[], BlobStore]) -> None:
        self._factory = factory

    def head(self, key: str) -> BlobInfo | None:
        return self._factory().head(key)

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return self._factory().get_bytes(key, start=start, end=end)

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self._factory().iter_chunks(key, chunk_size=chunk_size)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._factory().put_bytes(key, data)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        return self._factory().put_stream(key, stream)

    def put_file(self, key: str, path: Path) -> None:
        self._factory().put_file(key, path)

    def get_file(self, key: str, path: Path) -> None:
        self._factory().get_file(key, path)

    def delete(self, key: str) -> None:
        self._factory().delete(key)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        return self._factory().list(prefix)
