"""Autoscaling policy, tick by tick with a fake clock (no I/O).

Each case runs ``decide`` once a second; gateways report once a second (a report holds until
the next). The expected list is every change of the desired count: (second, replicas).
Settings use a 10 s window (the smallest allowed) so the averages are easy to follow: the
average at second t is the mean of the reports at t-10 .. t-1, the panic window (2 s) the
mean of t-2 and t-1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from control_plane.domain.autoscaling import (
    AutoscalerState,
    AutoscalerTuning,
    LoadReport,
    LoadWindow,
    ReplicaLoad,
    decide,
)
from control_plane.domain.records import AutoscalingSettings
from control_plane.exceptions import ValidationFailed

Load = Callable[[int], list[LoadReport]]
NO_PANIC = AutoscalerTuning(panic_threshold=0)
DEFAULT_TUNING = AutoscalerTuning()


def settings(**changes: int) -> AutoscalingSettings:
    base = {"max_replica": 30, "autoscaling_window": 10, "scale_down_delay": 30}
    return AutoscalingSettings().with_changes({**base, **changes})


def gateway(name: str, in_flight: int = 0, waiting: int = 0) -> Callable[[int], LoadReport]:
    return lambda t: LoadReport(name, float(t), in_flight=in_flight, waiting=waiting)


def steady(*gateways: Callable[[int], LoadReport]) -> Load:
    return lambda t: [g(t) for g in gateways]


def before_after(switch_at: int, before: Load, after: Load) -> Load:
    return lambda t: before(t) if t < switch_at else after(t)


def run(
    config: AutoscalingSettings,
    load: Load,
    *,
    start: int,
    until: int,
    starting: Callable[[int], int] = lambda t: 0,
    tuning: AutoscalerTuning = AutoscalerTuning(),
    service_s: float | None = None,
    async_queued: Callable[[int], int] = lambda t: 0,
) -> list[tuple[int, int]]:
    """Reports from t=-120 on (the history is in the store), decisions from t=1 to ``until``."""
    reports = [r for t in range(-120, 1) for r in load(t)]
    state = AutoscalerState(desired=start, service_s=service_s)
    changes: list[tuple[int, int]] = []
    for t in range(1, until + 1):
        reports = [r for r in reports if r.at > t - 100] + load(t)
        window = LoadWindow(
            tuple(reports),
            ready_replicas=state.desired - starting(t),
            starting_replicas=starting(t),
            async_queued=async_queued(t),
        )
        desired, new_state, reason = decide(config, state, window, float(t), tuning)
        assert reason
        if desired != state.desired:
            changes.append((t, desired))
        state = new_state
    return changes


ONE = steady(gateway("g1", in_flight=1))
IDLE = steady(gateway("g1"))


def trickle(last: int) -> Load:
    """A request every 20 s up to ``last``, each too short to be in flight at a report."""
    return lambda t: [LoadReport("g1", float(t), arrivals=1 if t % 20 == 0 and t <= last else 0)]


def busy_replicas(t: int) -> list[LoadReport]:
    replicas = tuple(ReplicaLoad(f"r{i}", 1) for i in range(3))
    return [LoadReport("g1", float(t), in_flight=3, replicas=replicas)]


@dataclass(frozen=True)
class Case:
    name: str
    config: AutoscalingSettings
    load: Load
    start: int  # desired replicas before the first tick
    until: int
    expected: list[tuple[int, int]]
    starting: Callable[[int], int] = lambda t: 0
    tuning: AutoscalerTuning = DEFAULT_TUNING
    service_s: float | None = None  # learned before the first tick
    async_queued: Callable[[int], int] = lambda t: 0  # QUEUED async requests at each tick


SEVEN = steady(gateway("g1", in_flight=7))
TEN = steady(gateway("g1", in_flight=10))
BURST = before_after(20, ONE, steady(gateway("g1", in_flight=14)))
QUEUE_GROWS = before_after(
    0, steady(gateway("g1", in_flight=2)), steady(gateway("g1", in_flight=2, waiting=1))
)


def idle_then_parked(t: int) -> list[LoadReport]:
    if t < 0:
        return ONE(t)
    if t == 200:
        return [LoadReport("g1", float(t), parked=3, arrivals=3)]
    return IDLE(t)


def gateway_stops_at_zero(t: int) -> list[LoadReport]:
    stopping = [LoadReport("g1", float(t), in_flight=6)] if t <= 0 else []
    return [*stopping, LoadReport("g2", float(t), in_flight=1)]


def cold_start_queue(t: int) -> list[LoadReport]:
    """4 requests a second parked from t=0 (no replica is ready)."""
    return IDLE(t) if t < 0 else [LoadReport("g1", float(t), parked=4 * (t + 1), arrivals=4)]


def overloaded(t: int) -> list[LoadReport]:
    """3 in flight on the replicas there are; from t=0 4 requests a second, the queue grows."""
    if t < 0:
        return [LoadReport("g1", float(t), in_flight=3, arrivals=3)]
    return [LoadReport("g1", float(t), in_flight=3, waiting=t + 1, arrivals=4)]


NO_PANIC_RAMP = [(21, 4), (22, 6), (23, 7), (24, 9), (25, 11), (26, 13), (27, 15), (28, 17)]
STALE_STEPS = [(7, 9), (8, 8), (9, 7), (10, 6), (11, 5), (12, 4), (14, 3), (15, 2)]

CASES = [
    Case("steady load: 7 in flight / 70% = 10, held", settings(), SEVEN, 10, 300, []),
    Case("burst: up at once, on the panic window", settings(), BURST, 2, 100, [(21, 11), (22, 20)]),
    Case(
        "burst without the panic window: the 10 s average ramps up",
        settings(),
        BURST,
        2,
        100,
        [*NO_PANIC_RAMP, (29, 19), (30, 20)],
        tuning=NO_PANIC,
    ),
    Case(
        "staircase down: below from t=2, 30 s delay, half the excess per step",
        settings(),
        before_after(0, SEVEN, ONE),
        10,
        300,
        [(32, 6), (62, 4), (92, 3), (122, 2)],
    ),
    Case(
        "to zero after a delay without requests, and back at once for a parked request",
        settings(),
        idle_then_parked,
        2,
        201,
        [(33, 1), (63, 0), (201, 3)],
    ),
    Case(
        "no zero while requests trickle in (never in flight)",
        settings(),
        trickle(10**4),
        1,
        300,
        [],
    ),
    Case("zero a full delay after the last request", settings(), trickle(100), 1, 300, [(130, 0)]),
    Case("min_replica 1: never zero", settings(min_replica=1), IDLE, 1, 300, []),
    Case("max_replica clamps", settings(max_replica=3), TEN, 1, 100, [(1, 3)]),
    Case("above a lowered max_replica", settings(max_replica=3), ONE, 5, 40, [(1, 3), (32, 2)]),
    Case(
        "concurrency_target 4 at 50%: 10 in flight need 5",
        settings(concurrency_target=4, target_utilization_percentage=50),
        TEN,
        1,
        100,
        [(1, 5)],
    ),
    Case(
        "starting replicas count: no scale-up until they are ready (t=20)",
        settings(max_replica=10),
        QUEUE_GROWS,
        4,
        100,
        [(20, 5)],
        starting=lambda t: 2 if t < 20 else 0,
    ),
    Case(
        "cold start, service time known: a parked queue counts at 4 req/s x 1 s, needs 6",
        settings(),
        cold_start_queue,
        0,
        29,
        [(1, 3), (2, 6)],
        starting=lambda t: 6 if 1 < t < 30 else 0,
        tuning=AutoscalerTuning(drain_backlog=False),
        service_s=1.0,
    ),
    Case(
        # t=2: 4 req/s x 1 s + 12 parked x 1 s / 10 s = 5.2 -> 8; t=16: 4 + 68 / 10 = 10.8
        # -> 16, twice the count: a panic raises it past the starting replicas.
        "cold start: the backlog also asks for the replicas that drain it within a window",
        settings(),
        cold_start_queue,
        0,
        29,
        [(1, 3), (2, 8), (16, 16)],
        starting=lambda t: 6 if 1 < t < 30 else 0,
        service_s=1.0,
    ),
    Case(
        "cold start, the queue counted by its length: a stampede to max_replica",
        settings(),
        cold_start_queue,
        0,
        29,
        [(1, 3), (2, 9), (3, 15), (4, 20), (5, 26), (6, 30)],
        starting=lambda t: 6 if 1 < t < 30 else 0,
        tuning=AutoscalerTuning(queue_at_arrival_rate=False),
        service_s=1.0,
    ),
    Case(
        "a queue growing with nothing starting counts at its length (capacity falls short)",
        settings(),
        overloaded,
        3,
        10,
        [(1, 5), (3, 6), (5, 7), (6, 8), (7, 9), (8, 10), (9, 11), (10, 13)],
        service_s=1.0,
    ),
    Case(
        "async backlog at zero: 5 queued need 8 at once; down in steps once it is served",
        settings(),
        IDLE,
        0,
        200,
        [(1, 8), (50, 4), (80, 2), (110, 1), (140, 0)],
        async_queued=lambda t: 5 if t < 20 else 0,
    ),
    Case(
        "async backlog: up past starting replicas (a backlog stays until served)",
        settings(),
        IDLE,
        2,
        10,
        [(1, 9)],
        starting=lambda t: 2,
        async_queued=lambda t: 6,
    ),
    Case(
        "async backlog: max_replica clamps",
        settings(max_replica=3),
        IDLE,
        0,
        50,
        [(1, 3)],
        async_queued=lambda t: 100,
    ),
    Case(
        "busy replicas are never removed (3 busy, the load needs 1)",
        settings(concurrency_target=4, target_utilization_percentage=100),
        busy_replicas,
        4,
        200,
        [(31, 3)],
    ),
    Case(
        "two gateways' reports are summed: 3 + 4 in flight",
        settings(),
        steady(gateway("g1", in_flight=3), gateway("g2", in_flight=4)),
        1,
        100,
        [(1, 10)],
    ),
    Case(
        "a gateway that stops reporting stops counting 5 s later (delay 0: a step a tick)",
        settings(scale_down_delay=0),
        gateway_stops_at_zero,
        10,
        100,
        STALE_STEPS,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_policy_tick_by_tick(case: Case) -> None:
    changes = run(
        case.config,
        case.load,
        start=case.start,
        until=case.until,
        starting=case.starting,
        tuning=case.tuning,
        service_s=case.service_s,
        async_queued=case.async_queued,
    )
    assert changes == case.expected


def test_the_async_backlog_is_named_in_the_reason() -> None:
    window = LoadWindow(async_queued=3)
    desired, state, reason = decide(settings(), AutoscalerState(desired=0), window, 1.0)
    assert desired == 5 and state.last_request_at == 1.0
    assert reason.startswith("scale up 0 -> 5") and "async backlog of 3 queued" in reason


def test_reasons_say_why() -> None:
    window = LoadWindow(tuple(LoadReport("g1", float(t), in_flight=7) for t in range(-10, 1)))
    desired, state, reason = decide(settings(), AutoscalerState(desired=1), window, 1.0)
    assert desired == 10 and state.desired == 10
    assert "scale up 1 -> 10" in reason and "70%" in reason
    starting = LoadWindow(window.reports, ready_replicas=0, starting_replicas=1)
    _, _, held = decide(settings(), AutoscalerState(desired=5), starting, 1.0, NO_PANIC)
    assert "starting" in held
    _, _, capped = decide(settings(max_replica=4), AutoscalerState(desired=1), window, 1.0)
    assert "max_replica" in capped


def test_service_time_is_learned_from_a_window_without_a_queue() -> None:
    reports = tuple(LoadReport("g1", float(t), in_flight=2, arrivals=2) for t in range(-20, 2))
    _, state, _ = decide(settings(), AutoscalerState(desired=3), LoadWindow(reports), 1.0)
    assert state.service_s == pytest.approx(1.0)
    queued = tuple(LoadReport("g1", r.at, in_flight=2, waiting=1, arrivals=5) for r in reports)
    _, kept, _ = decide(settings(), state, LoadWindow(queued), 1.0)
    assert kept.service_s == pytest.approx(1.0)


def test_the_cold_start_is_observed_and_sets_how_fast_a_backlog_drains() -> None:
    state = AutoscalerState(desired=3)
    for t in range(1, 40):  # replicas starting from t=5 to t=24: a 20 s cold start
        starting = LoadWindow(ready_replicas=0, starting_replicas=3 if 5 <= t < 25 else 0)
        _, state, _ = decide(settings(), state, starting, float(t))
    assert state.cold_start_s == 20.0 and state.starting_since is None
    # 2 req/s x 1 s, and 40 queued (the queue no longer grows): drained in 20 s, not the 10 s
    # window (a replica asked for now comes up in 20 s): 2 + 40 / 20 = 4 -> 6, not 2 + 4 -> 9.
    backlog = tuple(
        LoadReport("g1", float(t), in_flight=2, waiting=40, arrivals=2) for t in range(30, 41)
    )
    learned = AutoscalerState(desired=1, service_s=1.0, cold_start_s=20.0)
    assert decide(settings(), learned, LoadWindow(backlog), 40.0)[0] == 6
    unknown = AutoscalerState(desired=1, service_s=1.0)
    assert decide(settings(), unknown, LoadWindow(backlog), 40.0)[0] == 9


def test_state_round_trips_through_json() -> None:
    state = AutoscalerState(
        7, below_since=3.5, last_request_at=2.0, panicking=True, service_s=0.8, cold_start_s=31.0
    )
    assert AutoscalerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert AutoscalerState.from_dict({"desired": 2, "from_a_later_version": 1}).desired == 2


def test_a_report_from_a_clock_ahead_is_not_counted_yet() -> None:
    ahead = LoadWindow((LoadReport("g1", 5.0, in_flight=50),))
    desired, _, _ = decide(settings(), AutoscalerState(desired=1), ahead, 1.0)
    assert desired == 1


def test_baseten_defaults_and_ranges() -> None:
    defaults = AutoscalingSettings()
    assert defaults.to_dict() == {
        "min_replica": 0,
        "max_replica": 1,
        "autoscaling_window": 60,
        "scale_down_delay": 900,
        "concurrency_target": 1,
        "target_utilization_percentage": 70,
    }
    for field, good in (("autoscaling_window", (10, 3600)), ("scale_down_delay", (0, 3600))):
        for value in good:
            assert getattr(defaults.with_changes({field: value}), field) == value
    for field, bad in (
        ("autoscaling_window", 9),
        ("autoscaling_window", 3601),
        ("scale_down_delay", -1),
        ("scale_down_delay", 3601),
        ("target_utilization_percentage", 101),
        ("concurrency_target", 0),
    ):
        with pytest.raises(ValidationFailed, match=f"{field}: {bad} must be"):
            defaults.with_changes({field: bad})
