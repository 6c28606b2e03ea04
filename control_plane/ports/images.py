"""Image builder port: a deployment's OCI image, built from a stored context, pushed by digest.

Two steps so a cluster-side builder can take the second: ``prepare_context`` writes the build
context (Containerfile + files) as a tarball the pipeline stores in the blob store;
``build_and_push`` builds that context and pushes it, answering ``registry/repo@sha256:...``.
The embedded adapter is buildah (chroot isolation) pushing to a loopback registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ImageRequest:
    """What one deployment's image is built from (the config already validated)."""

    deployment_id: str
    model_id: str
    package_dir: Path  # the extracted package
    base_image: str | None = None  # the config's base_image.image; None: the Plinth base
    python_executable: str | None = None  # base_image.python_executable_path
    system_packages: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    build_commands: list[str] = field(default_factory=list)
    engine: bool = False

    @property
    def repository(self) -> str:
        """Registry path of the model's images (one repository per model, a tag per deployment)."""
        return f"plinth/models/{self.model_id}"


class ImageBuilder(Protocol):
    def prepare_context(self, request: ImageRequest, work_dir: Path) -> Path:
        """Write the build context under ``work_dir``; return its .tar.gz."""
        ...

    def build_and_push(
        self, context_tar: Path, request: ImageRequest, log: Callable[[str], None]
    ) -> str:
        """Build the context, push it, return ``registry/repository@sha256:<hex>``.

        Raises ``BuildFailed`` naming the failing step, with its output tail."""
        ...
