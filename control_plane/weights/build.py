"""Weights in the build: mirror each ``weights:`` entry of a package into the blob store.

``mirror_for_build(entries, blobs, secret_values, log)`` returns the manifest ids stored on the
deployment record (``DeploymentRecord.weights_manifests``); replicas get them through
``plinth.contracts.replica_env.WeightsDelivery``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from control_plane.ports.blob import BlobStore
from control_plane.weights.mirror import MirrorStats, mirror_source
from control_plane.weights.sources import open_source, redact_url
from plinth.contracts.exceptions import WeightSourceError


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
