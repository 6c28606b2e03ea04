"""`plinth delete MODEL [DEPLOYMENT] [--force]`: asks nothing, prints what it deleted."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from plinth.cli.models import ModelArgument
from plinth.cli.options import ApiKeyOption, UrlOption, connect
from plinth.cli.output import make_console

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Also delete what an environment serves; that environment then serves nothing.",
    ),
]


def deployment_lines(deleted: dict[str, Any]) -> list[str]:
    """What deleting one deployment did, one line each (for a person, not a parser)."""
    lines = [f"deleted deployment {deleted['deployment_id']} of model {deleted['model_id']}"]
    cleared = deleted.get("environments_cleared") or []
    if cleared:
        lines.append(f"  environment(s) {', '.join(cleared)} now serve nothing")
    if deleted.get("archive_deleted"):
        lines.append("  its archive was deleted")
    else:
        lines.append("  its archive is kept: another deployment uses it")
    return lines


def delete(
    model: ModelArgument,
    deployment_id: Annotated[
        str | None, typer.Argument(help="Deployment id; without it the whole model is deleted.")
    ] = None,
    force: ForceOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Delete a deployment, or a model with all its deployments and environments.

    Replicas are stopped and unused archives removed. What an environment serves is refused
    unless --force."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        if deployment_id is not None:
            lines = deployment_lines(client.delete_deployment(model_id, deployment_id, force=force))
        else:
            deleted = client.delete_model(model_id, force=force)
            lines = [f"deleted model {deleted['name']} ({deleted['model_id']})"]
            for dep in deleted.get("deployments") or []:
                lines.extend(deployment_lines(dep))
            environments = ", ".join(deleted.get("environments") or [])
            lines.append(f"deleted environment(s) {environments or '-'}")
        console = make_console()
        for line in lines:
            console.print(escape(line))
