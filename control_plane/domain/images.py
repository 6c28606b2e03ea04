"""What a deployment's image is built from, and what the platform refuses to build.

The Plinth base image provides one Python (``PLINTH_BASE_PYTHONS``); a config asking for
another must bring its own ``base_image``. Checked at push, so the user hears it at once
instead of from a failed build.
"""

from __future__ import annotations

from pathlib import Path

from control_plane.domain.records import DeploymentRecord
from control_plane.exceptions import ValidationFailed
from control_plane.ports.images import ImageRequest
from plinth.spec.config import TrussConfig

# Debian bookworm's python3.
PLINTH_BASE_PYTHONS = ("py311",)


def check_buildable(config: TrussConfig) -> None:
    """Raise ValidationFailed naming the field when no image can be built for ``config``."""
    if config.base_image is None:
        if config.python_version not in PLINTH_BASE_PYTHONS:
            provided = ", ".join(PLINTH_BASE_PYTHONS)
            raise ValidationFailed(
                f"config.python_version: {config.python_version!r} is not provided by the "
                f"Plinth base image (it provides {provided}); set base_image to an image "
                "with that Python"
            )
        return
    image = config.base_image.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValidationFailed(
            f"config.base_image.image: must be an image reference (got {image!r})"
        )
    python = config.base_image.get("python_executable_path")
    if python is not None and (not isinstance(python, str) or not python.startswith("/")):
        raise ValidationFailed(
            f"config.base_image.python_executable_path: must be an absolute path (got {python!r})"
        )


def image_request_for(
    dep: DeploymentRecord, config: TrussConfig, package_dir: Path, requirements: list[str]
) -> ImageRequest:
    check_buildable(config)
    base = config.base_image or {}
    return ImageRequest(
        deployment_id=dep.id,
        model_id=dep.model_id,
        package_dir=package_dir,
        base_image=base.get("image"),
        python_executable=base.get("python_executable_path"),
        system_packages=list(config.system_packages),
        requirements=requirements,
        build_commands=list(config.build_commands),
        engine=config.engine is not None,
    )


def context_key(deployment_id: str) -> str:
    """Blob key of a deployment's build context (what a cluster-side builder fetches)."""
    return f"build-contexts/{deployment_id}.tar.gz"
