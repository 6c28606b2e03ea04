"""Autoscaling policy: gateway load reports -> desired replicas, with the reason.

Pure: ``decide(settings, state, window, now)`` reads no clock and does no I/O; the
reconciler applies its decision. Baseten's rules with Baseten's settings
(``AutoscalingSettings``):

- desired = ceil(average concurrency over ``autoscaling_window`` /
  (``concurrency_target`` x ``target_utilization_percentage``)), clamped to
  [``min_replica``, ``max_replica``]. Concurrency = in-flight + waiting for a replica slot +
  parked (waiting for a replica of a deployment at zero), summed over every gateway.
- Up at once. A burst far above capacity (the panic window, a tenth of the autoscaling window,
  needs twice the current count) puts the policy in panic mode: the count follows the panic
  window up until it has caught up, with no scale-down meanwhile.
- Down only after the load stayed below the current count for ``scale_down_delay``, then half
  the excess per step, the delay again between steps (a staircase).
- To zero only when ``min_replica`` is 0 and no request arrived for ``scale_down_delay``.
- Never below the replicas busy with in-flight work.
- Replicas still starting count toward capacity: while some are, only a panic raises the count.
  A queue behind them (or draining after a cold start) counts at its arrival rate x the service
  time learned from the reports (Little's law), not at its length: one replica per queued
  request would be a stampede to max_replica, then held for scale_down_delay. The backlog
  itself asks for the replicas that drain it within a window or a cold start, whichever is
  longer (queued x service time / that time; a replica asked for later than that would come
  too late), so a queue left by a cold start does not linger for minutes.
- Async requests QUEUED for the deployment are load now (added to both windows): a deep queue
  scales the deployment up, past starting replicas, and wakes it at zero (the loop's job).
See docs/autoscaling.md for the measurements behind these choices.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from control_plane.domain.records import AutoscalingSettings


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's in-flight requests as one gateway sees them."""

    replica_id: str
    in_flight: int


@dataclass(frozen=True)
class LoadReport:
    """What one gateway saw for one deployment at ``at`` (epoch seconds)."""

    gateway_id: str
    at: float
    in_flight: int = 0
    waiting: int = 0  # for a slot on a ready replica
    parked: int = 0  # for a replica of a deployment at zero (or with none ready)
    # Requests received since this gateway's previous report (a request shorter than the
    # report interval is never in flight at a report; it still counts as a request).
    arrivals: int = 0
    replicas: tuple[ReplicaLoad, ...] = ()

    @property
    def concurrency(self) -> int:
        return self.in_flight + self.waiting + self.parked

    def to_value(self) -> dict[str, Any]:
        """The counts as the load-report store keeps them (gateway and time are its keys)."""
        return {
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "parked": self.parked,
            "arrivals": self.arrivals,
            "replicas": {r.replica_id: r.in_flight for r in self.replicas},
        }

    @classmethod
    def from_value(cls, gateway_id: str, at: float, value: dict[str, Any]) -> LoadReport:
        replicas = value.get("replicas") or {}
        return cls(
            gateway_id=gateway_id,
            at=at,
            in_flight=int(value.get("in_flight", 0)),
            waiting=int(value.get("waiting", 0)),
            parked=int(value.get("parked", 0)),
            arrivals=int(value.get("arrivals", 0)),
            replicas=tuple(ReplicaLoad(rid, int(n)) for rid, n in sorted(replicas.items())),
        )


@dataclass(frozen=True)
class LoadWindow:
    """The deployment's reports over the window, and its replicas as the cluster reports them."""

    reports: tuple[LoadReport, ...] = ()
    ready_replicas: int = 0
    starting_replicas: int = 0  # asked for, not READY yet (STARTING or LOADING)
    # Async requests QUEUED for the deployment now (the worker has not sent them yet).
    async_queued: int = 0


@dataclass(frozen=True)
class AutoscalerState:
    """Per deployment; the reconciler keeps it between ticks (and in the store)."""

    desired: int  # replicas last decided (ready + starting + not created yet)
    # Since when the load has needed fewer replicas than ``desired`` (None: it does not).
    below_since: float | None = None
    last_request_at: float | None = None
    # Panic mode: entered when the panic window needs panic_threshold x the current replicas;
    # the count follows the panic window up until it has caught up (no scale-down meanwhile).
    panicking: bool = False
    # Seconds a request spends in flight, learned (Little's law) over windows without a queue.
    service_s: float | None = None
    # Since when replicas have been starting, and how long the last start took (observed).
    starting_since: float | None = None
    cold_start_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON for the metadata store, where the reconciler keeps it between ticks."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoscalerState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AutoscalerTuning:
    """Knobs of the policy itself, not user settings (the bench justifies the defaults)."""

    # A report vouches for the load for this long after its timestamp; a gateway that stops
    # reporting stops counting after it (reports are sent about once a second).
    report_ttl_s: float = 5.0
    # Panic window = this fraction of autoscaling_window (Knative: 6 s of 60 s).
    panic_window_fraction: float = 0.1
    min_panic_window_s: float = 2.0
    # Panic when the panic window asks for at least this multiple of the current replicas.
    # 0 disables panic (the bench's ablation).
    panic_threshold: float = 2.0
    # Requests in a window without a queue needed to learn the service time from it.
    min_requests_to_learn: int = 20
    # Count a queue at its arrival rate x the service time (see _queue_at_arrival_rate);
    # False: at its length (the bench's ablation).
    queue_at_arrival_rate: bool = True
    # A backlog (a queue counted at its arrival rate) also asks for the replicas that drain
    # it within max(window, the cold start last observed): queued x service time / that.
    # False leaves the backlog to the replicas the arrival rate needs (the bench's ablation).
    drain_backlog: bool = True


@dataclass(frozen=True)
class LoadSummary:
    """The window's reports summed over gateways; averages are over the window's length."""

    average: float  # concurrency (in flight + waiting + parked) over the autoscaling window
    panic_average: float  # the same over the panic window
    in_flight_average: float
    panic_in_flight_average: float
    arrivals: int  # requests that arrived in the window
    panic_arrivals: int
    queued: bool  # some request waited or was parked in the window
    queue_growing: bool  # more queued now than at the start of the panic window
    queued_now: int  # waiting + parked in the gateways' fresh reports
    busy_replicas: int  # replicas with in-flight work in a fresh report
    last_request_at: float | None


def decide(
    settings: AutoscalingSettings,
    state: AutoscalerState,
    window: LoadWindow,
    now: float,
    tuning: AutoscalerTuning = AutoscalerTuning(),
) -> tuple[int, AutoscalerState, str]:
    """Desired replicas, the next state, and why (recorded in the scaling history)."""
    window_s = float(settings.autoscaling_window)
    load = summarize(window.reports, now, window_s, tuning)
    state = replace(
        state,
        last_request_at=_latest(state.last_request_at, load.last_request_at),
        service_s=_learn_service_time(state.service_s, load, window_s, tuning),
    )
    state = _observe_cold_start(state, window, now)
    average, panic_average = load.average, load.panic_average
    if tuning.queue_at_arrival_rate:
        average, panic_average = _queue_at_arrival_rate(state, window, load, window_s, tuning)
    if window.async_queued:
        # Queued async work waits for a replica as a parked request does, and stays until
        # served: load now, on both windows, and a request that keeps the deployment up.
        average += window.async_queued
        panic_average += window.async_queued
        state = replace(state, last_request_at=now)
    per_replica = settings.concurrency_target * settings.target_utilization_percentage / 100
    stable = _replicas_for(average, per_replica)
    panic_need = _replicas_for(panic_average, per_replica)
    current = state.desired
    state = _update_panic(state, tuning, panic_need)
    panicking = state.panicking
    wanted = settings.clamp(max(stable, panic_need) if panicking else stable)
    if wanted > current:
        # A backlog is not a burst the starting replicas will absorb: it stays until served.
        backlog_needs_more = _replicas_for(window.async_queued, per_replica) > current
        return _scale_up(settings, state, window, load, wanted, panicking, backlog_needs_more)
    if current > settings.max_replica:
        return settings.max_replica, _steady(state, settings.max_replica), "above max_replica"
    floor = settings.clamp(max(wanted, load.busy_replicas))
    if floor >= current or panicking:
        return current, _steady(state, current), _why_hold(load, current, panicking)
    return _scale_down(settings, state, load, floor, now)


def _update_panic(
    state: AutoscalerState, tuning: AutoscalerTuning, panic_need: int
) -> AutoscalerState:
    """Knative holds panic mode for a stable window; here the scale_down_delay already keeps
    the replicas after a burst, so panic ends as soon as the count has caught up (fewer
    GPU-seconds in bench/autoscale.py at the same p99)."""
    threshold = tuning.panic_threshold * max(state.desired, 1)
    if tuning.panic_threshold > 0 and panic_need >= threshold:
        return replace(state, panicking=True)
    if state.panicking and panic_need <= state.desired:
        return replace(state, panicking=False)
    return state


def _learn_service_time(
    known: float | None, load: LoadSummary, window_s: float, tuning: AutoscalerTuning
) -> float | None:
    """Little's law over a window without a queue: seconds in flight per request."""
    if load.queued or load.arrivals < tuning.min_requests_to_learn or not load.in_flight_average:
        return known
    return load.in_flight_average * window_s / load.arrivals


def _queue_at_arrival_rate(
    state: AutoscalerState,
    window: LoadWindow,
    load: LoadSummary,
    window_s: float,
    tuning: AutoscalerTuning,
) -> tuple[float, float]:
    """Concurrency of the window and of the panic window, a queue counted at its arrival rate.

    Requests queued behind starting replicas, or left from a cold start and draining, are a
    backlog: counted by their length they ask for a replica per queued request (a stampede
    up to max_replica, then held for scale_down_delay). Their arrival rate x the service time
    is the concurrency they bring. A queue that grows with nothing starting is capacity
    falling short: it counts at its length, which asks for more at once.
    """
    backlog = window.starting_replicas > 0 or not load.queue_growing
    if not (load.queued and backlog and state.service_s and load.arrivals):
        return load.average, load.panic_average
    panic_s = _panic_window_s(window_s, tuning)
    drain = 0.0
    if tuning.drain_backlog:
        drain = load.queued_now * state.service_s / max(window_s, state.cold_start_s or 0.0)
    return (
        max(load.in_flight_average, load.arrivals / window_s * state.service_s) + drain,
        max(load.panic_in_flight_average, load.panic_arrivals / panic_s * state.service_s) + drain,
    )


def _observe_cold_start(state: AutoscalerState, window: LoadWindow, now: float) -> AutoscalerState:
    """From the first tick that saw replicas starting to the first that saw none."""
    if window.starting_replicas > 0:
        return state if state.starting_since is not None else replace(state, starting_since=now)
    if state.starting_since is None:
        return state
    return replace(state, starting_since=None, cold_start_s=now - state.starting_since)


def _panic_window_s(window_s: float, tuning: AutoscalerTuning) -> float:
    return max(tuning.min_panic_window_s, window_s * tuning.panic_window_fraction)


def summarize(
    reports: Iterable[LoadReport], now: float, window_s: float, tuning: AutoscalerTuning
) -> LoadSummary:
    """Averages over the window and the panic window, summed over gateways."""
    by_gateway: dict[str, list[LoadReport]] = defaultdict(list)
    for report in reports:
        by_gateway[report.gateway_id].append(report)
    panic_s = _panic_window_s(window_s, tuning)
    totals = _Totals()
    busy: set[str] = set()
    for gateway_reports in by_gateway.values():
        ordered = sorted(gateway_reports, key=lambda r: r.at)
        totals.add(ordered, now, window_s, panic_s, tuning.report_ttl_s)
        newest = ordered[-1]
        if now - tuning.report_ttl_s < newest.at <= now:
            busy.update(r.replica_id for r in newest.replicas if r.in_flight > 0)
    return LoadSummary(
        average=totals.area / window_s,
        panic_average=totals.panic_area / panic_s,
        in_flight_average=totals.in_flight_area / window_s,
        panic_in_flight_average=totals.panic_in_flight_area / panic_s,
        arrivals=totals.arrivals,
        panic_arrivals=totals.panic_arrivals,
        queued=totals.queued_area > 0,
        queue_growing=totals.queued_now > totals.queued_before,
        queued_now=totals.queued_now,
        busy_replicas=len(busy),
        last_request_at=totals.seen_at,
    )


@dataclass
class _Totals:
    """Integrals over the windows of the gateways' reports. Each report holds until its
    gateway's next one, for at most ``ttl`` (a gateway that stops reporting stops counting)."""

    area: float = 0.0
    panic_area: float = 0.0
    in_flight_area: float = 0.0
    panic_in_flight_area: float = 0.0
    queued_area: float = 0.0
    arrivals: int = 0
    panic_arrivals: int = 0
    queued_now: int = 0
    queued_before: int = 0
    seen_at: float | None = None

    def add(
        self, ordered: Sequence[LoadReport], now: float, window_s: float, panic_s: float, ttl: float
    ) -> None:
        start, panic_start = now - window_s, now - panic_s
        queued_now = queued_before = 0
        for index, report in enumerate(ordered):
            at = report.at
            if at > now:
                break  # from a gateway whose clock is ahead: not yet
            following = ordered[index + 1].at if index + 1 < len(ordered) else now
            until = min(following, at + ttl, now)
            queued = report.waiting + report.parked
            queued_now = queued if until == now or at + ttl > now else 0
            if at <= panic_start:
                queued_before = queued
            if at > start:
                self.arrivals += report.arrivals
                self.panic_arrivals += report.arrivals if at > panic_start else 0
                if queued or report.in_flight or report.arrivals:
                    self.seen_at = _latest(self.seen_at, at)
            if until > start:
                self._hold(report.in_flight, queued, max(at, start), until, panic_start)
        self.queued_now += queued_now
        self.queued_before += queued_before

    def _hold(
        self, in_flight: int, queued: int, held_from: float, until: float, panic_start: float
    ) -> None:
        self.area += (in_flight + queued) * (until - held_from)
        self.in_flight_area += in_flight * (until - held_from)
        self.queued_area += queued * (until - held_from)
        if until > panic_start:
            panic_held = until - max(held_from, panic_start)
            self.panic_area += (in_flight + queued) * panic_held
            self.panic_in_flight_area += in_flight * panic_held


def _replicas_for(concurrency: float, per_replica: float) -> int:
    # Rounded to a millionth first so float noise (e.g. 2.8 / 0.7) does not add a replica.
    return math.ceil(round(concurrency / per_replica, 6))


def _scale_up(
    settings: AutoscalingSettings,
    state: AutoscalerState,
    window: LoadWindow,
    load: LoadSummary,
    wanted: int,
    panic: bool,
    backlog_needs_more: bool = False,
) -> tuple[int, AutoscalerState, str]:
    current = state.desired
    if window.starting_replicas > 0 and not (panic or backlog_needs_more) and current > 0:
        # Starting replicas count toward capacity: requests queued behind a cold start are
        # what they are for, so only a panic adds more before they are ready.
        reason = (
            f"hold at {current}: {window.starting_replicas} starting replica(s) count toward "
            f"capacity (average {load.average:.2f} would need {wanted})"
        )
        return current, _steady(state, current), reason
    source = "panic window" if panic else f"{settings.autoscaling_window} s window"
    concurrency = load.panic_average if panic else load.average
    reason = (
        f"scale up {current} -> {wanted}: concurrency {concurrency:.2f} over the {source} "
        f"(target {settings.concurrency_target} x {settings.target_utilization_percentage}%)"
    )
    if window.async_queued:
        reason += f" + async backlog of {window.async_queued} queued request(s)"
    if wanted == settings.max_replica:
        reason += ", at max_replica"
    return wanted, _steady(state, wanted), reason


def _scale_down(
    settings: AutoscalingSettings,
    state: AutoscalerState,
    load: LoadSummary,
    floor: int,
    now: float,
) -> tuple[int, AutoscalerState, str]:
    current = state.desired
    delay = settings.scale_down_delay
    below_since = state.below_since if state.below_since is not None else now
    if now - below_since < delay:
        waited = replace(state, below_since=below_since)
        reason = (
            f"hold at {current}: load needs {floor} since {now - below_since:.0f} s, "
            f"scale_down_delay {delay} s"
        )
        return current, waited, reason
    step_to = current - math.ceil((current - floor) / 2)
    idle_for = math.inf if state.last_request_at is None else now - state.last_request_at
    if step_to == 0 and idle_for < delay:
        hold = replace(state, below_since=below_since)
        return current, hold, f"hold at {current}: last request {idle_for:.0f} s ago"
    # The timer restarts: the next step waits a full delay again.
    next_state = replace(state, desired=step_to, below_since=now if step_to > floor else None)
    reason = (
        f"scale down {current} -> {step_to}: load needed {floor} for {delay} s "
        f"(half the excess of {current - floor}"
    )
    reason += f"; {load.busy_replicas} busy)" if load.busy_replicas else ")"
    return step_to, next_state, reason


def _steady(state: AutoscalerState, desired: int) -> AutoscalerState:
    return replace(state, desired=desired, below_since=None)


def _why_hold(load: LoadSummary, current: int, panicking: bool) -> str:
    why = f"steady at {current}: concurrency {load.average:.2f}, {load.busy_replicas} busy"
    return why + " (panic mode: no scale-down)" if panicking else why


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
