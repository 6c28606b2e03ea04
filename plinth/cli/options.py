"""Options every remote command shares, and the client they open."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

from plinth.cli.output import expected_errors
from plinth.cli.target import PlatformTarget, resolve_target
from plinth.client import PlinthClient
from plinth.exceptions import ApiError, PlatformUnreachableError, PlinthError

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Control plane URL (env PLINTH_URL, else cli.json of plinth up)."),
]
GatewayUrlOption = Annotated[
    str | None,
    typer.Option("--gateway-url", help="Gateway URL (env PLINTH_GATEWAY_URL, else cli.json)."),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key", help="API key (env PLINTH_API_KEY, else cli.json).", show_default=False
    ),
]


@contextlib.contextmanager
def connect(
    url: str | None, gateway_url: str | None, api_key: str | None
) -> Iterator[tuple[PlinthClient, PlatformTarget]]:
    """Resolve the target, open a client, and report expected errors as one red line."""
    with expected_errors():
        target = resolve_target(url, gateway_url, api_key)
        with PlinthClient(target.control_plane_url, target.api_key) as client:
            yield client, target


def require(condition: bool, message: str) -> None:
    if not condition:
        raise PlinthError(message)


ModelArgument = Annotated[str, typer.Argument(help="Model id or name.")]


def resolve_model_id(client: PlinthClient, reference: str, *, best_effort: bool = False) -> str:
    """The id of the model ``reference`` names: an id as it is, else a unique model name.

    Unknown references pass through unchanged, so the API's 404 is what the user sees; with
    ``best_effort`` so does everything when the control plane cannot list models.
    """
    try:
        models = client.list_models()
    except (PlatformUnreachableError, ApiError):
        if best_effort:
            return reference
        raise
    if any(model.get("id") == reference for model in models):
        return reference
    named = [str(model.get("id")) for model in models if model.get("name") == reference]
    if len(named) > 1:
        raise PlinthError(
            f"{len(named)} models are named {reference!r}; give one of their ids: "
            + ", ".join(named)
        )
    return named[0] if named else reference
