"""What the control plane reads from a package's config.yaml (validated by plinth.spec)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from control_plane.domain.records import DeploymentRecord
from control_plane.exceptions import ValidationFailed
from control_plane.ports.cluster import ReplicaSpec
from plinth.contracts.replica_env import ReplicaEnv, WeightsDelivery
from plinth.spec.config import TrussConfig


def validate_config(config: dict[str, Any]) -> TrussConfig:
    """The parsed config; a bad one raises ValidationFailed naming the field and value."""
    try:
        return TrussConfig.model_validate(config)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(root)"
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            problems.append(f"config.{field}: {error['msg']}{shown}")
        raise ValidationFailed("; ".join(problems)) from None


def requirements_of(config: TrussConfig, package_dir: Path) -> list[str]:
    """``requirements`` plus the lines of ``requirements_file`` (comments and blanks dropped)."""
    requirements = list(config.requirements)
    if config.requirements_file:
        path = (package_dir / config.requirements_file).resolve()
        if not path.is_relative_to(package_dir.resolve()):
            raise ValidationFailed(
                f"config.requirements_file: {config.requirements_file!r} is outside the package"
            )
        if not path.is_file():
            raise ValidationFailed(
                f"config.requirements_file: {config.requirements_file!r} is not in the package"
            )
        for line in path.read_text().splitlines():
            stripped = line.split("#", 1)[0].strip()
            if stripped:
                requirements.append(stripped)
    return requirements


def replica_spec_for(
    deployment: DeploymentRecord,
    secret_values: Callable[[list[str]], dict[str, str]],
    *,
    weights: WeightsDelivery | None = None,
) -> ReplicaSpec:
    """What the cluster driver runs for ``deployment`` (secrets resolved by name).

    With ``weights`` and mirrored manifests, the env carries ``PLINTH_WEIGHTS_*`` so the model
    server fetches them before ``load()``.
    """
    config = validate_config(deployment.config)
    # Without a delivery (a control plane without an origin) no weights variables are set.
    delivery = WeightsDelivery()
    if weights is not None:
        delivery = weights.for_manifests(deployment.weights_manifests)
    replica = ReplicaEnv(
        model_id=deployment.model_id,
        deployment_id=deployment.id,
        environment=deployment.target_environment or None,
        weights=delivery,
    )
    env = {**config.environment_variables, **replica.to_env()}
    return ReplicaSpec(
        deployment_id=deployment.id,
        model_id=deployment.model_id,
        model_dir=deployment.model_dir or "",
        python=deployment.python or "",
        env=env,
        secrets=secret_values(sorted(config.secrets)),
        cpu=config.resources.cpu,
        memory=config.resources.memory,
        accelerator=config.resources.accelerator,
        predict_concurrency=config.runtime.predict_concurrency,
        image=deployment.image,
    )
