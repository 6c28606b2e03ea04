"""Reconciler entry point: one reconcile pass per EventBridge Scheduler tick.

The local control plane runs the reconciler in a loop; on AWS the schedule is the loop
(``rate(1 minute)`` by default) and each invocation is one ``Platform.reconcile_once()``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from lambdas._lazy import Lazy

if TYPE_CHECKING:
    from control_plane.wiring import Platform

logger = logging.getLogger(__name__)


def build_platform() -> Platform:
    from control_plane.settings import Settings
    from control_plane.wiring import Platform

    return Platform(Settings.from_env())


def reconcile_pass(platform: Platform) -> dict[str, Any]:
    """One pass; returns a summary (decision count and duration) for the invocation log."""
    started = time.monotonic()
    decisions = platform.reconcile_once()
    summary = {"decisions": len(decisions), "duration_s": round(time.monotonic() - started, 3)}
    logger.info("reconcile pass: %s", summary)
    return summary


_platform: Lazy[Platform] = Lazy(build_platform)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    del event, context  # every tick does the same thing
    return reconcile_pass(_platform.get())
