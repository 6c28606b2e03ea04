"""The control plane's Prometheus metrics (``GET /metrics``), a ``PlatformMetrics`` adapter.

Replica counts are read from the metadata store when Prometheus scrapes, so they are right in
any process that serves the API (a Lambda included). Builds, decisions and cold starts are
counted by the process that runs the build worker and the reconciler (``plinth up``: the
control plane itself). Labels: model and deployment ids, decision kinds, build outcomes; never
names or anything a user typed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.ports.metrics import DeploymentPhase, DeploymentReplicas

# Seconds: a cached venv builds in a second, a big engine image with weights in tens of minutes.
BUILD_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# Seconds from DEPLOYING to ACTIVE: processes on a laptop in seconds, a GPU pod on a new node
# with its weights in minutes.
COLD_START_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)

_DEPLOYING = "DEPLOYING"
_ACTIVE = "ACTIVE"
_STILL_STARTING = frozenset({_DEPLOYING, "LOADING_MODEL"})


class _ReplicaCountsCollector(Collector):
    def __init__(self, counts: Callable[[], list[DeploymentReplicas]]) -> None:
        self._counts = counts

    def describe(self) -> list[Metric]:
        return []  # read from the store at scrape time, not at registration

    def collect(self) -> Iterator[Metric]:
        labels = ["model_id", "deployment_id"]
        desired = GaugeMetricFamily(
            "plinth_deployment_desired_replicas",
            "Replicas the control plane wants for the deployment.",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "plinth_deployment_ready_replicas",
            "Replicas the reconciler last observed ready.",
            labels=labels,
        )
        for entry in self._counts():
            ids = [entry.model_id, entry.deployment_id]
            desired.add_metric(ids, entry.desired)
            ready.add_metric(ids, entry.ready)
        yield desired
        yield ready


class PrometheusPlatformMetrics:
    def __init__(self, replica_counts: Callable[[], list[DeploymentReplicas]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._builds = Histogram(
            "plinth_build_duration_seconds",
            "Time a build took (archive fetch, weights mirror, Python environment).",
            ["outcome"],
            buckets=BUILD_BUCKETS_S,
            registry=self.registry,
        )
        self._decisions = Counter(
            "plinth_reconcile_decisions",
            "Decisions the reconciler applied, by kind (scale, set_status, retire, ...).",
            ["kind"],
            registry=self.registry,
        )
        self._passes = Counter(
            "plinth_reconcile_passes", "Reconcile passes run.", registry=self.registry
        )
        self._cold_starts = Histogram(
            "plinth_deployment_cold_start_seconds",
            "Time from DEPLOYING to ACTIVE (from zero or a first deploy to a ready replica).",
            ["model_id"],
            buckets=COLD_START_BUCKETS_S,
            registry=self.registry,
        )
        self._replica_cold_starts = Histogram(
            "plinth_replica_cold_start_seconds",
            "Time a replica start spent in each phase: environment (scheduled -> server up),"
            " weights (-> weights on disk), model_load (-> load() returned), total.",
            ["model_id", "phase"],
            buckets=COLD_START_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_ReplicaCountsCollector(replica_counts))
        # deployment key -> when it entered DEPLOYING (the store's status_changed_at).
        self._starting_since: dict[str, float] = {}
        self._lock = threading.Lock()  # the reconciler's thread vs. a test's direct tick

    def build_finished(self, seconds: float, outcome: str) -> None:
        self._builds.labels(outcome).observe(max(seconds, 0.0))

    def reconciled(self, phases: Sequence[DeploymentPhase], decision_kinds: Sequence[str]) -> None:
        self._passes.inc()
        for kind in decision_kinds:
            self._decisions.labels(kind).inc()
        with self._lock:
            for phase in phases:
                self._track_cold_start(phase)

    def replica_cold_start(self, model_id: str, phase_seconds: Mapping[str, float]) -> None:
        for phase, seconds in phase_seconds.items():  # four fixed phase names: bounded
            self._replica_cold_starts.labels(model_id, phase).observe(max(seconds, 0.0))

    def _track_cold_start(self, phase: DeploymentPhase) -> None:
        key = f"{phase.model_id}/{phase.deployment_id}"
        if phase.status == _DEPLOYING:
            self._starting_since[key] = phase.status_changed_at
        elif phase.status == _ACTIVE and key in self._starting_since:
            started = self._starting_since.pop(key)
            self._cold_starts.labels(phase.model_id).observe(
                max(phase.status_changed_at - started, 0.0)
            )
        elif phase.status not in _STILL_STARTING:
            self._starting_since.pop(key, None)  # failed or scaled to zero before it was ready
