"""Errors of the node agent and the cluster cache.

``WeightsError`` (their base), ``ManifestError`` and ``WeightSourceError`` are shared with the
control plane and live in ``plinth.contracts.exceptions``.
"""

from __future__ import annotations

from plinth.contracts.exceptions import WeightsError


class ChunkFetchError(WeightsError):
    """A chunk could not be fetched from any tier after all retries."""


class IntegrityError(WeightsError):
    """Bytes did not match the sha256 the manifest promised."""


class CacheBudgetError(WeightsError):
    """The node cache cannot hold what must be pinned under its byte budget."""
