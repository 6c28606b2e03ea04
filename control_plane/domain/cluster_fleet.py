"""One driver and one worker per registered cluster: what the placement decides, applied.

The placement (``placement.py``) says how many replicas of a deployment run in which cluster;
the fleet keeps those counts per cluster and, once per reconcile tick, has each cluster's own
worker thread apply what changed and list the replicas there. The reconciler waits for the
workers at most ``call_timeout_s``: a cluster that is slow keeps its last answer (its worker
finishes in the background and is not given more work until it does), a cluster whose API
fails gets nothing observed and its error is recorded on its record (``last_error``), which the
placement turns into "unhealthy". Neither stalls the other clusters.

The fleet is also a :class:`ClusterDriver` over all clusters at once, so what asks "the driver"
(logs, deletion's scale to zero, the reconciler's status policy) sees every cluster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import Cluster
from control_plane.ports.cluster import ClusterDriver, ReplicaSpec, ReplicaState

logger = logging.getLogger(__name__)

DriverFactory = Callable[[Cluster], ClusterDriver]
# Replicas by deployment id, as one cluster last listed them.
ClusterReplicas = dict[str, list[ReplicaState]]


@dataclass
class _Member:
    cluster: Cluster
    driver: ClusterDriver
    worker: ThreadPoolExecutor
    desired: dict[str, tuple[ReplicaSpec, int]] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    observed: ClusterReplicas = field(default_factory=dict)
    running: Future[ClusterReplicas] | None = None


class ClusterFleet:
    name = "clusters"

    def __init__(
        self,
        registry: ClusterRegistry,
        build_driver: DriverFactory,
        clock: Callable[[], float],
        *,
        call_timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._build_driver = build_driver
        self._clock = clock
        self._timeout_s = call_timeout_s
        self._members: dict[str, _Member] = {}
        self._lock = threading.RLock()

    # ---- the reconciler's side ------------------------------------------------------------
    def round(self, deployment_ids: Sequence[str]) -> None:
        """Every cluster applies its changed counts and lists its replicas, in parallel."""
        clusters = self._registry.list()
        with self._lock:
            self._sync_members(clusters)
            futures = {
                self._submit(
                    member, self._work, sorted(set(deployment_ids) | set(member.desired))
                ): cid
                for cid, member in self._idle_members().items()
            }
        done, late = wait(futures, timeout=self._timeout_s)
        for future in done:
            self._take_result(futures[future], future)
        self._record_late([futures[f] for f in late])

    def apply(self) -> None:
        """Apply the counts placed since the last round now (a reconciler Lambda's tick is its
        only chance); the listing waits for the next round."""
        with self._lock:
            futures = {
                self._submit(member, self._apply_changes): cid
                for cid, member in self._idle_members().items()
                if self._changes(member)
            }
        done, late = wait(futures, timeout=self._timeout_s)
        for future in done:
            error = future.exception()
            if error is not None:
                self._record_error(futures[future], _describe(error), self._clock())
        self._record_late([futures[f] for f in late])

    def place(self, cluster_id: str, spec: ReplicaSpec, replicas: int) -> None:
        """The placement's count for one cluster; its worker applies it (apply() or a round)."""
        with self._lock:
            member = self._members.get(cluster_id)
            if member is None:
                logger.warning("placement names cluster %s, which has no driver", cluster_id)
                return
            member.desired[spec.deployment_id] = (spec, replicas)

    def regions(self) -> dict[str, str]:
        with self._lock:
            return {cid: m.cluster.region for cid, m in self._members.items()}

    # ---- ClusterDriver over every cluster -------------------------------------------------
    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        """Only a stop (0) is fleet-wide: other counts are the placement's, per cluster."""
        if replicas != 0:
            raise ValueError("the fleet scales a deployment per cluster: use place()")
        with self._lock:
            for cluster_id in self._members:
                self.place(cluster_id, spec, 0)

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        with self._lock:
            return [
                state
                for member in self._members.values()
                for state in member.observed.get(deployment_id, [])
            ]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        with self._lock:
            members = list(self._members.items())
        lines: list[str] = []
        for cluster_id, member in members:
            try:
                found = member.driver.logs(deployment_id, tail=tail)
            except Exception as exc:  # one cluster's logs must not hide the others'
                found = [f"(logs unavailable: {type(exc).__name__})"]
            lines.extend(f"[{cluster_id}] {line}" for line in found)
        return lines[-tail:] if tail > 0 else []

    def close(self) -> None:
        with self._lock:
            members = list(self._members.values())
            self._members.clear()
        for member in members:
            self._close_member(member)

    # ---- workers --------------------------------------------------------------------------
    def _idle_members(self) -> dict[str, _Member]:
        """Clusters whose last call has returned (a stuck one gets no more work)."""
        return {cid: m for cid, m in self._members.items() if m.running is None or m.running.done()}

    def _submit(self, member: _Member, job: Callable[..., Any], *args: Any) -> Future[Any]:
        member.running = member.worker.submit(job, member, *args)
        return member.running

    def _record_late(self, cluster_ids: Sequence[str]) -> None:
        now = self._clock()
        for cluster_id in cluster_ids:
            # Kept: what it listed last. Its worker gets no new work until this call ends.
            self._record_error(cluster_id, f"no answer within {self._timeout_s:g} s", now)

    def _changes(self, member: _Member) -> list[tuple[ReplicaSpec, int]]:
        with self._lock:
            return [
                (spec, n)
                for dep_id, (spec, n) in member.desired.items()
                if member.applied.get(dep_id) != n
            ]

    def _apply_changes(self, member: _Member) -> None:
        for spec, n in self._changes(member):
            member.driver.scale(spec, n)
            with self._lock:
                member.applied[spec.deployment_id] = n

    def _work(self, member: _Member, deployment_ids: Sequence[str]) -> ClusterReplicas:
        """On the cluster's own thread: apply what changed, then list its replicas."""
        self._apply_changes(member)
        cluster_id = member.cluster.id
        listed = {
            dep_id: [replace(s, cluster_id=cluster_id) for s in member.driver.replicas(dep_id)]
            for dep_id in deployment_ids
        }
        with self._lock:  # a stopped deployment that is gone needs no more listing
            for dep_id, replicas in listed.items():
                wanted = member.desired.get(dep_id)
                stopped = wanted is not None and wanted[1] == 0
                if not replicas and stopped and member.applied.get(dep_id) == 0:
                    member.desired.pop(dep_id, None)
                    member.applied.pop(dep_id, None)
        return listed

    def _take_result(self, cluster_id: str, future: Future[ClusterReplicas]) -> None:
        error = future.exception()
        with self._lock:
            member = self._members.get(cluster_id)
            if member is None:
                return
            if error is None:
                member.observed = future.result()
                return
            member.observed = {}  # unreachable: nothing there is known to serve
        logger.warning("cluster %s: %s", cluster_id, _describe(error))
        self._record_error(cluster_id, _describe(error), self._clock())

    def _record_error(self, cluster_id: str, message: str, now: float) -> None:
        try:
            self._registry.record_error(cluster_id, message, now)
        except Exception:
            logger.exception("cluster %s: recording its error failed", cluster_id)

    def _sync_members(self, clusters: Sequence[Cluster]) -> None:
        """A driver per registered cluster; rebuilt when its driver settings change."""
        wanted = {c.id: c for c in clusters}
        for cluster_id in list(self._members):
            member = self._members[cluster_id]
            cluster = wanted.get(cluster_id)
            if cluster is None or cluster.driver != member.cluster.driver:
                del self._members[cluster_id]
                self._close_member(member)
        for cluster_id, cluster in wanted.items():
            existing = self._members.get(cluster_id)
            if existing is not None:
                existing.cluster = cluster
                continue
            try:
                driver = self._build_driver(cluster)
            except Exception as exc:
                self._record_error(cluster_id, f"no driver: {_describe(exc)}", self._clock())
                continue
            worker = ThreadPoolExecutor(1, thread_name_prefix=f"plinth-cluster-{cluster_id}")
            self._members[cluster_id] = _Member(cluster, driver, worker)

    def _close_member(self, member: _Member) -> None:
        member.worker.shutdown(wait=False, cancel_futures=True)
        try:
            member.driver.close()
        except Exception:
            logger.exception("closing the driver of cluster %s failed", member.cluster.id)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:300]
