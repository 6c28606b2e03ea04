"""The rows of `plinth deployments` / `plinth environments` (pure functions over API bodies)."""

from __future__ import annotations

from plinth.cli.models import deployment_row, environment_row, serving_environments

DEPLOYMENTS = [
    {
        "id": "d1", "name": "v1", "status": "ACTIVE", "active_replica_count": 2,
        "desired_replica_count": 2, "scale_down_at": None, "status_message": None,
        "created_at": 0, "autoscaling_settings": {"min_replica": 0, "max_replica": 1},
    },
    {
        "id": "d2", "name": "v2", "status": "FAILED", "active_replica_count": 0,
        "desired_replica_count": 0, "scale_down_at": None,
        "status_message": "build failed: pip install failed", "created_at": 60,
    },
    {
        "id": "d3", "name": "v3", "status": "ACTIVE", "active_replica_count": 1,
        "desired_replica_count": 1, "scale_down_at": 120, "status_message": None,
        "created_at": 90,
    },
]  # fmt: skip
ENVIRONMENTS = [
    {"name": "production", "current_deployment_id": "d1", "current_deployment": DEPLOYMENTS[0],
     "autoscaling_settings": {"min_replica": 0, "max_replica": 1}, "promotion": None},
    {"name": "staging", "current_deployment": {"id": "d1"},
     "autoscaling_settings": {"min_replica": 1, "max_replica": 3},
     "promotion": {"deployment_id": "d3", "started_at": 100}},
    {"name": "development", "current_deployment_id": None, "autoscaling_settings": {}},
]  # fmt: skip


def test_deployment_rows_show_every_environment_message_and_drain() -> None:
    serving = serving_environments(ENVIRONMENTS)
    rows = {row[0]: row for row in (deployment_row(dep, serving) for dep in DEPLOYMENTS)}
    assert rows["d1"][4] == "production, staging"
    assert rows["d1"][5] == "2/2" and rows["d1"][6] == "0-1"
    assert rows["d2"][4] == "-" and rows["d2"][3] == "build failed: pip install failed"
    assert rows["d3"][7] == "1970-01-01 00:02:00"
    assert rows["d1"][7] == "-"


def test_environment_rows_show_running_replicas_apart_from_bounds() -> None:
    rows = {row[0]: row for row in map(environment_row, ENVIRONMENTS)}
    assert rows["production"][1] == "d1" and rows["production"][3:5] == ["2/2", "0-1"]
    assert rows["staging"][1] == "d1" and rows["staging"][4:6] == ["1-3", "to d3"]
    assert rows["development"][1:4] == ["-", "-", "-"]
