"""``GET /metrics`` of a running control plane after a real push -> build -> ACTIVE (local
process driver, venv builder, model server), parsed with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.control_plane.api.cp_api_helpers import (
    INTERNAL_TOKEN,
    RunningControlPlane,
    start_control_plane,
    upload_and_push,
    wait_for,
    write_package,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    running, stop = start_control_plane(
        tmp_path_factory.mktemp("state"), run_background_workers=True
    )
    yield running
    stop()


def _scrape(cp: RunningControlPlane) -> dict[str, Any]:
    response = httpx.get(cp.url + "/metrics", headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
    assert response.status_code == 200, response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_metrics_take_an_api_key_or_the_internal_token(cp: RunningControlPlane) -> None:
    assert httpx.get(cp.url + "/metrics").status_code == 401
    bad = {"Authorization": "Api-Key nope"}
    assert httpx.get(cp.url + "/metrics", headers=bad).status_code == 401
    assert cp.client.get("/metrics").status_code == 200  # the admin API key
    assert "/metrics" not in cp.client.get("/openapi.json").json()["paths"]


def test_build_decisions_replicas_and_cold_start_are_exported(
    cp: RunningControlPlane, tmp_path: Path
) -> None:
    pushed = upload_and_push(cp.client, write_package(tmp_path, "metered"), tmp_path / "out")
    model_id, dep_id = pushed["model_id"], pushed["deployment"]["id"]
    ids = {"model_id": model_id, "deployment_id": dep_id}

    def cold_start_seen() -> dict[str, Any] | None:
        families = _scrape(cp)
        count = "plinth_deployment_cold_start_seconds_count"
        return families if _value(families, count, model_id=model_id) == 1 else None

    families = wait_for(cold_start_seen, timeout_s=120, what="a cold start to be measured")

    builds = families["plinth_build_duration_seconds"]
    assert builds.type == "histogram"
    assert _value(families, "plinth_build_duration_seconds_count", outcome="succeeded") == 1
    assert _value(families, "plinth_build_duration_seconds_sum", outcome="succeeded") > 0

    decisions = families["plinth_reconcile_decisions"]
    assert decisions.type == "counter"
    assert all(set(s.labels) == {"kind"} for s in decisions.samples)
    assert _value(families, "plinth_reconcile_decisions_total", kind="scale") >= 1
    assert _value(families, "plinth_reconcile_decisions_total", kind="set_status") >= 1
    assert _value(families, "plinth_reconcile_passes_total") >= 2

    cold = families["plinth_deployment_cold_start_seconds"]
    assert cold.type == "histogram"
    assert _value(families, "plinth_deployment_cold_start_seconds_sum", model_id=model_id) > 0

    for name in ("plinth_deployment_desired_replicas", "plinth_deployment_ready_replicas"):
        assert families[name].type == "gauge"
        assert {frozenset(s.labels) for s in families[name].samples} == {
            frozenset({"model_id", "deployment_id"})
        }
    assert _value(families, "plinth_deployment_desired_replicas", **ids) == 1
    assert _value(families, "plinth_deployment_ready_replicas", **ids) == 1

    deactivated = cp.client.post(f"/v1/models/{model_id}/deployments/{dep_id}/deactivate")
    assert deactivated.status_code == 200, deactivated.text

    def scaled_to_zero() -> bool:
        families = _scrape(cp)
        desired = _value(families, "plinth_deployment_desired_replicas", **ids)
        ready = _value(families, "plinth_deployment_ready_replicas", **ids)
        return desired == 0 and ready == 0

    wait_for(scaled_to_zero, timeout_s=60, what="desired and ready replicas to reach 0")
