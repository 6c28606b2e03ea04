"""Simulated replicas and a gateway for bench/autoscale.py, plus its two baselines.

A discrete-event simulation: requests arrive at their trace times, a gateway sends each to the
least-loaded ready replica with a free slot (``slots`` concurrent requests per replica, service
time fixed per request), else queues it (``waiting``; ``parked`` while no replica is ready).
Every second the gateway reports its load; every ``decide_every_s`` an autoscaler turns the
reports into a replica count. A request parked at zero replicas wakes the deployment at once
(one replica asked for on its arrival, for every policy): Plinth's gateway calls wake when it
parks a request, and Knative's activator pokes the KPA the same way. A new replica takes
``cold_start_s`` before it serves. A replica costs GPU time from the moment it is asked for
until it stops (a removed busy replica drains).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from control_plane.domain.autoscaling import LoadReport, LoadWindow, ReplicaLoad


@dataclass(frozen=True)
class Request:
    arrival: float
    service_s: float


@dataclass(frozen=True)
class SimConfig:
    cold_start_s: float = 30.0
    slots: int = 1  # concurrent requests per replica (predict_concurrency)
    report_every_s: float = 1.0
    decide_every_s: float = 2.0
    window_keep_s: float = 70.0  # reports kept for the autoscaler (its 60 s window + a margin)
    wake_on_park: bool = True  # a request parked at zero asks for one replica on arrival


@dataclass(frozen=True)
class Result:
    gpu_seconds: float
    p50_s: float
    p99_s: float
    cold_waited: int  # requests served by a replica that was not ready when they arrived
    replica_starts: int
    requests: int


# An autoscaler: (window of reports + replica counts, now) -> desired replicas.
Autoscaler = Callable[[LoadWindow, float], int]


@dataclass
class _Replica:
    name: str
    requested_at: float
    ready_at: float
    busy: int = 0
    draining: bool = False
    stopped_at: float | None = None


@dataclass
class _Cluster:
    config: SimConfig
    live: list[_Replica] = field(default_factory=list)
    stopped: list[_Replica] = field(default_factory=list)
    # (time, sequence, kind, replica): kinds "ready", "done", "report".
    events: list[tuple[float, int, str, _Replica | None]] = field(default_factory=list)
    queue: deque[int] = field(default_factory=deque)  # request indices, oldest first
    starts: int = 0
    seq: int = 0

    def push(self, at: float, kind: str, replica: _Replica | None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, replica))

    def active(self) -> list[_Replica]:
        return [r for r in self.live if not r.draining]

    def scale(self, desired: int, now: float) -> None:
        active = self.active()
        if desired > len(active):
            self._add(desired - len(active), now)
        elif desired < len(active):
            self._remove(active, len(active) - desired, now)

    def _add(self, count: int, now: float) -> None:
        # A draining replica is taken back before a new one is started (no cold start).
        for replica in self.live:
            if count and replica.draining:
                replica.draining = False
                count -= 1
        for _ in range(count):
            self.starts += 1
            replica = _Replica(f"r{self.starts}", now, now + self.config.cold_start_s)
            self.live.append(replica)
            self.push(replica.ready_at, "ready", replica)

    def _remove(self, active: list[_Replica], count: int, now: float) -> None:
        # Starting replicas first (newest first), then idle ones, then busy ones drain.
        order = sorted(active, key=lambda r: (r.ready_at <= now, r.busy, -r.requested_at))
        for replica in order[:count]:
            if replica.busy:
                replica.draining = True
            else:
                self.stop(replica, now)

    def stop(self, replica: _Replica, now: float) -> None:
        replica.stopped_at = now
        self.live.remove(replica)
        self.stopped.append(replica)

    def free_replica(self, now: float) -> _Replica | None:
        best: _Replica | None = None
        for replica in self.live:
            usable = not replica.draining and replica.ready_at <= now
            free = usable and replica.busy < self.config.slots
            if free and (best is None or replica.busy < best.busy):
                best = replica
        return best

    def ready_count(self, now: float) -> int:
        return sum(1 for r in self.live if not r.draining and r.ready_at <= now)

    def gpu_seconds(self, finish: float) -> float:
        stopped = sum((r.stopped_at or finish) - r.requested_at for r in self.stopped)
        return stopped + sum(finish - r.requested_at for r in self.live)


@dataclass
class _Run:
    """One simulation: the trace, the cluster, the gateway's reports and what was measured."""

    requests: Sequence[Request]
    autoscaler: Autoscaler
    config: SimConfig
    cluster: _Cluster
    latencies: np.ndarray
    reports: deque[LoadReport] = field(default_factory=deque)
    arrivals_since_report: int = 0
    cold_waited: int = 0

    def start(self, index: int, replica: _Replica, now: float) -> None:
        request = self.requests[index]
        replica.busy += 1
        if replica.ready_at > request.arrival:
            self.cold_waited += 1
        self.latencies[index] = now + request.service_s - request.arrival
        self.cluster.push(now + request.service_s, "done", replica)

    def drain_queue(self, now: float) -> None:
        while self.cluster.queue:
            replica = self.cluster.free_replica(now)
            if replica is None:
                return
            self.start(self.cluster.queue.popleft(), replica, now)

    def arrive(self, index: int, now: float) -> None:
        self.arrivals_since_report += 1
        replica = self.cluster.free_replica(now)
        if replica is not None and not self.cluster.queue:
            self.start(index, replica, now)
        else:
            self.cluster.queue.append(index)
            if self.config.wake_on_park and not self.cluster.active():
                self.cluster.scale(1, now)  # the gateway's wake (Knative: the activator's poke)

    def done(self, replica: _Replica, now: float) -> None:
        replica.busy -= 1
        if replica.draining and replica.busy == 0:
            self.cluster.stop(replica, now)
        self.drain_queue(now)

    def report(self, now: float) -> None:
        self.reports.append(_report(self.cluster, now, self.arrivals_since_report))
        self.arrivals_since_report = 0
        while self.reports and self.reports[0].at < now - self.config.window_keep_s:
            self.reports.popleft()
        if _is_multiple(now, self.config.decide_every_s):
            window = LoadWindow(
                reports=tuple(self.reports),
                ready_replicas=self.cluster.ready_count(now),
                starting_replicas=sum(1 for r in self.cluster.active() if r.ready_at > now),
            )
            self.cluster.scale(self.autoscaler(window, now), now)
            self.drain_queue(now)


def simulate(requests: Sequence[Request], autoscaler: Autoscaler, config: SimConfig) -> Result:
    cluster = _Cluster(config)
    run = _Run(requests, autoscaler, config, cluster, np.zeros(len(requests)))
    end = requests[-1].arrival + 60.0 if requests else 0.0
    cluster.push(0.0, "report", None)
    index = 0
    now = 0.0
    while True:
        next_arrival = requests[index].arrival if index < len(requests) else math.inf
        if cluster.events and cluster.events[0][0] <= next_arrival:
            now, _, kind, replica = heapq.heappop(cluster.events)
        elif index < len(requests):
            now, kind, replica = next_arrival, "arrival", None
            run.arrive(index, now)
            index += 1
            continue
        else:
            break
        if kind == "done" and replica is not None:
            run.done(replica, now)
        elif kind == "ready":
            run.drain_queue(now)
        elif kind == "report":
            run.report(now)
            if now < end or cluster.queue or any(r.busy for r in cluster.live):
                cluster.push(now + config.report_every_s, "report", None)
    # Replicas still up at the end are charged until the trace's end (+ a minute).
    return _result(
        cluster.gpu_seconds(max(now, end)), run.latencies, run.cold_waited, cluster.starts
    )


def _is_multiple(now: float, step: float) -> bool:
    return abs(now / step - round(now / step)) < 1e-6


def _report(cluster: _Cluster, now: float, arrivals: int) -> LoadReport:
    in_flight = sum(r.busy for r in cluster.live)
    queued = len(cluster.queue)
    any_ready = cluster.ready_count(now) > 0
    return LoadReport(
        gateway_id="sim",
        at=now,
        in_flight=in_flight,
        waiting=queued if any_ready else 0,
        parked=0 if any_ready else queued,
        arrivals=arrivals,
        replicas=tuple(ReplicaLoad(r.name, r.busy) for r in cluster.live if r.busy),
    )


def _result(gpu: float, latencies: np.ndarray, cold_waited: int, starts: int) -> Result:
    if len(latencies) == 0:
        return Result(gpu, 0.0, 0.0, cold_waited, starts, 0)
    p50, p99 = np.percentile(latencies, [50, 99])
    return Result(gpu, float(p50), float(p99), cold_waited, starts, len(latencies))


# --- baselines ---------------------------------------------------------------------------------
@dataclass
class KnativeKPA:
    """Knative's KPA as configured by default: a 60 s stable window, a 6 s panic window entered
    at 200 % of ready capacity (no scale-down while panicking, for a stable window after it),
    target 70 % of the concurrency target, scale to zero 30 s after the stable window saw no
    load, at most halving per decision (max-scale-down-rate 2)."""

    concurrency_target: int
    min_replica: int
    max_replica: int
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    target_utilization: float = 0.7
    scale_to_zero_grace_s: float = 30.0
    max_scale_down_rate: float = 2.0
    desired: int = 0
    panic_since: float | None = None
    zero_since: float | None = None

    def __call__(self, window: LoadWindow, now: float) -> int:
        if self.desired == 0:  # woken by the activator
            self.desired = window.ready_replicas + window.starting_replicas
        per_replica = self.concurrency_target * self.target_utilization
        stable = _average(window.reports, now, self.stable_window_s)
        panic = _average(window.reports, now, self.panic_window_s)
        want_stable = math.ceil(round(stable / per_replica, 6))
        want_panic = math.ceil(round(panic / per_replica, 6))
        ready = max(window.ready_replicas, 1)
        if panic / per_replica / ready >= self.panic_threshold:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since > self.stable_window_s:
            self.panic_since = None
        want = max(want_panic, self.desired) if self.panic_since is not None else want_stable
        want = max(want, math.floor(window.ready_replicas / self.max_scale_down_rate))
        if want == 0 and self.desired > 0:
            self.zero_since = self.zero_since if self.zero_since is not None else now
            if now - self.zero_since < self.scale_to_zero_grace_s:
                want = 1
        else:
            self.zero_since = None
        self.desired = max(self.min_replica, min(want, self.max_replica))
        return self.desired


def _average(reports: Sequence[LoadReport], now: float, window_s: float) -> float:
    samples = [r.concurrency for r in reports if now - window_s < r.at <= now]
    return sum(samples) / (window_s / 1.0) if samples else 0.0


def oracle(requests: Sequence[Request], config: SimConfig) -> Result:
    """Knows the future: every request is served the moment it arrives, by replicas started a
    cold start ahead. Replica k runs while at least k replicas' worth of requests are in service;
    between two uses it is kept if the gap is shorter than a cold start (cheaper than a restart)."""
    events: list[tuple[float, int]] = []
    for request in requests:
        events.append((request.arrival, 1))
        events.append((request.arrival + request.service_s, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    in_service = needed = starts = 0
    gpu = 0.0
    on_since: dict[int, float] = {}
    off_since: dict[int, float] = {}
    for at, delta in events:
        in_service += delta
        now_needed = math.ceil(in_service / config.slots)
        while needed < now_needed:
            needed += 1
            gap = at - off_since[needed] if needed in off_since else math.inf
            if gap >= config.cold_start_s:
                starts += 1
            gpu += min(gap, config.cold_start_s)
            on_since[needed] = at
        while needed > now_needed:
            gpu += at - on_since.pop(needed)
            off_since[needed] = at
            needed -= 1
    latencies = np.array([r.service_s for r in requests])
    return _result(gpu, latencies, 0, starts)
