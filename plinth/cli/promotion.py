"""`plinth promote` / `rollback`: promote, then wait until the gateway routes to the target.

The control plane swaps an environment at once when the target is ACTIVE (200) and otherwise
brings the target up first (202, "pending until ACTIVE"). Gateways only learn of a swap on
their next routing-table poll, so a predict sent right after the API call could still reach
the old deployment. By default the CLI waits for both: the swap, then a gateway serving a
routing table at least as new as the first one that holds it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from plinth.cli.manage import current_deployment_id
from plinth.client import PlinthClient
from plinth.exceptions import PlinthError

POLL_S = 0.2


@dataclass(frozen=True)
class PromotionRequest:
    model_id: str
    deployment_id: str
    environment: str
    wait: bool
    timeout_s: float


def promote_and_wait(
    client: PlinthClient, gateway_url: str, request: PromotionRequest, console: Console
) -> None:
    env = client.promote(request.model_id, request.deployment_id, request.environment)
    target, name = escape(request.deployment_id), escape(request.environment)
    deadline = time.monotonic() + request.timeout_s
    if current_deployment_id(env) != request.deployment_id:
        serving = current_deployment_id(env) or "nothing"
        console.print(
            f"promotion of {target} to {name} is pending until ACTIVE"
            f" ({name} serves {escape(serving)} meanwhile)"
        )
        if not request.wait:
            return
        _wait_for_swap(client, request, deadline)
        console.print(f"{target} is ACTIVE; {name} swapped to it")
    elif not request.wait:
        console.print(f"{name} swapped to {target}; gateways follow within their poll interval")
        return
    if _wait_for_gateway(client, gateway_url, request, deadline):
        console.print(f"{name} now routes to {target} (gateway {escape(gateway_url)})")
    else:
        console.print(
            f"[yellow]{name} swapped to {target}, but the gateway at {escape(gateway_url)} could"
            " not confirm it routes there (unreachable, or it does not know this API key)[/]"
        )


def _wait_for_swap(client: PlinthClient, request: PromotionRequest, deadline: float) -> None:
    while True:
        env = client.get_environment(request.model_id, request.environment)
        if current_deployment_id(env) == request.deployment_id:
            return
        if not env.get("promotion_in_progress"):
            dep = client.get_deployment(request.model_id, request.deployment_id)
            why = dep.get("status_message") or "no reason given"
            raise PlinthError(
                f"promotion of {request.deployment_id} to {request.environment} did not complete:"
                f" the deployment is {dep.get('status')} ({why})"
            )
        _sleep_or_give_up(deadline, f"{request.deployment_id} did not become ACTIVE", request)


def _wait_for_gateway(
    client: PlinthClient, gateway_url: str, request: PromotionRequest, deadline: float
) -> bool:
    """True once the gateway serves a table holding the swap; False if it is unreachable or
    belongs to another platform (its table versions would mean nothing here)."""
    if not client.gateway_accepts_key(gateway_url):
        return False
    version = _first_version_with_swap(client, request, deadline)
    while True:
        try:
            health = httpx.get(f"{gateway_url.rstrip('/')}/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        if int(health.get("version") or 0) >= version:
            return True
        _sleep_or_give_up(deadline, "the gateway did not pick up the swap", request)


def _first_version_with_swap(
    client: PlinthClient, request: PromotionRequest, deadline: float
) -> int:
    while True:
        table = client.routing_table()
        model: dict[str, Any] = (table.get("models") or {}).get(request.model_id) or {}
        environments = model.get("environments") or {}
        if environments.get(request.environment) == request.deployment_id:
            return int(table.get("version") or 0)
        _sleep_or_give_up(deadline, "the routing table does not show the swap", request)


def _sleep_or_give_up(deadline: float, what: str, request: PromotionRequest) -> None:
    if time.monotonic() > deadline:
        raise PlinthError(
            f"{what} within {request.timeout_s:g} s (--timeout); the promotion itself stands"
        )
    time.sleep(POLL_S)
