"""Weight mirror: copy model weights from their source into the blob store as chunks + manifest.

Entry point for the control plane: ``mirror_weights(config_weights, blob_store, secrets)``.
"""

from control_plane.weights.mirror import (
    MirrorStats,
    WeightsConfigEntry,
    mirror_source,
    mirror_weights,
)
from control_plane.weights.sources import SourceFile, WeightSource, open_source

__all__ = [
    "MirrorStats",
    "SourceFile",
    "WeightSource",
    "WeightsConfigEntry",
    "mirror_source",
    "mirror_weights",
    "open_source",
]
