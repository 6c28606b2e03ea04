"""Compatibility entry point named in the design: the mirror lives in ``control_plane.weights``."""

from control_plane.weights.mirror import MirrorStats, mirror_source, mirror_weights

__all__ = ["MirrorStats", "mirror_source", "mirror_weights"]
