"""Cold-start phases of each replica start: recorded once, then shown on the deployment, in the
scaling history and as a metric.

The cluster driver reports when the current start of each replica reached each phase
(``ports.cluster.ColdStart``: scheduled, environment ready, weights ready, model loaded). The
reconciler hands every observation to :meth:`ColdStartRecorder.record` after each tick. The first
time a replica is seen READY with its model loaded, that start is:

- stored as the deployment's last cold start (table ``cold_starts``), which
  ``GET /v1/models/{m}/deployments/{d}`` shows as ``cold_start``;
- appended to the scaling history, its reason spelling out the phases;
- observed by the platform metrics, per phase.

The store also keeps the last starts it recorded, so a restarted control plane (or the next
Lambda run) does not record the same start twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from control_plane.domain.autoscaler import ScalingEvent, append_scaling_event
from control_plane.domain.records import DeploymentRecord
from control_plane.ports.cluster import ReplicaPhase, ReplicaState
from control_plane.ports.metrics import PlatformMetrics
from control_plane.ports.store import MetadataStore

logger = logging.getLogger(__name__)

COLD_STARTS = "cold_starts"  # metadata table: deployment key -> {"last", "recorded"}
RECORDED_KEPT = 50


@dataclass(frozen=True)
class ColdStartRecord:
    replica_id: str
    scheduled_at: float
    environment_ready_at: float | None
    weights_ready_at: float | None
    model_loaded_at: float

    def phase_seconds(self) -> dict[str, float | None]:
        """Seconds in each phase: ``environment`` (scheduled -> server up), ``weights`` (->
        weights on disk), ``model_load`` (-> load() returned), and ``total``. A phase the driver
        cannot see is None and its time counts in the next one."""
        env, weights, loaded = (
            self.environment_ready_at,
            self.weights_ready_at,
            self.model_loaded_at,
        )
        load_from = next(t for t in (weights, env, self.scheduled_at) if t is not None)
        return {
            "environment": None if env is None else _span(self.scheduled_at, env),
            "weights": None if env is None or weights is None else _span(env, weights),
            "model_load": _span(load_from, loaded),
            "total": _span(self.scheduled_at, loaded),
        }

    def describe(self) -> str:
        parts = [f"{name} {s:.1f} s" for name, s in self.phase_seconds().items() if s is not None]
        return f"replica {self.replica_id} cold start: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColdStartRecord:
        def optional(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        return cls(
            replica_id=str(data["replica_id"]),
            scheduled_at=float(data["scheduled_at"]),
            environment_ready_at=optional("environment_ready_at"),
            weights_ready_at=optional("weights_ready_at"),
            model_loaded_at=float(data["model_loaded_at"]),
        )


def _span(start: float, end: float) -> float:
    return round(max(end - start, 0.0), 3)  # clocks of two machines may disagree a little


def last_cold_start(
    store: MetadataStore, model_id: str, deployment_id: str
) -> ColdStartRecord | None:
    item = store.get(COLD_STARTS, f"{model_id}/{deployment_id}")
    last = item.value.get("last") if item is not None else None
    return ColdStartRecord.from_dict(last) if last else None


class ColdStartRecorder:
    def __init__(
        self, store: MetadataStore, clock: Callable[[], float], metrics: PlatformMetrics
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._seen: set[str] = set()  # starts recorded (or found recorded) by this process

    def record(
        self,
        deployments: Mapping[str, DeploymentRecord],
        observed: Mapping[str, list[ReplicaState]],
    ) -> None:
        current: set[str] = set()
        for key, states in observed.items():
            for state in states:
                start = _finished_start(state)
                if start is None or key not in deployments:
                    continue
                identity = f"{start.replica_id}@{start.model_loaded_at:.3f}"
                current.add(identity)
                if identity not in self._seen:
                    try:
                        self._record_once(deployments[key], start, identity)
                    except Exception:  # recording must never stall reconciling
                        logger.exception("cold start of %s: recording failed", key)
                        continue
                    self._seen.add(identity)
        self._seen &= current  # forget replicas that are gone

    def _record_once(self, dep: DeploymentRecord, start: ColdStartRecord, identity: str) -> None:
        item = self._store.get(COLD_STARTS, dep.key)
        recorded = list(item.value.get("recorded") or []) if item is not None else []
        if identity in recorded:
            return  # recorded before a restart of the control plane
        value = {"last": start.to_dict(), "recorded": [*recorded, identity][-RECORDED_KEPT:]}
        self._store.put(COLD_STARTS, dep.key, value)
        phases = start.phase_seconds()
        event = ScalingEvent(
            self._clock(),
            dep.desired_replicas,
            dep.desired_replicas,
            start.describe(),
            cold_start=phases,
        )
        append_scaling_event(self._store, dep.key, event)
        self._metrics.replica_cold_start(
            dep.model_id, {name: s for name, s in phases.items() if s is not None}
        )
        logger.info("%s: %s", dep.key, start.describe())


def _finished_start(state: ReplicaState) -> ColdStartRecord | None:
    """The replica's start once it is over (READY, model loaded); None before."""
    times = state.cold_start
    if state.phase is not ReplicaPhase.READY or times is None or times.model_loaded_at is None:
        return None
    return ColdStartRecord(
        replica_id=state.replica_id,
        scheduled_at=times.scheduled_at,
        environment_ready_at=times.environment_ready_at,
        weights_ready_at=times.weights_ready_at,
        model_loaded_at=times.model_loaded_at,
    )
