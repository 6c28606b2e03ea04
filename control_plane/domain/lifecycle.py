"""The deployment lifecycle: every change of status, desired replicas and retirement.

Each transition mutates a :class:`DeploymentRecord` inside a repository update (so it is
re-run on a conflicting write) and checks that the move is legal first: the status change is
in :data:`NEXT_STATUSES` and the record is in a state the transition applies to. A move that
is illegal because the record changed under the caller's feet returns False (the caller's
update then skips the write); a move asked of a record that can never make it raises
:class:`IllegalTransition` (a 409 over HTTP).

    push -> BUILDING --build--> DEPLOYING --reconciler--> LOADING_MODEL -> ACTIVE <-> UNHEALTHY
            BUILDING --build fails--> FAILED (terminal; also when no replica ever loads)
            any running status --scale_to_zero/retire--> INACTIVE --bring_up--> DEPLOYING
            any status --stop_for_deletion--> no replicas wanted (running ones go INACTIVE)

Retirement (``retire_at``): a deployment replaced by a promotion keeps serving until then
(see ``environments.py``); it is only ever set on a running deployment with replicas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.domain.records import (
    RUNNING_STATUSES,
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
)
from control_plane.exceptions import Conflict

S = DeploymentStatus

# Which status may follow which (staying in the same status is always allowed: it refreshes
# the message). Moves the reconciler makes come from its policy; the others from the API.
NEXT_STATUSES: Mapping[DeploymentStatus, frozenset[DeploymentStatus]] = {
    S.BUILDING: frozenset({S.DEPLOYING, S.FAILED}),
    S.DEPLOYING: frozenset({S.LOADING_MODEL, S.ACTIVE, S.INACTIVE, S.FAILED}),
    S.LOADING_MODEL: frozenset({S.DEPLOYING, S.ACTIVE, S.INACTIVE, S.FAILED}),
    S.ACTIVE: frozenset({S.DEPLOYING, S.UNHEALTHY, S.INACTIVE}),
    S.UNHEALTHY: frozenset({S.DEPLOYING, S.ACTIVE, S.INACTIVE}),
    S.INACTIVE: frozenset({S.DEPLOYING, S.LOADING_MODEL, S.ACTIVE, S.FAILED}),
    S.FAILED: frozenset(),
}


class IllegalTransition(Conflict):
    """A lifecycle move the deployment's state does not allow (names both)."""


def can_move(current: DeploymentStatus, to: DeploymentStatus) -> bool:
    return to == current or to in NEXT_STATUSES[current]


def _move(dep: DeploymentRecord, to: DeploymentStatus, now: float, message: str = "") -> None:
    if not can_move(dep.status, to):
        raise IllegalTransition(
            f"deployment {dep.id!r} cannot go from {dep.status.value} to {to.value}"
        )
    if to != dep.status:
        dep.status_changed_at = now
    dep.status = to
    dep.status_message = message


def _require_built(dep: DeploymentRecord, action: str) -> None:
    if dep.status not in RUNNING_STATUSES:
        raise IllegalTransition(f"cannot {action} deployment {dep.id!r}: it is {dep.status.value}")


# -- creation and build ---------------------------------------------------------------------
def new_deployment(
    *,
    deployment_id: str,
    model_id: str,
    name: str,
    now: float,
    archive_sha256: str,
    config: dict[str, Any],
    target_environment: str | None,
    autoscaling_settings: AutoscalingSettings,
) -> DeploymentRecord:
    """A pushed deployment: BUILDING, no replicas wanted, not retiring."""
    return DeploymentRecord(
        id=deployment_id,
        model_id=model_id,
        name=name,
        status=S.BUILDING,
        created_at=now,
        status_changed_at=now,
        archive_sha256=archive_sha256,
        config=config,
        target_environment=target_environment,
        autoscaling_settings=autoscaling_settings,
    )


def finish_build(
    dep: DeploymentRecord,
    now: float,
    *,
    model_dir: str,
    python: str,
    weights_manifests: list[str],
    image: str | None = None,
) -> bool:
    """BUILDING -> DEPLOYING with the replicas to start. False if the build already ended."""
    if dep.status != S.BUILDING:
        return False
    dep.model_dir = model_dir
    dep.python = python
    dep.image = image
    dep.weights_manifests = weights_manifests
    dep.desired_replicas = dep.autoscaling_settings.replicas_when_up()
    _move(dep, S.DEPLOYING, now)
    return True


def fail_build(dep: DeploymentRecord, now: float, message: str) -> bool:
    """BUILDING -> FAILED. False if another attempt of the build already ended it."""
    if dep.status != S.BUILDING:
        return False
    dep.desired_replicas = 0
    _move(dep, S.FAILED, now, message)
    return True


# -- scaling commands -------------------------------------------------------------------------
def bring_up(dep: DeploymentRecord, now: float, action: str = "activate") -> bool:
    """Scaled to zero -> DEPLOYING with the replicas to start; the retirement is cancelled.

    False when it already wants replicas (then only :func:`cancel_retirement` applies).
    """
    _require_built(dep, action)
    if dep.desired_replicas > 0:
        return False
    dep.retire_at = None
    dep.desired_replicas = dep.autoscaling_settings.replicas_when_up()
    _move(dep, S.DEPLOYING, now)
    return True


def scale_to_zero(dep: DeploymentRecord, now: float, action: str = "deactivate") -> bool:
    """Any built status -> INACTIVE with no replicas wanted. False if it already is."""
    _require_built(dep, action)
    if dep.desired_replicas == 0 and dep.status == S.INACTIVE and dep.retire_at is None:
        return False
    dep.retire_at = None
    dep.desired_replicas = 0
    _move(dep, S.INACTIVE, now)
    return True


def stop_for_deletion(dep: DeploymentRecord, now: float) -> bool:
    """The deployment is being deleted: no replicas, no retirement, no promotion pending.

    Running statuses go INACTIVE; BUILDING and FAILED keep their status (a build still
    running finds the record gone). False if nothing had to change.
    """
    changed = dep.desired_replicas != 0 or dep.retire_at is not None
    changed = changed or dep.target_environment is not None
    dep.desired_replicas = 0
    dep.retire_at = None
    dep.target_environment = None
    if dep.status in RUNNING_STATUSES and dep.status != S.INACTIVE:
        _move(dep, S.INACTIVE, now, "deleting")
        return True
    return changed


def apply_autoscaling(dep: DeploymentRecord, settings: AutoscalingSettings) -> None:
    """New settings; desired replicas kept within them (a FAILED deployment stays at 0)."""
    dep.autoscaling_settings = settings
    if dep.status != S.FAILED:
        dep.desired_replicas = settings.clamp(dep.desired_replicas)


# Statuses in which the autoscaler sets the count (a deployment at zero comes up by a wake).
AUTOSCALED_STATUSES = frozenset({S.DEPLOYING, S.LOADING_MODEL, S.ACTIVE, S.UNHEALTHY})


def autoscale(dep: DeploymentRecord, decided_from: int, desired: int, now: float) -> bool:
    """The autoscaler's new count (to zero: INACTIVE, as a deactivate).

    False when the record is not the autoscaler's to scale: it changed since the decision
    (``decided_from`` is the count the autoscaler saw; an activate, a wake or new settings
    win), it is at zero, not running, draining after a promotion, or being promoted.
    """
    if (
        dep.desired_replicas != decided_from
        or dep.desired_replicas == 0
        or dep.status not in AUTOSCALED_STATUSES
        or dep.retire_at is not None
        or dep.target_environment is not None
    ):
        return False
    desired = dep.autoscaling_settings.clamp(desired)
    if desired == dep.desired_replicas:
        return False
    if desired == 0:
        return scale_to_zero(dep, now, "autoscale")
    dep.desired_replicas = desired
    return True


def wake_for_backlog(dep: DeploymentRecord, desired: int, now: float) -> bool:
    """At zero with queued async work: up (as a wake) to ``desired``, clamped to the settings.

    False when it is not at zero (a wake or an activate came first) or is being promoted.
    """
    if (
        dep.status != S.INACTIVE
        or dep.desired_replicas != 0
        or dep.target_environment is not None
        or desired <= 0
    ):
        return False
    bring_up(dep, now, "wake")
    dep.desired_replicas = max(dep.desired_replicas, dep.autoscaling_settings.clamp(desired))
    return True


# -- environments -----------------------------------------------------------------------------
def bring_up_for(
    dep: DeploymentRecord, env_name: str, settings: AutoscalingSettings, now: float
) -> None:
    """A promotion targets it: it joins ``env_name`` once ACTIVE, brought up if at zero.

    A BUILDING deployment comes up when its build ends; a FAILED one is left down (the
    reconciler then abandons the promotion).
    """
    dep.target_environment = env_name
    if dep.status not in RUNNING_STATUSES or dep.desired_replicas > 0:
        return
    _take_settings(dep, settings)
    _move(dep, S.DEPLOYING, now)


def join_environment(dep: DeploymentRecord, env_name: str, settings: AutoscalingSettings) -> bool:
    """An ACTIVE deployment starts serving ``env_name``: its settings, a cancelled retirement
    (a rollback during the drain keeps it serving). False if it is no longer ACTIVE."""
    if dep.status != S.ACTIVE:
        return False
    _take_settings(dep, settings)
    dep.retire_at = None
    if dep.target_environment == env_name:
        dep.target_environment = None
    return True


def _take_settings(dep: DeploymentRecord, settings: AutoscalingSettings) -> None:
    dep.autoscaling_settings = settings
    dep.desired_replicas = settings.clamp(max(dep.desired_replicas, settings.replicas_when_up()))


# -- retirement (drain after a promotion replaced it) ----------------------------------------
def schedule_retirement(dep: DeploymentRecord, retire_at: float) -> bool:
    """Keep serving until ``retire_at``. False if it has no replicas to drain, is failed,
    or already drains (the earlier deadline stays)."""
    if dep.status not in RUNNING_STATUSES or dep.desired_replicas == 0 or dep.retire_at is not None:
        return False
    dep.retire_at = retire_at
    return True


def cancel_retirement(dep: DeploymentRecord) -> bool:
    """It stays up. False if it was not retiring."""
    if dep.retire_at is None:
        return False
    dep.retire_at = None
    return True


def retire(dep: DeploymentRecord, now: float) -> bool:
    """The drain is over: scale it to zero. False if not retiring, not due, or failed."""
    if dep.retire_at is None or now < dep.retire_at or dep.status not in RUNNING_STATUSES:
        return False
    return scale_to_zero(dep, now, "retire")


# -- reconciler --------------------------------------------------------------------------------
def observe_status(
    dep: DeploymentRecord, status: DeploymentStatus, now: float, message: str = ""
) -> None:
    """The status the reconciler observed (its policy's decision); FAILED stops the replicas."""
    if dep.status == S.BUILDING:
        raise IllegalTransition(f"deployment {dep.id!r} is BUILDING: the build sets its status")
    _move(dep, status, now, message)
    if status == S.FAILED:
        dep.desired_replicas = 0
