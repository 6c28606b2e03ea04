"""Local cluster driver: one OS process per replica on this machine.

Each replica runs ``<spec.python> -m gpu_nodes.model_server`` on a free loopback port (or a
custom server's ``start_command``, see ``_local_replica.server_port_for`` for its port),
with its log and secrets under ``<state_dir>/replicas/<replica_id>/``. A supervisor
thread probes the Truss health routes to move replicas STARTING -> LOADING -> READY
(or FAILED when ``load()`` raised) and restarts processes that die, with exponential
backoff, up to ``max_restarts`` times. Scaling down drains ready replicas first
(``_local_drain``): the least busy are chosen, listed as DRAINING, and stopped by the
supervisor once nothing is in flight or ``drain_timeout_s`` expired.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from control_plane.adapters._container_replica import pull_image
from control_plane.adapters._local_drain import DrainPolicy, in_flight, removal_order
from control_plane.adapters._local_replica import (
    ReplicaProcess,
    ServerPortBusy,
    note,
    probe,
    start_process,
    stop_processes,
    tail_lines,
)
from control_plane.adapters.exceptions import ClusterError
from control_plane.ports.cluster import (
    ColdStart,
    CustomServer,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaState,
)

log = logging.getLogger(__name__)

# Longest wait between two restarts of a crash-looping replica.
MAX_BACKOFF_S = 60.0
# Log files of this many stopped replicas per deployment stay visible through logs().
RETIRED_LOGS_KEPT = 4
# Grace for a replica stopped at the drain timeout (its server would wait for the requests).
CUT_GRACE_S = 1.0
# Consecutive unanswered probes before a replica that answered before stops taking traffic.
PROBE_FAILURES_BEFORE_UNREADY = 3


@dataclass
class _Deployment:
    spec: ReplicaSpec
    replicas: list[ReplicaProcess] = field(default_factory=list)
    draining: list[ReplicaProcess] = field(default_factory=list)  # removed, not yet stopped


class LocalProcessDriver:
    """:class:`control_plane.ports.cluster.ClusterDriver` over local processes."""

    def __init__(
        self,
        state_dir: Path,
        *,
        name: str = "local",
        host: str = "127.0.0.1",
        restart_backoff_s: float = 1.0,
        max_restarts: int = 5,
        stable_after_s: float = 600.0,
        poll_interval_s: float = 0.25,
        stop_grace_s: float = 10.0,
        probe_timeout_s: float = 2.0,
        startup_timeout_s: float = 300.0,
        drain_timeout_s: float = 30.0,
        drain_settle_s: float = 3.0,
    ) -> None:
        self.name = name
        self._replicas_dir = Path(state_dir) / "replicas"
        self._host = host
        self._restart_backoff_s = restart_backoff_s
        self._max_restarts = max_restarts
        self._stable_after_s = stable_after_s
        self._poll_interval_s = poll_interval_s
        self._stop_grace_s = stop_grace_s
        self._startup_timeout_s = startup_timeout_s
        self._drain = DrainPolicy(settle_s=drain_settle_s, timeout_s=drain_timeout_s)
        self._stopping: set[str] = set()  # drained replicas being stopped (listed until gone)
        self._deployments: dict[str, _Deployment] = {}
        self._retired_logs: dict[str, collections.deque[tuple[str, Path]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=probe_timeout_s, trust_env=False)
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"plinth-{name}-supervisor", daemon=True
        )
        self._supervisor.start()

    # ---- ClusterDriver ------------------------------------------------------------------

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        if replicas < 0:
            raise ClusterError(f"replicas must be >= 0, got {replicas}")
        if self._stop.is_set():
            raise ClusterError(f"cluster driver {self.name!r} is closed")
        busy = self._busy_if_scaling_down(spec.deployment_id, replicas)
        if spec.image and replicas > 0:
            # A first pull may take a while: not under the lock the supervisor and
            # replicas() need. Starting a container from a pulled image is quick.
            pull_image(spec.image)
        with self._lock:
            deployment = self._deployments.setdefault(spec.deployment_id, _Deployment(spec))
            deployment.spec = spec
            current = deployment.replicas
            revivable = [r for r in deployment.draining if r.replica_id not in self._stopping]
            while len(current) < replicas and revivable:
                revived = revivable.pop()  # warm already: cheaper than a new one
                deployment.draining.remove(revived)
                revived.draining_since = None
                note(revived, "kept: scaled up again while draining")
                current.append(revived)
            while len(current) < replicas:
                replica = self._new_replica(spec.deployment_id)
                try:
                    start_process(replica, spec)  # raises before any process exists, or not at all
                except ServerPortBusy as exc:  # waits, with backoff, for the port to be free
                    self._schedule_restart(replica, time.monotonic(), str(exc))
                current.append(replica)
            removed = removal_order(current, busy)[: len(current) - replicas]
            removed_ids = {r.replica_id for r in removed}
            deployment.replicas = [r for r in current if r.replica_id not in removed_ids]
            doomed = self._drain_or_stop(deployment, removed)
            self._forget_if_empty(deployment)
        stop_processes(doomed, grace_s=self._stop_grace_s)

    def _busy_if_scaling_down(self, deployment_id: str, replicas: int) -> dict[str, int]:
        """In-flight requests of each ready replica, asked only when some must go (network
        I/O outside the lock; a replica that does not answer counts as idle)."""
        with self._lock:
            deployment = self._deployments.get(deployment_id)
            current = list(deployment.replicas) if deployment else []
        if len(current) <= replicas:
            return {}
        ready = [r for r in current if r.phase is ReplicaPhase.READY]
        return {r.replica_id: in_flight(self._client, r.url) or 0 for r in ready}

    def _drain_or_stop(
        self, deployment: _Deployment, removed: list[ReplicaProcess]
    ) -> list[ReplicaProcess]:
        """Ready replicas start draining; the others (serving nothing) are returned to stop."""
        now = time.monotonic()
        doomed = []
        for replica in removed:
            if replica.phase is ReplicaPhase.READY and self._drain.timeout_s > 0:
                replica.draining_since = now
                note(replica, f"draining (at most {self._drain.timeout_s:g}s)")
                deployment.draining.append(replica)
            else:
                doomed.append(replica)
        self._retire_logs(deployment.spec.deployment_id, doomed)
        return doomed

    def _retire_logs(self, deployment_id: str, stopped: list[ReplicaProcess]) -> None:
        retired = self._retired_logs.setdefault(
            deployment_id, collections.deque(maxlen=RETIRED_LOGS_KEPT)
        )
        retired.extend((r.replica_id, r.log_path) for r in stopped)

    def _forget_if_empty(self, deployment: _Deployment) -> None:
        key = deployment.spec.deployment_id
        empty = not deployment.replicas and not deployment.draining
        if empty and self._deployments.get(key) is deployment:
            del self._deployments[key]

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        with self._lock:
            deployment = self._deployments.get(deployment_id)
            if deployment is None:
                return []
            live = [(r, r.phase, r.message) for r in deployment.replicas]
            live += [(r, ReplicaPhase.DRAINING, "draining") for r in deployment.draining]
            return [
                ReplicaState(
                    replica_id=r.replica_id,
                    deployment_id=deployment_id,
                    url=r.url,
                    phase=phase,
                    restarts=r.restarts,
                    message=message,
                    cold_start=_cold_start(r),
                )
                for r, phase, message in live
            ]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        with self._lock:
            deployment = self._deployments.get(deployment_id)
            replicas = [*deployment.replicas, *deployment.draining] if deployment else []
            live = [(r.replica_id, r.log_path) for r in replicas]
            # Stopped replicas first (older), so a crashed deployment's last words stay visible.
            targets = [*self._retired_logs.get(deployment_id, ()), *live]
        if not targets:
            return []
        per_replica = max(1, tail // len(targets))
        lines = [
            f"[{replica_id}] {line}"
            for replica_id, path in targets
            for line in tail_lines(path, per_replica)
        ]
        return lines[-tail:] if tail > 0 else []

    def close(self) -> None:
        self._stop.set()
        self._supervisor.join(timeout=self._poll_interval_s + 30)
        with self._lock:
            everything = [r for d in self._deployments.values() for r in [*d.replicas, *d.draining]]
            self._deployments.clear()
        stop_processes(everything, grace_s=self._stop_grace_s)
        self._client.close()

    # ---- supervision --------------------------------------------------------------------

    def _new_replica(self, deployment_id: str) -> ReplicaProcess:
        replica_id = f"r-{uuid.uuid4().hex[:12]}"
        return ReplicaProcess(
            replica_id=replica_id,
            deployment_id=deployment_id,
            directory=self._replicas_dir / replica_id,
            host=self._host,
        )

    def _supervise(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            try:
                self._tick()
            except Exception:  # the supervisor must outlive one bad tick
                log.exception("cluster %s: supervisor tick failed", self.name)

    def _tick(self) -> None:
        now = time.monotonic()
        to_probe: list[tuple[ReplicaProcess, int, str, CustomServer | None]] = []
        with self._lock:
            for deployment in self._deployments.values():
                server = deployment.spec.custom_server
                for replica in deployment.replicas:
                    if self._check_process(replica, deployment.spec, now):
                        to_probe.append((replica, replica.generation, replica.url, server))
        for replica, generation, url, server in to_probe:
            if self._stop.is_set():
                return
            result = probe(self._client, url, server)  # network I/O outside the lock
            with self._lock:
                if replica.generation == generation and replica.phase is not ReplicaPhase.STOPPED:
                    self._apply_probe(replica, result.phase, result.message)
                    if result.phase is ReplicaPhase.READY and result.phase_times:
                        replica.phase_times = dict(result.phase_times)
        self._finish_drains()

    def _finish_drains(self) -> None:
        """Stop the draining replicas whose in-flight requests finished (or whose time is up)."""
        with self._lock:
            draining = [(d, r) for d in self._deployments.values() for r in d.draining]
        finished: list[tuple[_Deployment, ReplicaProcess]] = []
        cut: set[str] = set()  # stopped with requests in flight: their time is up already
        for deployment, replica in draining:
            alive = replica.proc is not None and replica.proc.poll() is None
            busy = in_flight(self._client, replica.url) if alive else None
            since = replica.draining_since
            why = None if since is None else self._drain.stop_reason(since, time.monotonic(), busy)
            if why is not None:
                finished.append((deployment, replica))
                note(replica, why)
                if busy:
                    cut.add(replica.replica_id)
        with self._lock:
            # Taken back by a scale-up, or closed, meanwhile: not this tick's to stop.
            finished = [(d, r) for d, r in finished if r in d.draining and r.draining_since]
            self._stopping.update(r.replica_id for _, r in finished)
        if not finished:
            return
        # Listed (DRAINING) until the process is gone, so no one reads it as stopped early.
        for _, replica in finished:
            grace = CUT_GRACE_S if replica.replica_id in cut else self._stop_grace_s
            stop_processes([replica], grace_s=grace)
        with self._lock:
            for deployment, replica in finished:
                self._stopping.discard(replica.replica_id)
                if replica in deployment.draining:
                    deployment.draining.remove(replica)
                self._retire_logs(deployment.spec.deployment_id, [replica])
                self._forget_if_empty(deployment)

    def _check_process(self, replica: ReplicaProcess, spec: ReplicaSpec, now: float) -> bool:
        """Restart or fail a dead process; True when the live process should be probed."""
        proc = replica.proc
        if replica.restart_at is not None:
            if now >= replica.restart_at:
                replica.restart_at = None
                replica.restarts += 1
                note(replica, f"restart {replica.restarts}")
                try:
                    start_process(replica, spec)
                except ClusterError as exc:
                    self._schedule_restart(replica, now, str(exc))
            return False
        if proc is None or replica.phase is ReplicaPhase.FAILED:
            return False
        code = proc.poll()
        if code is None:
            if replica.phase is ReplicaPhase.STARTING and (
                now - replica.started_at > self._startup_timeout_s
            ):
                # Short grace: it never served, and this runs under the driver's lock.
                stop_processes([replica], grace_s=1.0)
                self._schedule_restart(replica, now, "did not answer before the startup timeout")
                return False
            return True
        self._schedule_restart(replica, now, f"process exited with code {code}")
        return False

    def _schedule_restart(self, replica: ReplicaProcess, now: float, why: str) -> None:
        note(replica, why)
        if now - replica.started_at >= self._stable_after_s:
            replica.crash_streak = 0  # it ran fine for a while: not a crash loop
        if replica.crash_streak >= self._max_restarts:
            replica.phase = ReplicaPhase.FAILED
            replica.message = f"{why}; gave up after {replica.crash_streak} restarts in a row"
            return
        delay = min(MAX_BACKOFF_S, self._restart_backoff_s * (2**replica.crash_streak))
        replica.crash_streak += 1
        replica.phase = ReplicaPhase.STARTING
        replica.message = f"{why}; restarting in {delay:.1f}s"
        replica.restart_at = now + delay

    def _apply_probe(
        self, replica: ReplicaProcess, phase: ReplicaPhase | None, message: str
    ) -> None:
        if phase is None:
            replica.failed_probes += 1
            if (
                replica.phase in (ReplicaPhase.LOADING, ReplicaPhase.READY)
                and replica.failed_probes >= PROBE_FAILURES_BEFORE_UNREADY
            ):
                replica.phase = ReplicaPhase.STARTING
                replica.message = "not answering health checks"
            return
        replica.failed_probes = 0
        # FAILED: why; LOADING: weights progress or ""; a phase change clears older text.
        replica.message = message
        replica.phase = phase


def _cold_start(replica: ReplicaProcess) -> ColdStart | None:
    """The phases of the replica's current start: the driver knows when it started the
    process; the server says when it was up, had its weights and had loaded the model."""
    if not replica.scheduled_at:
        return None
    times = replica.phase_times
    return ColdStart(
        scheduled_at=replica.scheduled_at,
        environment_ready_at=times.get("environment_ready_at"),
        weights_ready_at=times.get("weights_ready_at"),
        model_loaded_at=times.get("model_loaded_at"),
    )
