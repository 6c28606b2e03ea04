"""Reconciler policy, tick by tick with a fake clock (no I/O)."""

from __future__ import annotations

import dataclasses

import pytest

from control_plane.domain.reconcile_policy import (
    AbandonPromotion,
    CompletePromotion,
    DeploymentObservation,
    Observation,
    ReconcilerPolicy,
    ReconcilerState,
    Retire,
    Scale,
    SetStatus,
)
from control_plane.domain.records import DeploymentStatus as S
from control_plane.ports.cluster import ReplicaPhase as P

POLICY = ReconcilerPolicy(load_timeout_s=100.0)


def observe(
    status: S,
    desired: int,
    phases: tuple[P, ...] = (),
    *,
    since: float = 0.0,
    target: str | None = None,
    messages: tuple[str, ...] = (),
    retire_at: float | None = None,
) -> DeploymentObservation:
    return DeploymentObservation(
        model_id="m1",
        deployment_id="d1",
        status=status,
        desired_replicas=desired,
        status_changed_at=since,
        target_environment=target,
        replica_phases=phases,
        replica_messages=messages or tuple("" for _ in phases),
        retire_at=retire_at,
    )


APPLIED_1 = ReconcilerState(applied={"m1/d1": 1})
APPLIED_0 = ReconcilerState(applied={"m1/d1": 0})


@pytest.mark.parametrize(
    ("case", "state", "dep", "now", "expected"),
    [
        ("building is left alone", ReconcilerState(), observe(S.BUILDING, 0), 1.0, []),
        (
            "fresh deployment is scaled up",
            ReconcilerState(),
            observe(S.DEPLOYING, 1),
            1.0,
            [Scale("m1", "d1", 1)],
        ),
        ("no repeat scale when applied", APPLIED_1, observe(S.DEPLOYING, 1, (P.STARTING,)), 1, []),
        (
            "loading replica -> LOADING_MODEL",
            APPLIED_1,
            observe(S.DEPLOYING, 1, (P.LOADING,)),
            2.0,
            [SetStatus("m1", "d1", S.LOADING_MODEL)],
        ),
        (
            "ready replica -> ACTIVE",
            APPLIED_1,
            observe(S.LOADING_MODEL, 1, (P.READY,)),
            3.0,
            [SetStatus("m1", "d1", S.ACTIVE)],
        ),
        (
            "ACTIVE with a pending promotion completes it",
            APPLIED_1,
            observe(S.LOADING_MODEL, 1, (P.READY,), target="production"),
            3.0,
            [SetStatus("m1", "d1", S.ACTIVE), CompletePromotion("m1", "d1")],
        ),
        (
            "ready replicas drop to 0 -> UNHEALTHY",
            APPLIED_1,
            observe(S.ACTIVE, 1, (P.STARTING,)),
            4.0,
            [SetStatus("m1", "d1", S.UNHEALTHY, "no replica is ready")],
        ),
        ("UNHEALTHY stays until ready", APPLIED_1, observe(S.UNHEALTHY, 1, ()), 5.0, []),
        (
            "UNHEALTHY recovers",
            APPLIED_1,
            observe(S.UNHEALTHY, 1, (P.READY,)),
            6.0,
            [SetStatus("m1", "d1", S.ACTIVE)],
        ),
        (
            "desired 0 -> INACTIVE and scaled down",
            APPLIED_1,
            observe(S.ACTIVE, 0, (P.READY,)),
            7.0,
            [Scale("m1", "d1", 0), SetStatus("m1", "d1", S.INACTIVE)],
        ),
        ("INACTIVE at rest", APPLIED_0, observe(S.INACTIVE, 0), 8.0, []),
        (
            "woken INACTIVE -> DEPLOYING",
            APPLIED_0,
            observe(S.INACTIVE, 1),
            9.0,
            [Scale("m1", "d1", 1), SetStatus("m1", "d1", S.DEPLOYING)],
        ),
        (
            "load failure -> FAILED, scaled to 0, promotion abandoned",
            APPLIED_1,
            observe(S.LOADING_MODEL, 1, (P.FAILED,), target="staging", messages=("boom",)),
            10.0,
            [  # status first: the loop saves replica logs before stopping them
                SetStatus("m1", "d1", S.FAILED, "model failed to load: boom"),
                Scale("m1", "d1", 0),
                AbandonPromotion("m1", "d1"),
            ],
        ),
        (
            "one failed replica beside a loading one is not a failure",
            ReconcilerState(applied={"m1/d1": 2}),
            observe(S.LOADING_MODEL, 2, (P.FAILED, P.LOADING)),
            10.0,
            [],
        ),
        (
            "FAILED with live replicas is stopped once",
            ReconcilerState(),
            observe(S.FAILED, 0, (P.READY,)),
            11.0,
            [Scale("m1", "d1", 0)],
        ),
        ("FAILED without replicas: nothing", ReconcilerState(), observe(S.FAILED, 0), 11.0, []),
        (
            "draining keeps its replicas before retire_at",
            APPLIED_1,
            observe(S.ACTIVE, 1, (P.READY,), retire_at=20.0),
            19.9,
            [],
        ),
        (
            "draining is retired at retire_at",
            APPLIED_1,
            observe(S.ACTIVE, 1, (P.READY,), retire_at=20.0),
            20.0,
            [Retire("m1", "d1")],
        ),
        (
            "draining UNHEALTHY is still retired when due",
            APPLIED_1,
            observe(S.ACTIVE, 1, (), retire_at=20.0),
            21.0,
            [SetStatus("m1", "d1", S.UNHEALTHY, "no replica is ready"), Retire("m1", "d1")],
        ),
        (
            "draining but joining an environment: the promotion, not the retirement",
            APPLIED_1,
            observe(S.ACTIVE, 1, (P.READY,), target="production", retire_at=20.0),
            21.0,
            [CompletePromotion("m1", "d1")],
        ),
        (
            "FAILED while draining: the stale retirement is cleared",
            APPLIED_0,
            observe(S.FAILED, 0, retire_at=20.0),
            21.0,
            [Retire("m1", "d1")],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_decide_table(
    case: str, state: ReconcilerState, dep: DeploymentObservation, now: float, expected: list
) -> None:
    decisions, _ = POLICY.decide(state, Observation((dep,)), now)
    assert decisions == expected, case


def test_load_timeout_with_fake_clock() -> None:
    """DEPLOYING for longer than load_timeout_s with nothing ready -> FAILED, not before."""
    dep = observe(S.DEPLOYING, 1, (P.STARTING,), since=1000.0)
    state = APPLIED_1
    for now in (1000.0, 1050.0, 1100.0):
        decisions, state = POLICY.decide(state, Observation((dep,)), now)
        assert decisions == [], now
    decisions, state = POLICY.decide(state, Observation((dep,)), 1100.5)
    assert decisions == [
        SetStatus("m1", "d1", S.FAILED, "no replica became ready within 100 s"),
        Scale("m1", "d1", 0),
    ]
    assert state.applied == {"m1/d1": 0}


def test_full_lifecycle_tick_by_tick() -> None:
    """DEPLOYING -> LOADING_MODEL -> ACTIVE -> UNHEALTHY -> ACTIVE -> INACTIVE, tick by tick."""
    dep = observe(S.DEPLOYING, 1)
    state = ReconcilerState()
    script = [
        ((), [Scale("m1", "d1", 1)]),
        ((P.STARTING,), []),
        ((P.LOADING,), [SetStatus("m1", "d1", S.LOADING_MODEL)]),
        ((P.READY,), [SetStatus("m1", "d1", S.ACTIVE)]),
        ((P.STARTING,), [SetStatus("m1", "d1", S.UNHEALTHY, "no replica is ready")]),
        ((P.READY,), [SetStatus("m1", "d1", S.ACTIVE)]),
    ]
    for tick, (phases, expected) in enumerate(script):
        dep = dataclasses.replace(dep, replica_phases=phases, replica_messages=("",) * len(phases))
        decisions, state = POLICY.decide(state, Observation((dep,)), float(tick))
        assert decisions == expected, tick
        for decision in decisions:  # what the loop would persist
            if isinstance(decision, SetStatus):
                dep = dataclasses.replace(dep, status=decision.status)
    dep = dataclasses.replace(dep, desired_replicas=0)
    decisions, state = POLICY.decide(state, Observation((dep,)), 99.0)
    assert decisions == [Scale("m1", "d1", 0), SetStatus("m1", "d1", S.INACTIVE)]


def drain_ticks(
    dep: DeploymentObservation, ticks: list[tuple[float, float | None]]
) -> list[list[object]]:
    """Run the policy at each (now, retire_at), persisting what the loop would persist."""
    state = APPLIED_1
    seen: list[list[object]] = []
    for now, retire_at in ticks:
        dep = dataclasses.replace(dep, retire_at=retire_at)
        decisions, state = POLICY.decide(state, Observation((dep,)), now)
        seen.append(list(decisions))
        if any(isinstance(d, Retire) for d in decisions):  # EnvironmentService.retire_due
            dep = dataclasses.replace(dep, status=S.INACTIVE, desired_replicas=0)
        for decision in decisions:
            if isinstance(decision, Scale):
                phases = (P.READY,) * decision.replicas
                dep = dataclasses.replace(
                    dep, replica_phases=phases, replica_messages=("",) * len(phases)
                )
    return seen


def test_drain_then_retire_tick_by_tick() -> None:
    """Replaced at t=100 with a 10 s drain: serves until 110, retired, then scaled to zero."""
    dep = observe(S.ACTIVE, 1, (P.READY,))
    ticks: list[tuple[float, float | None]] = [
        (100.0, 110.0),
        (105.0, 110.0),
        (109.9, 110.0),
        (110.0, 110.0),
        (111.0, None),  # retire_due cleared retire_at
        (112.0, None),
    ]
    assert drain_ticks(dep, ticks) == [
        [],
        [],
        [],
        [Retire("m1", "d1")],
        [Scale("m1", "d1", 0)],
        [],
    ]


def test_cancelled_drain_tick_by_tick() -> None:
    """Rolled back at t=105 (retire_at cleared): nothing is retired at or after 110."""
    dep = observe(S.ACTIVE, 1, (P.READY,))
    ticks: list[tuple[float, float | None]] = [
        (100.0, 110.0),
        (105.0, None),
        (110.0, None),
        (200.0, None),
    ]
    assert drain_ticks(dep, ticks) == [[], [], [], []]


def test_restart_resends_desired_counts_and_forgets_deleted() -> None:
    running = observe(S.ACTIVE, 2, (P.READY, P.READY))
    decisions, state = POLICY.decide(ReconcilerState(), Observation((running,)), 0.0)
    assert decisions == [Scale("m1", "d1", 2)]
    decisions, state = POLICY.decide(state, Observation(()), 1.0)
    assert decisions == [] and state.applied == {}
