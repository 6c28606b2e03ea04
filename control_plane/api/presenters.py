"""Gather what a response needs besides the record itself (environments, ready replicas)."""

from __future__ import annotations

from control_plane.api.schemas import DeploymentOut, EnvironmentOut, deployment_out, environment_out
from control_plane.domain.records import DeploymentRecord, EnvironmentRecord
from control_plane.wiring import Platform


def present_deployment(
    platform: Platform,
    dep: DeploymentRecord,
    environments: list[EnvironmentRecord] | None = None,
) -> DeploymentOut:
    if environments is None:
        environments = platform.repo.list_environments(dep.model_id)
    replicas = platform.repo.get_observed_replicas(dep.model_id, dep.id)
    ready = sum(1 for replica in replicas if replica.get("ready"))
    return deployment_out(dep, environments, ready)


def present_environment(platform: Platform, env: EnvironmentRecord) -> EnvironmentOut:
    current = None
    if env.current_deployment_id:
        dep = platform.repo.get_deployment(env.model_id, env.current_deployment_id)
        current = present_deployment(platform, dep)
    return environment_out(env, current)
