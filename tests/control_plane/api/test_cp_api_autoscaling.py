"""``POST /v1/load_reports`` (gateways) and ``GET .../scaling_events`` over HTTP on loopback.

The deployment is written to the real store directly (no build needed for these routes); the
reconciler tick is the platform's own, with the real SQLite load-report store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    ModelRecord,
)
from tests.control_plane.api.cp_api_helpers import INTERNAL_TOKEN, RunningControlPlane

pytestmark = pytest.mark.integration

SETTINGS = AutoscalingSettings(
    min_replica=0, max_replica=3, autoscaling_window=10, scale_down_delay=5
)


def _with_deployment(
    control_plane_factory: Callable[..., RunningControlPlane],
) -> RunningControlPlane:
    running = control_plane_factory(cluster_kind="none")
    repo = running.platform.repo
    repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    repo.create_deployment(
        DeploymentRecord(
            id="d1",
            model_id="m1",
            name="d1",
            status=DeploymentStatus.ACTIVE,
            created_at=0.0,
            status_changed_at=0.0,
            archive_sha256="0" * 64,
            config={"model_name": "m"},
            desired_replicas=1,
            autoscaling_settings=SETTINGS,
        )
    )
    return running


def _report(at: float, **counts: Any) -> dict[str, Any]:
    entry = {"model_id": "m1", "deployment_id": "d1", **counts}
    return {"gateway_id": "gw-1", "at": at, "deployments": [entry]}


def test_a_gateway_posts_load_with_the_internal_token_and_the_autoscaler_acts_on_it(
    control_plane_factory: Callable[..., RunningControlPlane],
) -> None:
    running = _with_deployment(control_plane_factory)
    gateway = httpx.Client(
        base_url=running.url, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    )
    now = time.time()
    for offset in (-2.0, -1.0, 0.0):
        body = _report(now + offset, in_flight=3, arrivals=3, replicas={"r1": 3})
        response = gateway.post("/v1/load_reports", json=body)
        assert response.status_code == 202, response.text
        assert response.json() == {"stored": 1}
    unknown = {**_report(now), "deployments": [{"model_id": "m1", "deployment_id": "nope"}]}
    assert gateway.post("/v1/load_reports", json=unknown).json() == {"stored": 0}
    running.platform.autoscaler.tick(
        {"m1/d1": running.platform.repo.get_deployment("m1", "d1")}, {}
    )
    assert running.platform.repo.get_deployment("m1", "d1").desired_replicas == 3
    events = running.client.get("/v1/models/m1/deployments/d1/scaling_events")
    assert events.status_code == 200
    (event,) = events.json()["scaling_events"]
    assert (event["from_replicas"], event["to_replicas"]) == (1, 3)
    assert event["reason"].startswith("scale up 1 -> 3")
    gateway.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"in_flight": -1}, "in_flight"),
        ({"replicas": {"r1": -2}}, "replicas"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_report_is_a_422_naming_the_field(
    control_plane_factory: Callable[..., RunningControlPlane], change: dict[str, Any], field: str
) -> None:
    running = _with_deployment(control_plane_factory)
    response = running.client.post("/v1/load_reports", json=_report(time.time(), **change))
    assert response.status_code == 422
    assert field in response.text


def test_load_reports_need_a_credential_and_history_needs_a_known_deployment(
    control_plane_factory: Callable[..., RunningControlPlane],
) -> None:
    running = _with_deployment(control_plane_factory)
    assert httpx.post(f"{running.url}/v1/load_reports", json=_report(1.0)).status_code == 401
    missing = running.client.get("/v1/models/m1/deployments/nope/scaling_events")
    assert missing.status_code == 404
    empty = running.client.get("/v1/models/m1/deployments/d1/scaling_events")
    assert empty.json() == {"scaling_events": []}
