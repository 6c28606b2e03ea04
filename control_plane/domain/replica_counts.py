"""Desired and ready replicas of every deployment, for the platform's ``/metrics``."""

from __future__ import annotations

from control_plane.domain.repository import Repository
from control_plane.ports.metrics import DeploymentReplicas


def replica_counts(repo: Repository) -> list[DeploymentReplicas]:
    """From the store: desired as recorded, ready as the reconciler last observed them."""
    observed = repo.all_observed_replicas()
    counts = []
    for dep in repo.list_deployments():
        ready = sum(1 for replica in observed.get(dep.key, []) if replica.get("ready"))
        counts.append(DeploymentReplicas(dep.model_id, dep.id, dep.desired_replicas, ready))
    return counts
