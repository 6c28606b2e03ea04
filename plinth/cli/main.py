"""`plinth`: push Truss-compatible packages to a Plinth platform and manage them.

Console script `plinth = plinth.cli.main:app`; also `python -m plinth.cli.main`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from plinth.cli.async_cmds import async_app, submit_async, webhook_secret_app
from plinth.cli.clusters import clusters_app
from plinth.cli.delete import delete
from plinth.cli.manage import api_keys_app, choose_rollback_target, secrets_app
from plinth.cli.models import (
    ModelArgument,
    activate,
    deactivate,
    deployment,
    deployments,
    environments_app,
    models,
)
from plinth.cli.options import ApiKeyOption, GatewayUrlOption, UrlOption, connect, require
from plinth.cli.output import expected_errors, make_console
from plinth.cli.promotion import PromotionRequest, promote_and_wait
from plinth.cli.push import PushOptions, log_line_text, run_push
from plinth.cli.remote import remote_app
from plinth.cli.target import resolve_target, state_dir_from_env
from plinth.client import PlinthClient
from plinth.exceptions import PlatformUnreachableError, PlinthError
from plinth.spec.templates import write_package_template

# show_locals off: a traceback must never print an API key held in a local variable.
app = typer.Typer(
    name="plinth",
    help="Plinth: deploy Truss-compatible model packages to a self-hosted inference platform.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(secrets_app, name="secrets")
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(environments_app, name="environments")
app.add_typer(remote_app, name="remote")
app.add_typer(clusters_app, name="clusters")
app.add_typer(async_app, name="async-requests")
app.add_typer(webhook_secret_app, name="webhook-secret")
for command in (models, deployments, deployment, activate, deactivate, delete):
    app.command()(command)

EnvironmentOption = Annotated[str, typer.Option("--environment", "-e", help="Environment name.")]
LOG_FOLLOW_POLL_S = 1.0


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Package (and model) name; a directory is created.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Parent directory of the new package.")
    ] = Path("."),
) -> None:
    """Create a new package: NAME/config.yaml and NAME/model/model.py (Truss layout)."""
    with expected_errors():
        package = write_package_template(directory, name)
        console = make_console()
        files = [package / "config.yaml", package / "model" / "model.py"]
        console.print("created " + " and ".join(escape(str(path)) for path in files))
        console.print(f"next: plinth push {escape(str(package))} --promote")


@app.command()
def push(
    directory: Annotated[Path, typer.Argument(help="Package directory.")] = Path("."),
    promote: Annotated[bool, typer.Option(help="Promote to production once ACTIVE.")] = False,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Promote into this environment.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until ACTIVE or FAILED.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the deployment.")] = 900.0,
    model_name: Annotated[
        str | None,
        typer.Option(
            "--model-name",
            help="Model name: names a package whose config.yaml has none, and overrides the "
            "config's model_name when given (as truss push --model-name).",
        ),
    ] = None,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Validate, package and upload DIRECTORY, create a deployment and wait for it."""
    with expected_errors():
        options = PushOptions(
            promote=promote,
            environment=environment,
            wait=wait,
            timeout=timeout,
            model_name=model_name,
        )
        target = resolve_target(url, gateway_url, api_key)
        code = run_push(directory, target, options, make_console())
    if code:
        raise typer.Exit(code=code)


WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Wait until the target is ACTIVE and the gateway routes the environment to it.",
    ),
]
PromoteTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait (with --wait).")
]


@app.command()
def promote(
    model: ModelArgument,
    deployment_id: Annotated[str, typer.Argument(help="Deployment to promote.")],
    environment: EnvironmentOption = "production",
    wait: WaitOption = True,
    timeout: PromoteTimeoutOption = 900.0,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Promote a deployment into an environment (production by default)."""
    with connect(url, gateway_url, api_key) as (client, target):
        model_id = client.resolve_model_id(model)
        request = PromotionRequest(model_id, deployment_id, environment, wait, timeout)
        promote_and_wait(client, target.gateway_url, request, make_console())


@app.command()
def rollback(
    model: ModelArgument,
    environment: EnvironmentOption = "production",
    wait: WaitOption = True,
    timeout: PromoteTimeoutOption = 900.0,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Promote the deployment that was previously in an environment back into it."""
    with connect(url, gateway_url, api_key) as (client, target):
        model_id = client.resolve_model_id(model)
        env = client.get_environment(model_id, environment)
        env.setdefault("name", environment)
        deployment_id, why = choose_rollback_target(env, client.list_deployments(model_id))
        console = make_console()
        console.print(
            f"rolling {escape(environment)} back to {escape(deployment_id)} ({escape(why)})"
        )
        request = PromotionRequest(model_id, deployment_id, environment, wait, timeout)
        promote_and_wait(client, target.gateway_url, request, console)


def _print_new_lines(logs: dict[str, list[Any]], printed: dict[str, int]) -> None:
    console = make_console()
    for stream in ("build", "replicas"):
        lines = logs.get(stream, [])
        for entry in lines[printed.get(stream, 0) :]:
            console.print(f"[dim]{stream}[/] {escape(log_line_text(entry))}")
        printed[stream] = len(lines)


def _print_new_scaling_events(events: list[dict[str, Any]], printed: dict[str, float]) -> None:
    console = make_console()
    # The history keeps its last 100 events: new ones are those after the last one printed.
    last_at = printed.get("at", float("-inf"))
    for event in events:
        if float(event["at"]) <= last_at:
            continue
        when = datetime.fromtimestamp(float(event["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        change = f"{event['from_replicas']} -> {event['to_replicas']}"
        console.print(f"[dim]{when}Z scaling[/] {change}  {escape(str(event['reason']))}")
        printed["at"] = float(event["at"])


@app.command()
def logs(
    model: ModelArgument,
    deployment_id: Annotated[str, typer.Argument(help="Deployment id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    scaling: Annotated[
        bool,
        typer.Option("--scaling", help="The scaling history (each change and why) instead."),
    ] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print a deployment's build and replica logs, or with --scaling its scaling history."""
    with connect(url, None, api_key) as (client, _):
        model_id = client.resolve_model_id(model)
        printed: dict[str, int] = {}
        if scaling:
            seen: dict[str, float] = {}
            _print_new_scaling_events(client.scaling_events(model_id, deployment_id), seen)
            while follow:  # until Ctrl-C
                time.sleep(LOG_FOLLOW_POLL_S)
                _print_new_scaling_events(client.scaling_events(model_id, deployment_id), seen)
            return
        _print_new_lines(client.deployment_logs(model_id, deployment_id), printed)
        while follow:  # until Ctrl-C
            time.sleep(LOG_FOLLOW_POLL_S)
            _print_new_lines(client.deployment_logs(model_id, deployment_id), printed)


def parse_json_data(data: str) -> Any:
    """`--data` value: JSON text, `@file.json`, or `-` for stdin."""
    source = "--data"
    if data == "-":
        data = sys.stdin.read()
    elif data.startswith("@"):
        path = Path(data[1:])
        source = str(path)
        try:
            data = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlinthError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise PlinthError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc


def model_id_for_gateway(client: PlinthClient, model: str) -> str:
    """The model's id, resolved by the control plane when it answers; inference must keep
    working while the control plane is down, so then `model` is taken as an id."""
    try:
        return client.resolve_model_id(model)
    except PlatformUnreachableError:
        return model


@app.command()
def predict(
    model: ModelArgument,
    data: Annotated[str, typer.Option("--data", "-d", help="JSON input, @file.json or -.")],
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Environment (default production).")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option("--deployment", help="Call this deployment directly.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="Print chunks as they arrive.")] = False,
    timeout: Annotated[float, typer.Option(help="Request timeout in seconds.")] = 300.0,
    url: UrlOption = None,
    gateway_url: GatewayUrlOption = None,
    api_key: ApiKeyOption = None,
    run_async: Annotated[
        bool, typer.Option("--async", help="Queue it (async_predict); prints the request id.")
    ] = False,
    webhook: Annotated[str | None, typer.Option(help="--async: webhook_endpoint.")] = None,
    priority: Annotated[int | None, typer.Option(help="--async: 0 (first) to 2.")] = None,
    wait: Annotated[bool, typer.Option(help="--async: wait and print the outcome.")] = False,
) -> None:
    """Call a model through the gateway (or queue the call with --async)."""
    with connect(url, gateway_url, api_key) as (client, target):
        require(
            environment is None or deployment is None,
            "give either --environment or --deployment, not both",
        )
        payload = parse_json_data(data)
        model_id = model_id_for_gateway(client, model)
        if run_async:
            options = {"webhook_endpoint": webhook, "priority": priority}
            submit_async(
                client, target.gateway_url, model_id, payload, environment=environment,
                deployment_id=deployment, options=options, wait=wait,
            )  # fmt: skip
            return
        result = client.predict(
            target.gateway_url,
            model_id,
            payload,
            environment=environment or "production",
            deployment_id=deployment,
            stream=stream,
            timeout=timeout,
        )
        print_prediction(result, stream)


def print_prediction(result: Any, stream: bool) -> None:
    """A streamed prediction chunk by chunk as it arrives, else the whole answer (JSON indented)."""
    if stream:
        for chunk in result:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        text = result if isinstance(result, str) else json.dumps(result, indent=2)
        sys.stdout.write(text + "\n")


@app.command()
def up(
    state_dir: Annotated[
        Path | None,
        typer.Option(help="State directory (env PLINTH_STATE_DIR, else ./.plinth)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Control plane port.")] = 8800,
    gateway_port: Annotated[int, typer.Option(help="Gateway port.")] = 8801,
    clusters: Annotated[
        str | None,
        typer.Option(
            help="Run N local clusters (a count, or regions such as eu-west,us-east), each with"
            " its own replicas and gateway (ports from --gateway-port up)."
        ),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="How replicas run: 'process' (a venv per requirements, fast) or 'container' "
            "(each deployment built as an OCI image, pushed to a loopback registry by digest, "
            "run from the image)."
        ),
    ] = "process",
    registry_port: Annotated[
        int, typer.Option(help="Port of the loopback image registry (--runtime container).")
    ] = 8802,
) -> None:
    """Run the whole platform on this machine (SQLite, files, local processes)."""
    with expected_errors():
        from plinth.local import run_platform  # heavy: only `up` needs it
        from plinth.local_clusters import parse_clusters

        regions = parse_clusters(clusters) if clusters is not None else []
        run_platform(
            state_dir or state_dir_from_env(os.environ),
            host,
            port,
            gateway_port,
            regions,
            runtime=runtime,
            registry_port=registry_port,
        )


if __name__ == "__main__":
    app()
