"""Options every remote command shares, and the client they open."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

from plinth.cli.output import expected_errors
from plinth.cli.target import PlatformTarget, resolve_target
from plinth.client import PlinthClient
from plinth.exceptions import PlinthError

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

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON instead of a table.")
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
