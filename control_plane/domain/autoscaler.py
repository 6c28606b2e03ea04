"""The autoscaler loop: gateway load reports in, ``autoscaling.decide`` per deployment, counts out.

The reconciler runs :meth:`Autoscaler.tick` at the start of each of its ticks (the local loop
in ``plinth up``, one scheduled Lambda run on AWS). For each deployment the autoscaler is in
charge of (running, with replicas, not draining, not being promoted:
``lifecycle.AUTOSCALED_STATUSES``) it reads the window of load reports, runs the pure policy
with the deployment's own settings, and applies a new count through
``lifecycle.autoscale``; the reconciler's policy then scales the cluster to it. Between ticks
the policy's state lives in the metadata store (table ``autoscaler``), so it survives a restart
and works from a Lambda, next to the scaling history: every change of the count with its time
and reason, the last ``MAX_SCALING_EVENTS`` per deployment.

A deployment at zero is not the autoscaler's: a gateway holding requests for it calls wake,
which brings it up at once; the autoscaler takes over from there (and records the wake). The
exception is queued async work, which no gateway holds: a deployment at zero with async
requests QUEUED for it is woken here, to the count the policy asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from control_plane.domain import lifecycle
from control_plane.domain.async_backlog import AsyncBacklog
from control_plane.domain.autoscaling import (
    AutoscalerState,
    AutoscalerTuning,
    LoadReport,
    LoadWindow,
    decide,
)
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.domain.repository import Repository
from control_plane.exceptions import NotFound
from control_plane.ports.cluster import ReplicaPhase, ReplicaState
from control_plane.ports.load_reports import LoadReportStore
from control_plane.ports.store import MetadataStore

logger = logging.getLogger(__name__)

AUTOSCALER = "autoscaler"  # metadata table: deployment key -> {"state", "events"}
MAX_SCALING_EVENTS = 100
# Reports are kept this long past the deployment's autoscaling_window (gateway clock skew).
REPORT_RETENTION_MARGIN_S = 10.0


@dataclass(frozen=True)
class DeploymentLoad:
    """One deployment's counts in one gateway's report (``POST /v1/load_reports``)."""

    model_id: str
    deployment_id: str
    in_flight: int = 0
    waiting: int = 0
    parked: int = 0
    arrivals: int = 0
    replicas: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ScalingEvent:
    at: float
    from_replicas: int
    to_replicas: int
    reason: str
    # Set on a replica's cold start (``cold_starts.py``): seconds per phase.
    cold_start: Mapping[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "from_replicas": self.from_replicas,
            "to_replicas": self.to_replicas,
            "reason": self.reason,
        }
        if self.cold_start is not None:
            data["cold_start"] = dict(self.cold_start)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingEvent:
        return cls(
            float(data["at"]),
            int(data["from_replicas"]),
            int(data["to_replicas"]),
            data["reason"],
            data.get("cold_start"),
        )


class Autoscaler:
    def __init__(
        self,
        repo: Repository,
        reports: LoadReportStore,
        clock: Callable[[], float],
        tuning: AutoscalerTuning = AutoscalerTuning(),
    ) -> None:
        self._repo = repo
        self._reports = reports
        self._clock = clock
        self._tuning = tuning
        self._async_backlog = AsyncBacklog(repo.store)
        # Deployment key -> status_changed_at of the zero already noted (one store read per
        # deployment put at zero, per process, rather than one per tick).
        self._noted_at_zero: dict[str, float] = {}

    # -- intake (the API route) -------------------------------------------------------------
    def record_load(self, gateway_id: str, at: float, loads: Iterable[DeploymentLoad]) -> int:
        """Store one gateway's report; deployments that do not exist are skipped. Returns
        how many were stored."""
        stored = 0
        for load in loads:
            dep = self._find(load.model_id, load.deployment_id)
            if dep is None:
                continue
            report = LoadReport(
                gateway_id=gateway_id,
                at=at,
                in_flight=load.in_flight,
                waiting=load.waiting,
                parked=load.parked,
                arrivals=load.arrivals,
            )
            value = report.to_value()
            value["replicas"] = dict(load.replicas or {})
            window = dep.autoscaling_settings.autoscaling_window
            expires_at = at + window + self._tuning.report_ttl_s + REPORT_RETENTION_MARGIN_S
            self._reports.add(dep.key, gateway_id, at, value, expires_at=expires_at)
            stored += 1
        return stored

    def _find(self, model_id: str, deployment_id: str) -> DeploymentRecord | None:
        try:
            return self._repo.get_deployment(model_id, deployment_id)
        except NotFound:
            return None  # deleted since the gateway's routing table was read

    # -- history (the API route, the CLI) ---------------------------------------------------
    def scaling_events(self, model_id: str, deployment_id: str) -> list[ScalingEvent]:
        self._repo.get_deployment(model_id, deployment_id)  # NotFound for unknown ids
        _, events = self._load_state(f"{model_id}/{deployment_id}")
        return events

    # -- the loop ---------------------------------------------------------------------------
    def tick(
        self,
        deployments: Mapping[str, DeploymentRecord],
        observed: Mapping[str, list[ReplicaState]],
    ) -> dict[str, DeploymentRecord]:
        """Decide every autoscaled deployment; returns the records whose count changed."""
        changed: dict[str, DeploymentRecord] = {}
        for key, dep in deployments.items():
            at_zero = dep.status == DeploymentStatus.INACTIVE and dep.desired_replicas == 0
            if not _autoscaled(dep) and not at_zero:
                continue
            try:
                if at_zero:
                    self._note_outside_change(dep)
                    updated = self._wake_for_backlog(dep, observed.get(key, []))
                else:
                    updated = self._scale_one(dep, observed.get(key, []))
            except Exception:
                logger.exception("autoscaler: deciding %s failed", key)
                continue
            if updated is not None:
                changed[key] = updated
        return changed

    def _note_outside_change(self, dep: DeploymentRecord) -> None:
        """At zero by a deactivate or a retirement: in the history, and the start of the next
        decision (so the wake that brings it back is recorded as 0 -> n)."""
        if self._noted_at_zero.get(dep.key) == dep.status_changed_at:
            return
        try:
            stored, events = self._load_state(dep.key)
            if stored is not None and stored.desired == dep.desired_replicas:
                self._noted_at_zero[dep.key] = dep.status_changed_at
                return
            if stored is None:  # never autoscaled yet: it starts from zero
                stored = AutoscalerState(desired=dep.desired_replicas)
            else:
                events.append(_outside_change(self._clock(), stored.desired, dep.desired_replicas))
            state = replace(stored, desired=dep.desired_replicas, below_since=None, panicking=False)
            self._save_state(dep.key, state, events)
            self._noted_at_zero[dep.key] = dep.status_changed_at
        except Exception:
            logger.exception("autoscaler: recording the new count of %s failed", dep.key)

    def _scale_one(
        self, dep: DeploymentRecord, replicas: list[ReplicaState]
    ) -> DeploymentRecord | None:
        now = self._clock()
        stored, events = self._load_state(dep.key)
        state = stored or AutoscalerState(desired=dep.desired_replicas)
        history_length = len(events)
        if state.desired != dep.desired_replicas:
            # Set outside the autoscaler since its last decision: its count is the new start.
            events.append(_outside_change(now, state.desired, dep.desired_replicas))
            state = replace(state, desired=dep.desired_replicas, below_since=None, panicking=False)
        queued = self._async_backlog.count(dep.model_id, dep.id, now)
        window = self._window(dep, replicas, now, queued)
        desired, new_state, reason = decide(
            dep.autoscaling_settings, state, window, now, self._tuning
        )
        updated = None
        if desired != dep.desired_replicas:
            updated = self._apply(dep, desired, now)
            if updated is None:  # the next tick starts from the count that won
                new_state = replace(new_state, desired=dep.desired_replicas)
            else:
                new_state = replace(new_state, desired=updated.desired_replicas)
                events.append(
                    ScalingEvent(now, dep.desired_replicas, updated.desired_replicas, reason)
                )
                logger.info("autoscaler: %s %s", dep.key, reason)
        if new_state != stored or len(events) != history_length:
            self._save_state(dep.key, new_state, events)
        return updated

    def _wake_for_backlog(
        self, dep: DeploymentRecord, replicas: list[ReplicaState]
    ) -> DeploymentRecord | None:
        """At zero with async requests queued: up to the count the policy asks for (a gateway
        wakes a deployment for the requests it parks; queued async work has no gateway yet)."""
        now = self._clock()
        queued = self._async_backlog.count(dep.model_id, dep.id, now)
        if not queued:
            return None
        stored, events = self._load_state(dep.key)
        state = replace(stored or AutoscalerState(desired=0), desired=0, below_since=None)
        window = self._window(dep, replicas, now, queued)
        desired, new_state, reason = decide(
            dep.autoscaling_settings, state, window, now, self._tuning
        )
        applied: list[bool] = []

        def change(record: DeploymentRecord) -> bool:
            applied.append(lifecycle.wake_for_backlog(record, desired, now))
            return applied[-1]

        updated = self._repo.update_deployment(dep.model_id, dep.id, change)
        if not applied[-1]:
            return None
        events.append(ScalingEvent(now, 0, updated.desired_replicas, reason))
        logger.info("autoscaler: %s %s", dep.key, reason)
        self._save_state(dep.key, replace(new_state, desired=updated.desired_replicas), events)
        return updated

    def _window(
        self, dep: DeploymentRecord, replicas: list[ReplicaState], now: float, async_queued: int
    ) -> LoadWindow:
        since = now - dep.autoscaling_settings.autoscaling_window - self._tuning.report_ttl_s
        stored = self._reports.recent(dep.key, since=since, now=now)
        phases = [r.phase for r in replicas]
        return LoadWindow(
            reports=tuple(LoadReport.from_value(r.gateway_id, r.at, r.value) for r in stored),
            ready_replicas=phases.count(ReplicaPhase.READY),
            starting_replicas=phases.count(ReplicaPhase.STARTING)
            + phases.count(ReplicaPhase.LOADING),
            async_queued=async_queued,
        )

    def _apply(self, dep: DeploymentRecord, desired: int, now: float) -> DeploymentRecord | None:
        """The record with the new count, or None when the lifecycle refused (the record
        changed since the decision, and that change wins)."""
        decided_from = dep.desired_replicas
        applied: list[bool] = []

        def change(record: DeploymentRecord) -> bool:
            applied.append(lifecycle.autoscale(record, decided_from, desired, now))
            return applied[-1]

        updated = self._repo.update_deployment(dep.model_id, dep.id, change)
        return updated if applied[-1] else None

    def _load_state(self, key: str) -> tuple[AutoscalerState | None, list[ScalingEvent]]:
        item = self._repo.store.get(AUTOSCALER, key)
        if item is None:
            return None, []
        state = item.value.get("state")
        events = [ScalingEvent.from_dict(e) for e in item.value.get("events") or []]
        return (AutoscalerState.from_dict(state) if state else None), events

    def _save_state(self, key: str, state: AutoscalerState, events: list[ScalingEvent]) -> None:
        kept = events[-MAX_SCALING_EVENTS:]
        value = {"state": state.to_dict(), "events": [e.to_dict() for e in kept]}
        # One writer per deployment (the reconciler holds its tick lock; one Lambda at a time).
        self._repo.store.put(AUTOSCALER, key, value)


def append_scaling_event(store: MetadataStore, key: str, event: ScalingEvent) -> None:
    """Add an event to a deployment's history, leaving the autoscaler's state as it is (one
    writer: this runs inside the reconciler's tick, after the autoscaler's own pass)."""
    item = store.get(AUTOSCALER, key)
    value = dict(item.value) if item is not None else {"state": None}
    events = [*(value.get("events") or []), event.to_dict()]
    store.put(AUTOSCALER, key, {**value, "events": events[-MAX_SCALING_EVENTS:]})


def _outside_change(now: float, before: int, after: int) -> ScalingEvent:
    why = (
        "a deactivate or the end of a promotion drain"
        if after == 0
        else "a wake from the gateway, an activate, a promotion or new settings"
    )
    return ScalingEvent(now, before, after, f"set to {after} outside the autoscaler ({why})")


def _autoscaled(dep: DeploymentRecord) -> bool:
    return (
        dep.status in lifecycle.AUTOSCALED_STATUSES
        and dep.desired_replicas > 0
        and dep.retire_at is None
        and dep.target_environment is None
    )
