"""`plinth predict --async` helpers, `plinth async-requests ...` and `plinth webhook-secret`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from plinth.cli.options import ApiKeyOption, GatewayUrlOption, UrlOption, connect
from plinth.cli.output import print_json
from plinth.client import PlinthClient, environment_path

async_app = typer.Typer(
    help="Async requests: status, cancel, webhook replay.", no_args_is_help=True
)
webhook_secret_app = typer.Typer(help="The secret that signs webhooks.", no_args_is_help=True)
RequestIdArgument = Annotated[str, typer.Argument(help="The async request id.")]


def submit_async(
    client: PlinthClient,
    gateway_url: str,
    model_id: str,
    payload: Any,
    *,
    environment: str | None,
    deployment_id: str | None,
    options: dict[str, Any],
    wait: bool,
) -> None:
    """Queue ``payload``; print the request id, or with ``wait`` the finished request."""
    body = {"model_input": payload, **{k: v for k, v in options.items() if v is not None}}
    path = environment_path(environment, deployment_id)
    request_id = client.async_predict(gateway_url, model_id, body, path=path)
    if not wait:
        print_json({"request_id": request_id})
        return
    print_json(client.wait_async_request(gateway_url, request_id))


@async_app.command("get")
def get_request(
    request_id: RequestIdArgument,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Status, webhook status and delivery log, and the result while it is kept."""
    with connect(url, gateway_url, api_key) as (client, target):
        print_json(client.async_request(target.gateway_url, request_id))


@async_app.command("cancel")
def cancel_request(
    request_id: RequestIdArgument,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a QUEUED request (refused once it has started)."""
    with connect(url, gateway_url, api_key) as (client, target):
        print_json(client.cancel_async_request(target.gateway_url, request_id))


@async_app.command("replay-webhook")
def replay_webhook(
    request_id: RequestIdArgument,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Send a finished request's kept result to its webhook again."""
    with connect(url, gateway_url, api_key) as (client, target):
        print_json(client.replay_async_webhook(target.gateway_url, request_id))


@webhook_secret_app.command("create")
def create_secret(
    url: UrlOption = None, gateway_url: GatewayUrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """A new signing secret, printed once; older ones keep signing during the rotation."""
    with connect(url, gateway_url, api_key) as (client, _):
        print_json(client.create_webhook_secret())
