"""Local cluster driver: one OS process per replica on this machine.

Each replica runs ``<spec.python> -m gpu_nodes.model_server`` on a free loopback port,
with its log and secrets under ``<state_dir>/replicas/<replica_id>/``. A supervisor
thread probes the Truss health routes to move replicas STARTING -> LOADING -> READY
(or FAILED when ``load()`` raised) and restarts processes that die, with exponential
backoff, up to ``max_restarts`` times.
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
from control_plane.adapters._local_replica import (
    ReplicaProcess,
    note,
    probe,
    start_process,
    stop_processes,
    tail_lines,
)
from control_plane.adapters.exceptions import ClusterError
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec, ReplicaState

log = logging.getLogger(__name__)

# Longest wait between two restarts of a crash-looping replica.
MAX_BACKOFF_S = 60.0
# Log files of this many stopped replicas per deployment stay visible through logs().
RETIRED_LOGS_KEPT = 4
# Consecutive unanswered probes before a replica that answered before stops taking traffic.
PROBE_FAILURES_BEFORE_UNREADY = 3


@dataclass
class _Deployment:
    spec: ReplicaSpec
    replicas: list[ReplicaProcess] = field(default_factory=list)


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
        if spec.image and replicas > 0:
            # A first pull may take a while: not under the lock the supervisor and
            # replicas() need. Starting a container from a pulled image is quick.
            pull_image(spec.image)
        with self._lock:
            deployment = self._deployments.setdefault(spec.deployment_id, _Deployment(spec))
            deployment.spec = spec
            current = deployment.replicas
            while len(current) < replicas:
                replica = self._new_replica(spec.deployment_id)
                start_process(replica, spec)  # raises before any process exists, or not at all
                current.append(replica)
            # Scale down newest first: the oldest replicas are the warmest.
            doomed = current[replicas:]
            del current[replicas:]
            if not current:
                del self._deployments[spec.deployment_id]
            retired = self._retired_logs.setdefault(
                spec.deployment_id, collections.deque(maxlen=RETIRED_LOGS_KEPT)
            )
            retired.extend((r.replica_id, r.log_path) for r in doomed)
        stop_processes(doomed, grace_s=self._stop_grace_s)

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        with self._lock:
            deployment = self._deployments.get(deployment_id)
            if deployment is None:
                return []
            return [
                ReplicaState(
                    replica_id=r.replica_id,
                    deployment_id=deployment_id,
                    url=r.url,
                    phase=r.phase,
                    restarts=r.restarts,
                    message=r.message,
                )
                for r in deployment.replicas
            ]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        with self._lock:
            deployment = self._deployments.get(deployment_id)
            live = [(r.replica_id, r.log_path) for r in deployment.replicas] if deployment else []
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
            everything = [r for d in self._deployments.values() for r in d.replicas]
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
        to_probe: list[tuple[ReplicaProcess, int, str]] = []
        with self._lock:
            for deployment in self._deployments.values():
                for replica in deployment.replicas:
                    if self._check_process(replica, deployment.spec, now):
                        to_probe.append((replica, replica.generation, replica.url))
        for replica, generation, url in to_probe:
            if self._stop.is_set():
                return
            result = probe(self._client, url)  # network I/O outside the lock
            with self._lock:
                if replica.generation == generation and replica.phase is not ReplicaPhase.STOPPED:
                    self._apply_probe(replica, result.phase, result.message)

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
