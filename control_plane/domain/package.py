"""What the control plane reads from a package's config.yaml (validated by plinth.spec)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from control_plane.domain.records import DeploymentRecord
from control_plane.exceptions import ValidationFailed
from control_plane.ports.cluster import CustomServer, ReplicaSpec
from plinth.contracts.replica_env import ReplicaEnv, WeightsDelivery
from plinth.contracts.routing import TRUSS_PREDICT_PATH
from plinth.spec.checks import OPENAI_METHOD_NAMES, model_class_methods
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


def serves_openai_api(config: TrussConfig, package_dir: Path) -> bool:
    """Whether the deployment answers OpenAI-style /v1 routes: an engine, a custom server, or
    a Model class defining one of Truss's OpenAI methods (when reading the class cannot tell,
    yes: the replica then answers an OpenAI-shaped 404 itself for a method it lacks)."""
    if config.engine is not None or config.docker_server is not None:
        return True
    methods = model_class_methods(package_dir, config)
    return methods is None or bool(methods & OPENAI_METHOD_NAMES)


def predict_path_of(config: dict[str, Any]) -> str:
    """The replica path `predict` reaches: a custom server's predict_endpoint, else Truss's."""
    server = config.get("docker_server") or {}
    endpoint = server.get("predict_endpoint") if isinstance(server, dict) else None
    return str(endpoint) if endpoint else TRUSS_PREDICT_PATH


def write_pushed_name(package_dir: Path, model_name: str | None) -> None:
    """Record the pushed name in the extracted package's config.yaml.

    `plinth push --model-name` names a package whose config.yaml has none (or overrides it);
    the replica reads config.yaml, and must answer to (and hand ``Model(config=...)``) the
    name the model was pushed as.
    """
    path = package_dir / "config.yaml"
    if not model_name or not path.is_file():
        return
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or raw.get("model_name") == model_name:
        return
    raw["model_name"] = model_name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


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
        custom_server=_custom_server(config),
        image=deployment.image,
    )


def _custom_server(config: TrussConfig) -> CustomServer | None:
    server = config.docker_server
    if server is None:
        return None
    return CustomServer(
        start_command=server.start_command,
        server_port=server.server_port,
        readiness_path=server.readiness_endpoint,
        liveness_path=server.liveness_endpoint,
    )
