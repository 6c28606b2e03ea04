"""`plinth models`, `deployments`, `deployment`, `activate`, `deactivate`, `environments ...`.

Every MODEL argument takes a model id or a model name (`PlinthClient.resolve_model_id`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from plinth.cli.manage import current_deployment_id
from plinth.cli.options import ApiKeyOption, JsonOption, UrlOption, connect
from plinth.cli.output import format_time, make_console, print_json, print_listing, status_text

ModelArgument = Annotated[str, typer.Argument(help="Model id or name.")]
DeploymentArgument = Annotated[str, typer.Argument(help="Deployment id.")]

environments_app = typer.Typer(
    help="List, show and create a model's environments.", no_args_is_help=True
)


def print_ids(items: list[dict[str, Any]]) -> None:
    """One id a line, in one write: `... -q | head -n 1` then never meets a closed pipe."""
    sys.stdout.write("".join(f"{item['id']}\n" for item in items))
    sys.stdout.flush()


def serving_environments(environments: list[dict[str, Any]]) -> dict[str, list[str]]:
    """deployment id -> the names of every environment whose current deployment it is."""
    serving: dict[str, list[str]] = {}
    for env in environments:
        current = current_deployment_id(env)
        if current:
            serving.setdefault(str(current), []).append(str(env.get("name", "")))
    return {dep: sorted(names) for dep, names in serving.items()}


def replicas_text(deployment: dict[str, Any] | None) -> str:
    """'ready/desired' replicas of a deployment, e.g. '2/2'; '-' when there is none."""
    if not deployment:
        return "-"
    ready = deployment.get("active_replica_count", 0)
    return f"{ready}/{deployment.get('desired_replica_count', '?')}"


def range_text(settings: dict[str, Any] | None) -> str:
    settings = settings or {}
    return f"{settings.get('min_replica', '?')}-{settings.get('max_replica', '?')}"


def deployment_row(item: dict[str, Any], serving: dict[str, list[str]]) -> list[Any]:
    drain = format_time(item.get("scale_down_at")) if item.get("scale_down_at") else "-"
    return [
        item.get("id", ""),
        item.get("name", ""),
        status_text(item.get("status")),
        escape(str(item.get("status_message") or "")),
        ", ".join(serving.get(str(item.get("id")), [])) or "-",
        replicas_text(item),
        range_text(item.get("autoscaling_settings")),
        drain,
        format_time(item.get("created_at")),
    ]


DEPLOYMENT_COLUMNS = [
    "id",
    "name",
    "status",
    "message",
    "serves",
    "replicas (ready/desired)",
    "autoscaling (min-max)",
    "drains at",
    "created",
]


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only ids, one a line (for scripts).")
]


def models(
    name: Annotated[str | None, typer.Argument(help="Only the model with this name.")] = None,
    quiet: QuietOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """List models (`plinth models NAME -q` prints the id of the model called NAME)."""
    with connect(url, None, api_key) as (client, _):
        items = [item for item in client.list_models() if name is None or item["name"] == name]
        if quiet:
            print_ids(items)
            return
        rows = [
            [
                item.get("id", ""),
                item.get("name", ""),
                item.get("deployments_count", ""),
                item.get("production_deployment_id") or "-",
                item.get("development_deployment_id") or "-",
            ]
            for item in items
        ]
        columns = ["id", "name", "deployments", "production", "development"]
        print_listing("models", columns, rows, {"models": items}, json)


def deployments(
    model: ModelArgument,
    quiet: QuietOption = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """List a model's deployments, newest first: status and why, every environment each
    serves, replicas, autoscaling range and when a replaced deployment drains."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        items = sorted(
            client.list_deployments(model_id),
            key=lambda item: float(item.get("created_at") or 0),
            reverse=True,
        )
        if quiet:
            print_ids(items)
            return
        serving = serving_environments(client.list_environments(model_id))
        rows = [deployment_row(item, serving) for item in items]
        title = f"deployments of {model_id}"
        print_listing(title, DEPLOYMENT_COLUMNS, rows, {"deployments": items}, json)


def deployment(
    model: ModelArgument,
    deployment_id: DeploymentArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Show one deployment."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        item = client.get_deployment(model_id, deployment_id)
        serving = serving_environments(client.list_environments(model_id))
        title = f"deployment {deployment_id} of {model_id}"
        print_listing(title, DEPLOYMENT_COLUMNS, [deployment_row(item, serving)], item, json)


def _set_active(
    model: str, deployment_id: str, active: bool, url: str | None, key: str | None
) -> None:
    with connect(url, None, key) as (client, _):
        model_id = client.resolve_model_id(model)
        if active:
            item = client.activate(model_id, deployment_id)
        else:
            item = client.deactivate(model_id, deployment_id)
        status = status_text(item.get("status")) if item else ""
        verb = "activating" if active else "deactivating"
        make_console().print(f"{verb} {escape(deployment_id)} of model {escape(model_id)} {status}")


def activate(
    model: ModelArgument,
    deployment_id: DeploymentArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Bring a deployment back from zero (its min_replica, at least one replica)."""
    _set_active(model, deployment_id, True, url, api_key)


def deactivate(
    model: ModelArgument,
    deployment_id: DeploymentArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Scale a deployment to zero; it is kept and can be activated or promoted again."""
    _set_active(model, deployment_id, False, url, api_key)


def environment_row(item: dict[str, Any]) -> list[Any]:
    current = item.get("current_deployment")
    current = current if isinstance(current, dict) and "status" in current else None
    pending = item.get("promotion") or {}
    promoting = f"to {pending['deployment_id']}" if pending.get("deployment_id") else "-"
    return [
        item.get("name", ""),
        current_deployment_id(item) or "-",
        status_text(current.get("status")) if current else "-",
        replicas_text(current),
        range_text(item.get("autoscaling_settings")),
        promoting,
    ]


ENVIRONMENT_COLUMNS = [
    "name",
    "current deployment",
    "status",
    "replicas (ready/desired)",
    "autoscaling (min-max)",
    "promoting",
]


@environments_app.command("list")
def environments_list(
    model: ModelArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """List a model's environments and what each one serves."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        items = client.list_environments(model_id)
        rows = [environment_row(item) for item in items]
        title = f"environments of {model_id}"
        print_listing(title, ENVIRONMENT_COLUMNS, rows, {"environments": items}, json)


@environments_app.command("get")
def environments_get(
    model: ModelArgument,
    name: Annotated[str, typer.Argument(help="Environment name.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Show one environment."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        item = client.get_environment(model_id, name)
        title = f"environment {name} of {model_id}"
        print_listing(title, ENVIRONMENT_COLUMNS, [environment_row(item)], item, json)


@environments_app.command("create")
def environments_create(
    model: ModelArgument,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and '-'.")],
    min_replica: Annotated[int | None, typer.Option(help="Autoscaling min_replica.")] = None,
    max_replica: Annotated[int | None, typer.Option(help="Autoscaling max_replica.")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Create a named environment (then `plinth promote MODEL DEPLOYMENT -e NAME`)."""
    settings = {
        key: value
        for key, value in (("min_replica", min_replica), ("max_replica", max_replica))
        if value is not None
    }
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        item = client.create_environment(model_id, name, settings or None)
        if json:
            print_json(item)
            return
        make_console().print(f"created environment {escape(name)} of model {escape(model_id)}")
