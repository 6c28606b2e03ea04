"""The control plane's metrics adapter, tick by tick: cold starts from the store's status times."""

from __future__ import annotations

from control_plane.adapters.prometheus_metrics import PrometheusPlatformMetrics
from control_plane.ports.metrics import DeploymentPhase, DeploymentReplicas


def _phase(status: str, changed_at: float, dep: str = "d1") -> DeploymentPhase:
    return DeploymentPhase("m1", dep, status, changed_at)


def _sample(metrics: PrometheusPlatformMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_cold_start_is_deploying_to_active_from_the_status_times() -> None:
    metrics = PrometheusPlatformMetrics(lambda: [])
    metrics.reconciled([_phase("DEPLOYING", 100.0)], ["scale"])
    metrics.reconciled([_phase("LOADING_MODEL", 104.0)], ["set_status"])
    metrics.reconciled([_phase("ACTIVE", 112.5)], [])
    metrics.reconciled([_phase("ACTIVE", 112.5)], [])  # seen again: counted once
    count = "plinth_deployment_cold_start_seconds_count"
    assert _sample(metrics, count, model_id="m1") == 1
    assert _sample(metrics, "plinth_deployment_cold_start_seconds_sum", model_id="m1") == 12.5
    assert _sample(metrics, "plinth_reconcile_decisions_total", kind="scale") == 1
    assert _sample(metrics, "plinth_reconcile_decisions_total", kind="set_status") == 1
    assert _sample(metrics, "plinth_reconcile_passes_total") == 4


def test_no_cold_start_without_deploying_seen_or_after_a_failure() -> None:
    metrics = PrometheusPlatformMetrics(lambda: [])
    metrics.reconciled([_phase("ACTIVE", 50.0)], [])  # started before this process: unknown
    metrics.reconciled([_phase("DEPLOYING", 60.0, "d2")], [])
    metrics.reconciled([_phase("FAILED", 70.0, "d2")], [])
    metrics.reconciled([_phase("ACTIVE", 80.0, "d2")], [])  # not a cold start: it failed first
    assert _sample(metrics, "plinth_deployment_cold_start_seconds_count", model_id="m1") is None


def test_replica_gauges_are_read_when_scraped() -> None:
    counts = [DeploymentReplicas("m1", "d1", desired=3, ready=1)]
    metrics = PrometheusPlatformMetrics(lambda: list(counts))
    ids = {"model_id": "m1", "deployment_id": "d1"}
    assert _sample(metrics, "plinth_deployment_desired_replicas", **ids) == 3
    assert _sample(metrics, "plinth_deployment_ready_replicas", **ids) == 1
    counts[0] = DeploymentReplicas("m1", "d1", desired=0, ready=0)
    assert _sample(metrics, "plinth_deployment_desired_replicas", **ids) == 0
    counts.clear()  # a deleted deployment leaves no series behind
    assert _sample(metrics, "plinth_deployment_desired_replicas", **ids) is None


def test_builds_are_timed_by_outcome() -> None:
    metrics = PrometheusPlatformMetrics(lambda: [])
    metrics.build_finished(3.0, "succeeded")
    metrics.build_finished(0.5, "failed")
    metrics.build_finished(4.0, "succeeded")
    assert _sample(metrics, "plinth_build_duration_seconds_count", outcome="succeeded") == 2
    assert _sample(metrics, "plinth_build_duration_seconds_sum", outcome="succeeded") == 7.0
    assert _sample(metrics, "plinth_build_duration_seconds_bucket", outcome="failed", le="1.0") == 1
