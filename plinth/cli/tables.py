"""Rows of `plinth deployments` / `plinth environments`: everything that explains a state.

A deployment shows every environment it serves (not only its home one), its status message
(the FAILED reason, the weights progress) and when a drain ends; an environment shows the
replicas its deployment runs next to the autoscaling bounds, which are not the same thing.
"""

from __future__ import annotations

from typing import Any

from plinth.cli.manage import current_deployment_id
from plinth.cli.output import format_time, status_text

DEPLOYMENT_COLUMNS = [
    "id", "name", "status", "serves", "replicas (ready/desired)", "drains until", "message",
    "created",
]  # fmt: skip
ENVIRONMENT_COLUMNS = [
    "name", "current deployment", "status", "replicas (ready/desired)", "autoscaling (min-max)",
    "promotion",
]  # fmt: skip


def environments_by_deployment(environments: list[dict[str, Any]]) -> dict[str, list[str]]:
    served: dict[str, list[str]] = {}
    for env in environments:
        current = current_deployment_id(env)
        if current:
            served.setdefault(current, []).append(str(env.get("name", "")))
    return served


def _replicas(item: dict[str, Any]) -> str:
    return f"{item.get('active_replica_count', 0)}/{item.get('desired_replica_count', 0)}"


def deployment_rows(
    deployments: list[dict[str, Any]], environments: list[dict[str, Any]]
) -> list[list[str]]:
    served = environments_by_deployment(environments)
    return [
        [
            str(item.get("id", "")),
            str(item.get("name", "")),
            status_text(item.get("status")),
            ", ".join(sorted(served.get(str(item.get("id")), []))) or "-",
            _replicas(item),
            format_time(item.get("scale_down_at")) or "-",
            str(item.get("status_message") or "-"),
            format_time(item.get("created_at")),
        ]
        for item in deployments
    ]


def environment_rows(
    environments: list[dict[str, Any]], deployments: list[dict[str, Any]]
) -> list[list[str]]:
    by_id = {str(dep.get("id")): dep for dep in deployments}
    rows = []
    for env in environments:
        current = current_deployment_id(env)
        dep = by_id.get(current or "", {})
        settings = env.get("autoscaling_settings") or {}
        bounds = f"{settings.get('min_replica', '?')}-{settings.get('max_replica', '?')}"
        promotion = env.get("promotion") or {}
        pending = promotion.get("deployment_id")
        rows.append(
            [
                str(env.get("name", "")),
                current or "-",
                status_text(dep.get("status")) if dep else "-",
                _replicas(dep) if dep else "-",
                bounds,
                f"to {pending}, pending until ACTIVE" if pending else "-",
            ]
        )
    return rows
