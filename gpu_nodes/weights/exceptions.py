"""Errors of the node agent and the cluster cache.

``WeightsError`` (their base), ``ManifestError`` and ``WeightSourceError`` are shared with the
control plane and live in ``plinth.contracts.exceptions``; the errors here are also this plane's
(``GpuNodeError``), so a caller may catch either.
"""

from __future__ import annotations

from gpu_nodes.exceptions import GpuNodeError
from plinth.contracts.exceptions import WeightsError


class NodeWeightsError(WeightsError, GpuNodeError):
    """A weight delivery error raised on a node (agent or cluster cache)."""


class ChunkFetchError(NodeWeightsError):
    """A chunk could not be fetched from any tier after all retries."""


class IntegrityError(NodeWeightsError):
    """Bytes did not match the sha256 the manifest promised."""


class CacheBudgetError(NodeWeightsError):
    """The node cache cannot hold what must be pinned under its byte budget."""
