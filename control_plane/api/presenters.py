"""Gather what a response needs besides the record itself (environments, ready replicas)."""

from __future__ import annotations

from control_plane.api.schemas import (
    ColdStartOut,
    DeploymentOut,
    EnvironmentOut,
    deployment_out,
    environment_out,
)
from control_plane.domain.cold_starts import last_cold_start
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
    out = deployment_out(dep, environments, ready)
    start = last_cold_start(platform.repo.store, dep.model_id, dep.id)
    if start is not None:
        body = {**start.to_dict(), "seconds": start.phase_seconds()}
        out.cold_start = ColdStartOut.model_validate(body)
    return out


def present_environment(platform: Platform, env: EnvironmentRecord) -> EnvironmentOut:
    current = None
    if env.current_deployment_id:
        dep = platform.repo.get_deployment(env.model_id, env.current_deployment_id)
        current = present_deployment(platform, dep)
    return environment_out(env, current)
