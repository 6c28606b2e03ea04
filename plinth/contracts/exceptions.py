"""Errors of the shared contracts, raised on either plane.

The weight errors live here because both planes raise and catch them: the control plane's
mirror raises ``WeightSourceError`` and writes manifests, the node agent parses them and
raises ``ManifestError``; ``gpu_nodes.weights.exceptions`` adds the node agent's own
subclasses of ``WeightsError``.
"""

from __future__ import annotations

from plinth.exceptions import PlinthError


class WeightsError(PlinthError):
    """Base class for every weight delivery error (mirror, manifest, node agent, cluster cache)."""


class WeightSourceError(WeightsError):
    """A weight source (s3://, gs://, hf://, https://, local path) is invalid or unreadable."""


class ManifestError(WeightsError):
    """A manifest is malformed or could not be loaded."""


class ReplicaEnvError(PlinthError, ValueError):
    """A ``PLINTH_*`` variable of a replica has a bad value (the message names it)."""
