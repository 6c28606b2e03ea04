"""The deployment lifecycle, table-driven: every legal and illegal move (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Any

import pytest

from control_plane.domain import lifecycle
from control_plane.domain.lifecycle import IllegalTransition
from control_plane.domain.records import AutoscalingSettings, DeploymentRecord, DeploymentStatus
from control_plane.exceptions import Conflict

S = DeploymentStatus
NOW = 1000.0
ENV_SETTINGS = AutoscalingSettings(min_replica=2, max_replica=3)
MIN0 = AutoscalingSettings(min_replica=0, max_replica=3)

# Written out independently of lifecycle.NEXT_STATUSES: the moves the product makes.
LEGAL_MOVES = {
    (S.BUILDING, S.DEPLOYING),  # build finished
    (S.BUILDING, S.FAILED),  # build failed
    (S.DEPLOYING, S.LOADING_MODEL),
    (S.DEPLOYING, S.ACTIVE),
    (S.DEPLOYING, S.INACTIVE),
    (S.DEPLOYING, S.FAILED),  # every replica failed, or load timeout
    (S.LOADING_MODEL, S.DEPLOYING),
    (S.LOADING_MODEL, S.ACTIVE),
    (S.LOADING_MODEL, S.INACTIVE),
    (S.LOADING_MODEL, S.FAILED),
    (S.ACTIVE, S.DEPLOYING),
    (S.ACTIVE, S.UNHEALTHY),
    (S.ACTIVE, S.INACTIVE),
    (S.UNHEALTHY, S.DEPLOYING),
    (S.UNHEALTHY, S.ACTIVE),
    (S.UNHEALTHY, S.INACTIVE),
    (S.INACTIVE, S.DEPLOYING),
    (S.INACTIVE, S.LOADING_MODEL),
    (S.INACTIVE, S.ACTIVE),
    (S.INACTIVE, S.FAILED),
} | {(status, status) for status in S}


def record(
    status: DeploymentStatus,
    desired: int = 0,
    retire_at: float | None = None,
    *,
    target: str | None = None,
    settings: AutoscalingSettings | None = None,
) -> DeploymentRecord:
    return DeploymentRecord(
        id="d1",
        model_id="m1",
        name="deployment-1",
        status=status,
        created_at=0.0,
        status_changed_at=0.0,
        archive_sha256="0" * 64,
        config={},
        target_environment=target,
        desired_replicas=desired,
        autoscaling_settings=settings or AutoscalingSettings(),
        retire_at=retire_at,
    )


@pytest.mark.parametrize(("current", "to"), list(product(S, S)))
def test_status_table(current: DeploymentStatus, to: DeploymentStatus) -> None:
    assert lifecycle.can_move(current, to) == ((current, to) in LEGAL_MOVES)


@pytest.mark.parametrize(("current", "to"), list(product([s for s in S if s != S.BUILDING], S)))
def test_reconciler_moves_follow_the_table(current: DeploymentStatus, to: DeploymentStatus) -> None:
    dep = record(current, desired=1)
    if (current, to) in LEGAL_MOVES:
        lifecycle.observe_status(dep, to, NOW, "why")
        assert (dep.status, dep.status_message) == (to, "why")
        assert dep.status_changed_at == (0.0 if to == current else NOW)
        assert dep.desired_replicas == (0 if to == S.FAILED else 1)
    else:
        with pytest.raises(IllegalTransition, match=f"from {current.value} to {to.value}"):
            lifecycle.observe_status(dep, to, NOW)
        assert (dep.status, dep.desired_replicas, dep.status_changed_at) == (current, 1, 0.0)


def test_the_reconciler_never_sets_a_building_status() -> None:
    dep = record(S.BUILDING)
    with pytest.raises(IllegalTransition, match="BUILDING"):
        lifecycle.observe_status(dep, S.DEPLOYING, NOW)
    assert dep.status == S.BUILDING


@dataclass(frozen=True)
class Case:
    """A transition applied to a record: what it returns (or raises) and the record after."""

    name: str
    move: Callable[[DeploymentRecord], Any]
    before: DeploymentRecord
    returns: bool | type[Exception] | None
    after: dict[str, Any]


def _finish(dep: DeploymentRecord) -> bool:
    return lifecycle.finish_build(dep, NOW, model_dir="/src", python="/py", weights_manifests=[])


def _bring_up(dep: DeploymentRecord) -> bool:
    return lifecycle.bring_up(dep, NOW)


def _scale_to_zero(dep: DeploymentRecord) -> bool:
    return lifecycle.scale_to_zero(dep, NOW)


def _bring_up_for(dep: DeploymentRecord) -> None:
    lifecycle.bring_up_for(dep, "staging", ENV_SETTINGS, NOW)


def _join(dep: DeploymentRecord) -> bool:
    return lifecycle.join_environment(dep, "staging", ENV_SETTINGS)


def _schedule(dep: DeploymentRecord) -> bool:
    return lifecycle.schedule_retirement(dep, NOW + 10)


def _retire(dep: DeploymentRecord) -> bool:
    return lifecycle.retire(dep, NOW)


def _fail(dep: DeploymentRecord) -> bool:
    return lifecycle.fail_build(dep, NOW, "pip said no")


def _stop_for_deletion(dep: DeploymentRecord) -> bool:
    return lifecycle.stop_for_deletion(dep, NOW)


def _autoscale(dep: DeploymentRecord) -> None:
    lifecycle.apply_autoscaling(dep, ENV_SETTINGS)


def _autoscale_to(desired: int, decided_from: int = 2) -> Callable[[DeploymentRecord], bool]:
    return lambda dep: lifecycle.autoscale(dep, decided_from, desired, NOW)


UP = {"status": S.DEPLOYING, "retire_at": None}
DOWN = {"status": S.INACTIVE, "desired_replicas": 0, "retire_at": None}
CASES = [
    # the build
    Case("build ends", _finish, record(S.BUILDING), True, {**UP, "desired_replicas": 1}),
    Case(
        "build ends, min 2",
        _finish,
        record(S.BUILDING, settings=ENV_SETTINGS),
        True,
        {**UP, "desired_replicas": 2, "model_dir": "/src", "python": "/py"},
    ),
    Case("build ends twice", _finish, record(S.DEPLOYING, 1), False, {"status": S.DEPLOYING}),
    Case("failed build ends", _finish, record(S.FAILED), False, {"status": S.FAILED}),
    Case("build fails", _fail, record(S.BUILDING), True, {"status": S.FAILED}),
    Case("late build failure", _fail, record(S.DEPLOYING, 1), False, {"status": S.DEPLOYING}),
    # activate / wake
    Case("bring up from zero", _bring_up, record(S.INACTIVE), True, {**UP, "desired_replicas": 1}),
    Case("bring up, active", _bring_up, record(S.ACTIVE, 1, 50.0), False, {"retire_at": 50.0}),
    Case("bring up a building one", _bring_up, record(S.BUILDING), IllegalTransition, {}),
    Case("bring up a failed one", _bring_up, record(S.FAILED), IllegalTransition, {}),
    # deactivate
    Case("scale to zero", _scale_to_zero, record(S.ACTIVE, 2, 50.0), True, DOWN),
    Case("scale to zero again", _scale_to_zero, record(S.INACTIVE), False, DOWN),
    Case("scale a building one", _scale_to_zero, record(S.BUILDING), IllegalTransition, {}),
    Case("scale a failed one", _scale_to_zero, record(S.FAILED), IllegalTransition, {}),
    # promotion
    Case(
        "promote a scaled-down one",
        _bring_up_for,
        record(S.INACTIVE),
        None,
        {**UP, "desired_replicas": 2, "target_environment": "staging"},
    ),
    Case(
        "promote a building one",
        _bring_up_for,
        record(S.BUILDING),
        None,
        {"status": S.BUILDING, "desired_replicas": 0, "target_environment": "staging"},
    ),
    Case(
        "promote a failed one",
        _bring_up_for,
        record(S.FAILED),
        None,
        {"status": S.FAILED, "desired_replicas": 0, "target_environment": "staging"},
    ),
    Case(
        "join, draining",
        _join,
        record(S.ACTIVE, 1, 50.0, target="staging"),
        True,
        {"desired_replicas": 2, "retire_at": None, "target_environment": None},
    ),
    Case("join, not active", _join, record(S.UNHEALTHY, 1), False, {"desired_replicas": 1}),
    # drain after a promotion replaced it
    Case("drain", _schedule, record(S.ACTIVE, 1), True, {"retire_at": NOW + 10}),
    Case("drain again", _schedule, record(S.ACTIVE, 1, 5.0), False, {"retire_at": 5.0}),
    Case("drain nothing", _schedule, record(S.INACTIVE, 0), False, {"retire_at": None}),
    Case("drain a failed one", _schedule, record(S.FAILED), False, {"retire_at": None}),
    Case("retire when due", _retire, record(S.ACTIVE, 2, NOW), True, DOWN),
    Case("retire too early", _retire, record(S.ACTIVE, 2, NOW + 1), False, {"desired_replicas": 2}),
    Case("retire, not draining", _retire, record(S.ACTIVE, 2), False, {"status": S.ACTIVE}),
    Case("retire a failed one", _retire, record(S.FAILED, 0, NOW), False, {"status": S.FAILED}),
    # deletion: nothing may start it again while its record is removed
    Case(
        "delete a serving one",
        _stop_for_deletion,
        record(S.ACTIVE, 2, 50.0, target="staging"),
        True,
        {**DOWN, "target_environment": None, "status_message": "deleting"},
    ),
    Case("delete a scaled-down one", _stop_for_deletion, record(S.INACTIVE), False, DOWN),
    Case(
        "delete a building one",
        _stop_for_deletion,
        record(S.BUILDING, target="production"),
        True,
        {"status": S.BUILDING, "desired_replicas": 0, "target_environment": None},
    ),
    Case("delete a failed one", _stop_for_deletion, record(S.FAILED), False, {"status": S.FAILED}),
    # autoscaling settings
    Case("settings clamp", _autoscale, record(S.ACTIVE, 5), None, {"desired_replicas": 3}),
    Case("settings, failed", _autoscale, record(S.FAILED), None, {"desired_replicas": 0}),
    # the autoscaler (ENV_SETTINGS: 2-3; MIN0: 0-3)
    Case(
        "autoscale up",
        _autoscale_to(3),
        record(S.ACTIVE, 2, settings=MIN0),
        True,
        {"desired_replicas": 3, "status": S.ACTIVE},
    ),
    Case(
        "autoscale up, clamped",
        _autoscale_to(9),
        record(S.ACTIVE, 2, settings=MIN0),
        True,
        {"desired_replicas": 3},
    ),
    Case(
        "autoscale down, loading",
        _autoscale_to(1),
        record(S.LOADING_MODEL, 2, settings=MIN0),
        True,
        {"desired_replicas": 1, "status": S.LOADING_MODEL},
    ),
    Case("autoscale to zero", _autoscale_to(0), record(S.ACTIVE, 2, settings=MIN0), True, DOWN),
    Case(
        "autoscale to min",
        _autoscale_to(0),
        record(S.ACTIVE, 3, settings=ENV_SETTINGS),
        False,
        {"desired_replicas": 3},
    ),
    Case(
        "autoscale, min kept",
        _autoscale_to(1, 3),
        record(S.ACTIVE, 3, settings=ENV_SETTINGS),
        True,
        {"desired_replicas": 2},
    ),
    Case(
        "autoscale, changed since",
        _autoscale_to(3, 1),
        record(S.ACTIVE, 2, settings=MIN0),
        False,
        {"desired_replicas": 2},
    ),
    Case(
        "autoscale at zero",
        _autoscale_to(1, 0),
        record(S.INACTIVE, 0, settings=MIN0),
        False,
        {"status": S.INACTIVE},
    ),
    Case(
        "autoscale, draining",
        _autoscale_to(3),
        record(S.ACTIVE, 2, 50.0, settings=MIN0),
        False,
        {"desired_replicas": 2},
    ),
    Case(
        "autoscale, promoting",
        _autoscale_to(3),
        record(S.ACTIVE, 2, target="staging", settings=MIN0),
        False,
        {"desired_replicas": 2},
    ),
    Case("autoscale, failed", _autoscale_to(1, 0), record(S.FAILED), False, {"status": S.FAILED}),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_transition(case: Case) -> None:
    dep = case.before
    before = dep.to_dict()
    if isinstance(case.returns, type):
        with pytest.raises(case.returns):
            case.move(dep)
        assert dep.to_dict() == before  # an illegal move changes nothing
        return
    assert case.move(dep) == case.returns
    for name, value in case.after.items():
        assert getattr(dep, name) == value, name
    if case.returns is False:
        assert dep.to_dict() == before  # "not applicable" changes nothing either


def test_illegal_transition_is_a_conflict_naming_the_deployment() -> None:
    with pytest.raises(Conflict, match="cannot activate deployment 'd1': it is BUILDING"):
        lifecycle.bring_up(record(S.BUILDING), NOW)


def test_new_deployment_is_building_with_nothing_wanted() -> None:
    dep = lifecycle.new_deployment(
        deployment_id="d9",
        model_id="m1",
        name="deployment-9",
        now=NOW,
        archive_sha256="0" * 64,
        config={},
        target_environment="production",
        autoscaling_settings=ENV_SETTINGS,
    )
    assert (dep.status, dep.desired_replicas, dep.retire_at) == (S.BUILDING, 0, None)
    assert dep.created_at == dep.status_changed_at == NOW
