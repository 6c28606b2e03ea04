"""Errors of the weight delivery package (mirror, manifest, node agent, cluster cache)."""

from __future__ import annotations

from gpu_nodes.exceptions import GpuNodeError


class WeightsError(GpuNodeError):
    """Base class for every weight delivery error."""


class WeightSourceError(WeightsError):
    """A weight source (s3://, gs://, hf://, https://, local path) is invalid or unreadable."""


class ManifestError(WeightsError):
    """A manifest is malformed or could not be loaded."""


class ChunkFetchError(WeightsError):
    """A chunk could not be fetched from any tier after all retries."""


class IntegrityError(WeightsError):
    """Bytes did not match the sha256 the manifest promised."""


class CacheBudgetError(WeightsError):
    """The node cache cannot hold what must be pinned under its byte budget."""
