"""Multi-cluster placement benchmark: R regions x C clusters over a synthetic week.

Simulates one global deployment whose demand peaks at each region's local afternoon, with a
regional demand spike, a capacity crunch in one cluster (most of its GPUs taken away, its
replicas evicted and left pending) and a regional outage (every cluster of one region gone,
heartbeats stop). The same autoscaler sizes the deployment for every strategy; only where
its replicas go differs:

- plinth: ``PlacementPolicy`` from ``control_plane/domain/placement.py`` (the code the
  reconciler runs), ``min_clusters: 2``, with the gateways' regional demand as weights;
- single region: the same policy, region-locked to the region that has the outage;
- static spread: the desired count split evenly over every cluster, never moved.

Requests go to the nearest cluster with a ready replica (round-trip time from the region
distance table), wait in the gateway up to the request timeout when none has room, and fail
after it. Reports availability (served / offered, over the week and over the outage window),
added network latency, GPU-hours and replicas moved, baselines from the same run.

    .venv/bin/python bench/mcm.py [--regions 3] [--clusters 2] [--days 7]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_plane.domain.clusters import Cluster, ClusterHealth, GeoPoint  # noqa: E402
from control_plane.domain.placement import (  # noqa: E402
    ClusterObservation,
    DeploymentDemand,
    PlacementConstraints,
    PlacementObservation,
    PlacementPolicy,
    PlacementState,
    ReplicaCounts,
)

# name, latitude, longitude, UTC offset (h): demand peaks at 14:00 local time.
REGION_TABLE = (
    ("us-east", 39.0, -77.5, -5.0),
    ("eu-west", 51.5, -0.1, 0.0),
    ("ap-south", 19.1, 72.9, 5.5),
    ("us-west", 45.6, -121.2, -8.0),
    ("ap-northeast", 35.7, 139.7, 9.0),
    ("sa-east", -23.5, -46.6, -3.0),
)
KM_PER_RTT_MS = 100.0  # light in fibre: ~200 km per ms one way, so ~100 km per ms of RTT


@dataclass(frozen=True)
class Config:
    regions: int = 3
    clusters_per_region: int = 2
    days: float = 7.0
    tick_s: float = 30.0
    gpus_per_cluster: int = 64
    peak_rps_per_region: float = 300.0
    replica_rps: float = 10.0
    target_utilization: float = 0.7
    scale_down_delay_s: float = 900.0
    cold_start_s: float = 90.0
    gateway_detect_s: float = 10.0  # requests sent to a dead cluster before gateways notice
    request_timeout_s: float = 60.0
    seed: int = 7

    @property
    def ticks(self) -> int:
        return int(self.days * 86400 / self.tick_s)


@dataclass(frozen=True)
class Events:
    """When things go wrong, as times in seconds (scaled to the trace's length)."""

    outage_region: str
    outage: tuple[float, float]
    spike_region: str
    spike: tuple[float, float]
    crunch_cluster: str
    crunch: tuple[float, float]
    crunch_gpus: int

    @classmethod
    def for_trace(cls, config: Config, regions: list[str]) -> Events:
        length = config.days * 86400
        second = regions[1 % len(regions)]
        return cls(
            outage_region=regions[0],
            outage=(0.42 * length, 0.42 * length + length / 42),  # 4 h of a week
            spike_region=second,
            spike=(0.55 * length, 0.55 * length + length / 28),  # 6 h: demand doubles
            crunch_cluster=f"{second}-1",
            crunch=(0.7 * length, 0.7 * length + length / 14),  # 12 h at a quarter
            crunch_gpus=config.gpus_per_cluster // 4,
        )


def rtt_ms(a: GeoPoint, b: GeoPoint) -> float:
    return a.distance_km(b) / KM_PER_RTT_MS


def build_clusters(config: Config) -> list[Cluster]:
    clusters = []
    for name, lat, lon, _ in REGION_TABLE[: config.regions]:
        for i in range(1, config.clusters_per_region + 1):
            clusters.append(
                Cluster(
                    id=f"{name}-{i}",
                    cloud="aws" if i % 2 else "gcp",
                    region=name,
                    location=GeoPoint(lat, lon),
                    capacity={"H100": config.gpus_per_cluster},
                )
            )
    return clusters


class DemandTrace:
    """Requests/s per region: a diurnal curve, weekend dip, the spike, and AR(1) noise."""

    def __init__(self, config: Config, events: Events) -> None:
        self.config, self.events = config, events
        self.offsets = {name: tz for name, _, _, tz in REGION_TABLE[: config.regions]}
        self.rng = random.Random(config.seed)
        self.noise = dict.fromkeys(self.offsets, 0.0)

    def at(self, t: float) -> dict[str, float]:
        demand = {}
        for region, tz in self.offsets.items():
            hour = (t / 3600 + tz) % 24
            day = int((t / 3600 + tz) // 24) % 7
            shape = 0.25 + 0.75 * (0.5 + 0.5 * math.cos(2 * math.pi * (hour - 14) / 24)) ** 2
            weekend = 0.7 if day >= 5 else 1.0
            spike = (
                2.0 if region == self.events.spike_region and _within(t, self.events.spike) else 1
            )
            self.noise[region] = 0.9 * self.noise[region] + self.rng.gauss(0.0, 0.02)
            level = shape * weekend * spike * (1 + self.noise[region])
            demand[region] = max(0.0, self.config.peak_rps_per_region * level)
        return demand


def _within(t: float, window: tuple[float, float]) -> bool:
    return window[0] <= t < window[1]


class Autoscaler:
    """Replicas for the total demand at the target utilisation; scale-down waits."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.recent: deque[int] = deque(
            maxlen=max(1, int(config.scale_down_delay_s / config.tick_s))
        )

    def desired(self, total_rps: float) -> int:
        per_replica = self.config.replica_rps * self.config.target_utilization
        self.recent.append(math.ceil(total_rps / per_replica))
        return max(self.recent)


@dataclass
class SimCluster:
    """A cluster's replicas (each one's ready time), and what the world does to it."""

    cluster: Cluster
    gpus: int
    up: bool = True
    down_since: float = 0.0
    target: int = 0
    replicas: list[float] = field(default_factory=list)

    def apply(self, target: int, now: float, cold_start_s: float) -> None:
        self.target = target
        if not self.up:
            return
        self.replicas.sort()
        del self.replicas[min(target, self.gpus) :]  # the newest go first (and evictions)
        while len(self.replicas) < min(target, self.gpus):
            self.replicas.append(now + cold_start_s)

    def counts(self, now: float) -> ReplicaCounts:
        ready = sum(1 for at in self.replicas if at <= now)
        pending = max(0, self.target - len(self.replicas)) if self.up else 0
        return ReplicaCounts(ready=ready, pending_no_capacity=pending)

    def observed(self, now: float) -> ClusterObservation:
        health = ClusterHealth(last_heartbeat=now if self.up else self.down_since)
        return ClusterObservation(replace(self.cluster, health=health))


class PolicyPlacement:
    """Placement by ``PlacementPolicy``, one ``decide`` per tick, as the reconciler does."""

    def __init__(self, name: str, policy: PlacementPolicy, constraints: PlacementConstraints):
        self.name, self.policy, self.constraints = name, policy, constraints
        self.state = PlacementState()
        self.decide_s = 0.0

    def targets(
        self, now: float, sims: list[SimCluster], desired: int, demand: dict[str, float]
    ) -> dict[str, int]:
        dep = DeploymentDemand(
            "bench",
            "global",
            desired,
            "H100",
            1,
            self.constraints,
            observed={s.cluster.id: s.counts(now) for s in sims},
            demand_by_region=demand,
        )
        observation = PlacementObservation(tuple(s.observed(now) for s in sims), (dep,))
        started = time.perf_counter()
        _, self.state = self.policy.decide(self.state, observation, now)
        self.decide_s += time.perf_counter() - started
        return dict(self.state.deployments[dep.key].applied)


class StaticSpread:
    """The desired count split evenly over every cluster, whatever their health."""

    name = "static even spread"
    decide_s = 0.0

    def targets(
        self, now: float, sims: list[SimCluster], desired: int, demand: dict[str, float]
    ) -> dict[str, int]:
        base, extra = divmod(desired, len(sims))
        return {s.cluster.id: base + (1 if i < extra else 0) for i, s in enumerate(sims)}


Strategy = PolicyPlacement | StaticSpread


@dataclass
class Totals:
    name: str
    offered: float = 0.0
    failed: float = 0.0
    served: float = 0.0
    served_in_region: float = 0.0
    rtt_weighted: float = 0.0
    gpu_seconds: float = 0.0
    moved: int = 0
    window_offered: float = 0.0
    window_failed: float = 0.0
    decide_ms_per_tick: float = 0.0

    @property
    def availability(self) -> float:
        return 1.0 - self.failed / self.offered if self.offered else 1.0

    @property
    def window_availability(self) -> float:
        return 1.0 - self.window_failed / self.window_offered if self.window_offered else 1.0


@dataclass
class Gateways:
    """Requests waiting per region ([age in ticks, amount], oldest first), routed nearest
    first to clusters with a ready replica; they fail once they waited the timeout."""

    config: Config
    routes: list[tuple[float, str, str]]  # (rtt ms, client region, cluster), nearest first
    waiting: dict[str, list[list[float]]]
    served_last: dict[tuple[str, str], float] = field(default_factory=dict)

    def tick(self, offered: dict[str, float], capacity: dict[str, float], totals: Totals) -> float:
        """Serve one tick; returns the requests that failed."""
        failed = 0.0
        for region, amount in offered.items():
            self.waiting[region].append([0.0, amount])
        served: dict[tuple[str, str], float] = {}
        for rtt, region, cluster_id in self.routes:
            room = capacity[cluster_id]
            for entry in self.waiting[region]:
                if room <= 0:
                    break
                take = min(entry[1], room)
                entry[1] -= take
                room -= take
                served[(region, cluster_id)] = served.get((region, cluster_id), 0.0) + take
                totals.rtt_weighted += take * rtt
                totals.served_in_region += take if rtt == 0 else 0.0
            capacity[cluster_id] = room
        limit = self.config.request_timeout_s / self.config.tick_s
        for region, entries in self.waiting.items():
            kept = []
            for age, amount in entries:
                if amount <= 0:
                    continue
                if age + 1 >= limit:
                    failed += amount
                else:
                    kept.append([age + 1, amount])
            self.waiting[region] = kept
        totals.served += sum(served.values())
        self.served_last = served
        return failed

    def lost_to(self, dead: list[str], offered: dict[str, float]) -> float:
        """Requests sent to clusters that just died, before the gateways noticed."""
        share = min(1.0, self.config.gateway_detect_s / self.config.tick_s)
        lost = 0.0
        for (region, cluster_id), amount in self.served_last.items():
            if cluster_id in dead:
                take = min(offered[region], amount * share)
                offered[region] -= take
                lost += take
        return lost


def world(sims: list[SimCluster], events: Events, now: float) -> list[str]:
    """Apply the outage and the crunch at ``now``; returns the clusters that just went down."""
    went_down = []
    for sim in sims:
        out = sim.cluster.region == events.outage_region and _within(now, events.outage)
        if sim.up and out:
            sim.up, sim.down_since, sim.replicas = False, now, []
            went_down.append(sim.cluster.id)
        elif not sim.up and not out:
            sim.up = True
        crunched = sim.cluster.id == events.crunch_cluster and _within(now, events.crunch)
        sim.gpus = events.crunch_gpus if crunched else sim.cluster.capacity["H100"]
    return went_down


def simulate(config: Config, events: Events, strategy: Strategy) -> Totals:
    """Run the trace; the hour before t=0 warms the deployment up and is not counted."""
    clusters = build_clusters(config)
    sims = [SimCluster(c, c.capacity["H100"]) for c in clusters]
    regions = {c.region: c.location for c in clusters}
    routes = sorted(
        (rtt_ms(where, c.location), region, c.id)
        for region, where in regions.items()
        for c in clusters
    )
    gateways = Gateways(config, routes, {r: [] for r in regions})
    trace, autoscaler, totals = (
        DemandTrace(config, events),
        Autoscaler(config),
        Totals(strategy.name),
    )
    warm_up = Totals("warm-up")
    window = (events.outage[0], events.outage[1] + 3600.0)
    previous: dict[str, int] = {}
    dt = config.tick_s
    for tick in range(-int(3600 / dt), config.ticks):
        now = tick * dt
        counted = totals if now >= 0 else warm_up
        went_down = world(sims, events, now)
        demand = trace.at(now)
        targets = strategy.targets(now, sims, autoscaler.desired(sum(demand.values())), demand)
        for sim in sims:
            sim.apply(targets.get(sim.cluster.id, 0), now, config.cold_start_s)
        counted.moved += _moves(previous, targets)
        previous = targets
        offered = {r: rps * dt for r, rps in demand.items()}
        counted.offered += sum(offered.values())
        failed = gateways.lost_to(went_down, offered)
        capacity = {s.cluster.id: s.counts(now).ready * config.replica_rps * dt for s in sims}
        failed += gateways.tick(offered, capacity, counted)
        counted.failed += failed
        counted.gpu_seconds += sum(len(s.replicas) for s in sims) * dt
        if _within(now, window):
            counted.window_offered += sum(demand.values()) * dt
            counted.window_failed += failed
    totals.decide_ms_per_tick = strategy.decide_s * 1000 / max(1, config.ticks)
    return totals


def _moves(before: dict[str, int], after: dict[str, int]) -> int:
    """Replicas stopped in one cluster while others start: min(added, removed)."""
    added = sum(max(0, n - before.get(c, 0)) for c, n in after.items())
    removed = sum(max(0, n - after.get(c, 0)) for c, n in before.items())
    return min(added, removed)


def print_table(config: Config, events: Events, rows: list[Totals]) -> None:
    static = next(r for r in rows if r.name == StaticSpread.name)
    print(
        f"{config.regions} regions x {config.clusters_per_region} clusters, {config.days:g} days"
        f" at {config.tick_s:g} s ticks; outage: {events.outage_region} for"
        f" {(events.outage[1] - events.outage[0]) / 3600:.1f} h; crunch: {events.crunch_cluster}"
        f" at {events.crunch_gpus} GPUs; spike: {events.spike_region} x2"
    )
    header = (
        "strategy", "availability", "outage window", "added RTT ms", "in-region",
        "GPU-hours", "x static", "moved", "policy ms/tick",
    )  # fmt: skip
    table = [header]
    for r in rows:
        table.append(
            (
                r.name,
                f"{100 * r.availability:.4f} %",
                f"{100 * r.window_availability:.4f} %",
                f"{r.rtt_weighted / r.served if r.served else 0.0:.1f}",
                f"{100 * r.served_in_region / r.served if r.served else 0.0:.1f} %",
                f"{r.gpu_seconds / 3600:.0f}",
                f"{r.gpu_seconds / static.gpu_seconds:.3f}" if static.gpu_seconds else "-",
                str(r.moved),
                f"{r.decide_ms_per_tick:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=3, choices=range(2, len(REGION_TABLE) + 1))
    parser.add_argument("--clusters", type=int, default=2, help="clusters per region")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = Config(
        regions=args.regions, clusters_per_region=args.clusters, days=args.days, seed=args.seed
    )
    regions = [name for name, *_ in REGION_TABLE[: config.regions]]
    events = Events.for_trace(config, regions)
    policy = PlacementPolicy(
        heartbeat_timeout_s=30.0,
        recovery_hold_s=600.0,
        crunch_grace_s=60.0,
        crunch_backoff_s=1800.0,
        move_interval_s=60.0,
    )
    strategies: list[Strategy] = [
        PolicyPlacement("plinth placement", policy, PlacementConstraints(min_clusters=2)),
        PolicyPlacement(
            f"single region ({regions[0]})",
            policy,
            PlacementConstraints(regions=frozenset({regions[0]}), min_clusters=2),
        ),
        StaticSpread(),
    ]
    rows = [simulate(config, events, s) for s in strategies]
    print_table(config, events, rows)
    plinth, static = rows[0], rows[2]
    ratio = plinth.gpu_seconds / static.gpu_seconds if static.gpu_seconds else math.inf
    met = plinth.availability >= 0.9999 and ratio <= 1.1
    print(
        f"target availability >= 99.99 % with GPU-hours <= 1.1x static spread:"
        f" {'met' if met else 'NOT met'} ({100 * plinth.availability:.4f} %, {ratio:.3f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
