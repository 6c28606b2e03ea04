"""Environments and promotion.

A promotion swaps an environment's current deployment. Only one runs per environment at a
time: the environment record carries a ``promotion`` lock written with the store's
conditional put, so of two racing promoters exactly one wins and the other gets
PROMOTION_IN_PROGRESS with nothing changed. When the target is not ACTIVE yet, the lock
stays while it comes up; the reconciler finishes the swap once it is ACTIVE.

The replaced deployment is not stopped at once: gateways poll the routing table, so for a
moment some still send the environment's traffic to it. It keeps its replicas (and ACTIVE)
for ``promotion_drain_s`` (``retire_at`` on its record), then the reconciler retires it
(``retire_due``). Promoting or activating it again before then cancels the retirement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.domain import lifecycle
from control_plane.domain.records import (
    RUNNING_STATUSES,
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    EnvironmentRecord,
    PromotionLock,
)
from control_plane.domain.repository import Repository
from control_plane.exceptions import Conflict, NotFound, PromotionInProgress, ValidationFailed
from control_plane.ports.store import VersionConflict

_ENV_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MAX_SWAP_ATTEMPTS = 50
_MAX_HISTORY = 50


@dataclass(frozen=True)
class PromotionResult:
    environment: EnvironmentRecord
    completed: bool  # False: the target is coming up; the swap happens when it is ACTIVE


class EnvironmentService:
    def __init__(
        self,
        repo: Repository,
        clock: Callable[[], float],
        *,
        promotion_timeout_s: float,
        promotion_drain_s: float,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self._promotion_timeout_s = promotion_timeout_s
        self._promotion_drain_s = promotion_drain_s

    # -- CRUD -------------------------------------------------------------------------
    def create(
        self, model_id: str, name: str, autoscaling: dict[str, Any] | None = None
    ) -> EnvironmentRecord:
        self._repo.get_model(model_id)
        if not _ENV_NAME_PATTERN.match(name):
            raise ValidationFailed(
                f"name: {name!r} must be 1-63 lowercase letters, digits or '-' (it is in URLs)"
            )
        settings = AutoscalingSettings().with_changes(autoscaling or {})
        env = EnvironmentRecord(
            model_id=model_id, name=name, created_at=self._clock(), autoscaling_settings=settings
        )
        self._repo.create_environment(env)
        return self._repo.get_environment(model_id, name)

    def list_for(self, model_id: str) -> list[EnvironmentRecord]:
        self._repo.get_model(model_id)
        return self._repo.list_environments(model_id)

    def get(self, model_id: str, name: str) -> EnvironmentRecord:
        return self._repo.get_environment(model_id, name)

    def update_autoscaling(
        self, model_id: str, name: str, changes: dict[str, Any]
    ) -> EnvironmentRecord:
        """New settings for the environment, applied to the deployment it serves."""

        def change(env: EnvironmentRecord) -> None:
            env.autoscaling_settings = env.autoscaling_settings.with_changes(changes)

        env = self._repo.update_environment(model_id, name, change)
        if env.current_deployment_id:

            def apply(dep: DeploymentRecord) -> None:
                lifecycle.apply_autoscaling(dep, env.autoscaling_settings)

            self._repo.update_deployment(model_id, env.current_deployment_id, apply)
        return env

    # -- promotion --------------------------------------------------------------------
    def promote(self, model_id: str, env_name: str, deployment_id: str) -> PromotionResult:
        dep = self._repo.get_deployment(model_id, deployment_id)
        env = self._repo.get_environment(model_id, env_name)
        if dep.status == DeploymentStatus.FAILED:
            raise Conflict(f"deployment {deployment_id!r} is FAILED and cannot be promoted")
        if env.current_deployment_id == deployment_id and env.promotion is None:
            return PromotionResult(env, completed=True)
        self._check_unlocked(env)
        env.promotion = PromotionLock(deployment_id=deployment_id, started_at=self._clock())
        try:
            env = self._repo.put_environment_if_unchanged(env)
        except VersionConflict:
            raise PromotionInProgress(
                f"environment {env_name!r} of model {model_id!r} changed during the promotion "
                "request; another promotion is running"
            ) from None
        if dep.status == DeploymentStatus.ACTIVE:
            swapped = self._swap(env, dep)
            if swapped is not None:
                return PromotionResult(swapped, completed=True)
            return PromotionResult(env, completed=False)
        self._bring_up_for(model_id, deployment_id, env)
        return PromotionResult(env, completed=False)

    def complete_pending(self, model_id: str, deployment_id: str) -> bool:
        """The target deployment is ACTIVE: swap it in. False if another promotion holds the env."""
        dep = self._repo.get_deployment(model_id, deployment_id)
        if dep.target_environment is None or dep.status != DeploymentStatus.ACTIVE:
            return False
        try:
            env = self._repo.get_environment(model_id, dep.target_environment)
        except NotFound:  # environment deleted meanwhile: nothing to join
            self._clear_target(model_id, deployment_id)
            return False
        lock = env.promotion
        if lock is None or lock.deployment_id != deployment_id:
            if lock is not None and not self._is_stale(lock):
                return False  # another promotion runs; try again next tick
            env.promotion = PromotionLock(deployment_id=deployment_id, started_at=self._clock())
            try:
                env = self._repo.put_environment_if_unchanged(env)
            except VersionConflict:
                return False
        return self._swap(env, dep) is not None

    def abandon_pending(self, model_id: str, deployment_id: str) -> None:
        """The target deployment FAILED: release its lock; the environment is unchanged."""
        dep = self._repo.get_deployment(model_id, deployment_id)
        if dep.target_environment is None:
            return

        def release(env: EnvironmentRecord) -> bool:
            if env.promotion is None or env.promotion.deployment_id != deployment_id:
                return False
            env.promotion = None
            return True

        try:
            self._repo.update_environment(model_id, dep.target_environment, release)
        except NotFound:
            pass
        self._clear_target(model_id, deployment_id)

    # -- draining ---------------------------------------------------------------------
    def retire_due(self, model_id: str, deployment_id: str) -> bool:
        """The drain of a replaced deployment is over: scale it to zero (INACTIVE).

        Does nothing if the retirement was cancelled or is not due yet; cancels it if the
        deployment serves an environment again. True if it was retired.
        """
        serving = any(
            env.current_deployment_id == deployment_id
            for env in self._repo.list_environments(model_id)
        )
        now = self._clock()
        retired = False

        def change(dep: DeploymentRecord) -> bool:
            nonlocal retired
            retired = False  # the store may retry the change on a conflict
            if dep.retire_at is None or (now < dep.retire_at and not serving):
                return False
            back_in_use = serving or dep.target_environment is not None
            if back_in_use or dep.desired_replicas == 0 or dep.status == DeploymentStatus.FAILED:
                return lifecycle.cancel_retirement(dep)  # nothing to stop
            retired = lifecycle.retire(dep, now)
            return retired

        self._repo.update_deployment(model_id, deployment_id, change)
        return retired

    # -- internals --------------------------------------------------------------------
    def _check_unlocked(self, env: EnvironmentRecord) -> None:
        if env.promotion is not None and not self._is_stale(env.promotion):
            raise PromotionInProgress(
                f"environment {env.name!r} of model {env.model_id!r} is already being promoted "
                f"to deployment {env.promotion.deployment_id!r}"
            )

    def _is_stale(self, lock: PromotionLock) -> bool:
        return self._clock() - lock.started_at > self._promotion_timeout_s

    def _bring_up_for(self, model_id: str, deployment_id: str, env: EnvironmentRecord) -> None:
        def change(dep: DeploymentRecord) -> None:
            lifecycle.bring_up_for(dep, env.name, env.autoscaling_settings, self._clock())

        self._repo.update_deployment(model_id, deployment_id, change)

    def _swap(self, env: EnvironmentRecord, dep: DeploymentRecord) -> EnvironmentRecord | None:
        """Point ``env`` (locked by us) at ``dep``, release the lock, drain the old deployment.

        The deployment takes the environment's settings while the lock is still held, so a
        promotion that starts right after the release cannot be undone by this one. If it
        stopped being ACTIVE since we looked (its drain ended just now), it is brought up
        instead, the lock kept, and None returned: the reconciler swaps it in once ACTIVE.
        """
        joined = False

        def join(record: DeploymentRecord) -> bool:
            nonlocal joined
            joined = lifecycle.join_environment(record, env.name, env.autoscaling_settings)
            return joined

        self._repo.update_deployment(env.model_id, dep.id, join)
        if not joined:
            self._bring_up_for(env.model_id, dep.id, env)
            return None
        for _ in range(_MAX_SWAP_ATTEMPTS):
            previous = env.current_deployment_id
            if previous != dep.id:
                env.previous_deployment_id = previous
                env.current_deployment_id = dep.id
                env.history.append({"deployment_id": dep.id, "promoted_at": self._clock()})
                del env.history[:-_MAX_HISTORY]
            env.promotion = None
            try:
                env = self._repo.put_environment_if_unchanged(env)
                break
            except VersionConflict:
                env = self._repo.get_environment(env.model_id, env.name)
                if env.promotion is None or env.promotion.deployment_id != dep.id:
                    self._check_unlocked(env)  # our lock went stale and was taken over
        else:
            raise Conflict(f"environment {env.name!r} is changing too fast; try again")
        if env.previous_deployment_id and env.previous_deployment_id != dep.id:
            self._drain_if_unused(env.model_id, env.previous_deployment_id)
        return env

    def _drain_if_unused(self, model_id: str, deployment_id: str) -> None:
        """Schedule a replaced deployment's scale-to-zero unless another environment serves it.

        With no drain period (or no replicas to drain) it is retired at once.
        """
        for other in self._repo.list_environments(model_id):
            if other.current_deployment_id == deployment_id:
                return
        now = self._clock()

        def drain(dep: DeploymentRecord) -> bool:
            if dep.target_environment is not None or dep.status not in RUNNING_STATUSES:
                return False  # on its way into another environment, or down for good
            if self._promotion_drain_s > 0 and dep.desired_replicas > 0:
                return lifecycle.schedule_retirement(dep, now + self._promotion_drain_s)
            return lifecycle.scale_to_zero(dep, now, "retire")

        self._repo.update_deployment(model_id, deployment_id, drain)

    def _clear_target(self, model_id: str, deployment_id: str) -> None:
        def clear(dep: DeploymentRecord) -> None:
            dep.target_environment = None

        self._repo.update_deployment(model_id, deployment_id, clear)
