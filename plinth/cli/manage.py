"""`plinth secrets ...`, `plinth api-keys ...`, and the rollback target choice."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from plinth.cli.options import ApiKeyOption, UrlOption, connect
from plinth.cli.output import format_time, make_console, print_table
from plinth.exceptions import PlinthError

ROLLBACK_STATUSES = ("ACTIVE", "INACTIVE")

secrets_app = typer.Typer(help="Manage secrets (values are write-only).", no_args_is_help=True)
api_keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def current_deployment_id(environment: dict[str, Any]) -> str | None:
    """The environment's current deployment id, whether sent as an id or an object."""
    current = environment.get("current_deployment")
    if isinstance(current, dict):
        current = current.get("id")
    current = current or environment.get("current_deployment_id")
    return str(current) if current else None


def choose_rollback_target(
    environment: dict[str, Any], deployments: list[dict[str, Any]]
) -> tuple[str, str]:
    """(deployment id, why) of the deployment to roll an environment back to.

    Prefers what the control plane recorded (previous_deployment_id, then promotion history);
    falls back to the most recent ACTIVE/INACTIVE deployment that is not the current one.
    """
    name = environment.get("name", "the environment")
    current = current_deployment_id(environment)
    previous = environment.get("previous_deployment_id")
    if previous and previous != current:
        return str(previous), f"the deployment previously in {name}"
    for entry in reversed(environment.get("history") or []):
        candidate = entry.get("deployment_id") if isinstance(entry, dict) else entry
        if candidate and candidate != current:
            return str(candidate), f"the last other deployment in {name}'s promotion history"
    eligible = [
        dep
        for dep in deployments
        if dep.get("id") != current and dep.get("status") in ROLLBACK_STATUSES
    ]
    if not eligible:
        raise PlinthError(f"no earlier deployment to roll {name} back to")
    newest = max(eligible, key=lambda dep: float(dep.get("created_at") or 0))
    return str(newest["id"]), (
        f"no promotion history available: the most recent {newest.get('status')} deployment "
        f"that is not current"
    )


def _read_secret_value(value: str | None) -> str:
    if value is None and not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\n")
    elif value is None:
        value = str(typer.prompt("secret value", hide_input=True))
    if not value:
        raise PlinthError("the secret value is empty: nothing was stored")
    return value


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="Secret name, as in config.yaml `secrets`.")],
    value: Annotated[
        str | None,
        typer.Option(help="Value (else read from stdin, or prompted without echo)."),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create or replace a secret."""
    with connect(url, None, api_key) as (client, _):
        client.set_secret(name, _read_secret_value(value))
        make_console().print(f"secret {escape(name)} set")


@secrets_app.command("list")
def secrets_list(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """List secret names (never values)."""
    with connect(url, None, api_key) as (client, _):
        rows = [
            [item.get("name", ""), format_time(item.get("created_at") or item.get("updated_at"))]
            for item in client.list_secrets()
        ]
        print_table(make_console(), "secrets", ["name", "updated"], rows)


@secrets_app.command("delete")
def secrets_delete(
    name: Annotated[str, typer.Argument(help="Secret name.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a secret."""
    with connect(url, None, api_key) as (client, _):
        client.delete_secret(name)
        make_console().print(f"secret {escape(name)} deleted")


@api_keys_app.command("create")
def api_keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key.")],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the key (for `export KEY=$(...)`).")
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create an API key and print it (shown only this once)."""
    with connect(url, None, api_key) as (client, _):
        created = client.create_api_key(name)
        key = created.get("api_key") or created.get("key") or created.get("value")
        if quiet:
            sys.stdout.write(f"{key}\n")
            return
        console = make_console()
        console.print(f"api key {escape(name)} (prefix {escape(str(created.get('prefix', '')))})")
        console.print(escape(str(key)), markup=False)
        console.print("[yellow]store it now: it will not be shown again[/]")


@api_keys_app.command("list")
def api_keys_list(url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """List API keys by prefix."""
    with connect(url, None, api_key) as (client, _):
        rows = [
            [item.get("prefix", ""), item.get("name", ""), format_time(item.get("created_at"))]
            for item in client.list_api_keys()
        ]
        print_table(make_console(), "api keys", ["prefix", "name", "created"], rows)


@api_keys_app.command("delete")
def api_keys_delete(
    prefix: Annotated[str, typer.Argument(help="Key prefix, as listed.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Revoke an API key."""
    with connect(url, None, api_key) as (client, _):
        client.delete_api_key(prefix)
        make_console().print(f"api key {escape(prefix)} deleted")
