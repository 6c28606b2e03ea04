"""`plinth clusters list|get|register|cordon|uncordon|drain|remove`: the clusters that
placement spreads replicas over (`/v1/clusters`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from plinth.cli.options import ApiKeyOption, JsonOption, UrlOption, connect
from plinth.cli.output import format_time, make_console, print_json, print_listing
from plinth.exceptions import PlinthError

clusters_app = typer.Typer(
    help="List, register, cordon, drain and remove the clusters replicas are placed on.",
    no_args_is_help=True,
)

ClusterArgument = Annotated[str, typer.Argument(help="Cluster id.")]
CLUSTER_COLUMNS = [
    "id",
    "cloud/region",
    "kind",
    "capacity",
    "priority",
    "spills to",
    "labels",
    "state",
    "last heartbeat",
    "last error",
]


def cluster_state(item: dict[str, Any]) -> str:
    health = item.get("health") or {}
    if health.get("draining"):
        return "[yellow]draining[/]"
    if health.get("cordoned"):
        return "[yellow]cordoned[/]"
    return "[green]schedulable[/]"


def pairs_text(mapping: Any) -> str:
    if not isinstance(mapping, dict) or not mapping:
        return "-"
    return ", ".join(f"{key}={value}" for key, value in sorted(mapping.items()))


def cluster_row(item: dict[str, Any]) -> list[Any]:
    health = item.get("health") or {}
    capacity = pairs_text(item.get("capacity"))
    if item.get("max_gpus") is not None:
        capacity = f"{capacity} (max {item['max_gpus']})"
    return [
        escape(str(item.get("id", ""))),
        escape(f"{item.get('cloud', '')}/{item.get('region', '')}"),
        escape(str(item.get("kind", ""))),
        escape(capacity),
        item.get("priority", ""),
        escape(str(item.get("spill_over_to") or "-")),
        escape(pairs_text(item.get("labels"))),
        cluster_state(item),
        format_time(health.get("last_heartbeat")) or "never",
        escape(str(health.get("last_error") or "-")),
    ]


def parse_pairs(values: list[str], option: str, *, as_int: bool = False) -> dict[str, Any]:
    """`KEY=VALUE` options (`--capacity H100=16`, `--label residency=eu`) as a dict."""
    parsed: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise PlinthError(f"{option} {value!r}: expected KEY=VALUE")
        if as_int:
            try:
                parsed[key] = int(text)
            except ValueError:
                raise PlinthError(f"{option} {value!r}: {text!r} is not a whole number") from None
        else:
            parsed[key] = text
    return parsed


def record_from_file(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlinthError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise PlinthError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise PlinthError(f"{path} must hold one cluster record (a JSON object)")
    record.pop("health", None)  # a record read back from `get --json` carries its health
    return record


@clusters_app.command("list")
def clusters_list(
    url: UrlOption = None, api_key: ApiKeyOption = None, json: JsonOption = False
) -> None:
    """List registered clusters: capacity, Hybrid spill-over, cordon/drain, last heartbeat."""
    with connect(url, None, api_key) as (client, _):
        items = client.list_clusters()
        rows = [cluster_row(item) for item in items]
        print_listing("clusters", CLUSTER_COLUMNS, rows, {"clusters": items}, json)


@clusters_app.command("get")
def clusters_get(
    cluster_id: ClusterArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Show one cluster."""
    with connect(url, None, api_key) as (client, _):
        item = client.get_cluster(cluster_id)
        print_listing(f"cluster {cluster_id}", CLUSTER_COLUMNS, [cluster_row(item)], item, json)


def _driver_fields(
    driver: str | None, namespace: str | None, endpoint: str | None, role_arn: str | None
) -> dict[str, str]:
    given = {"kind": driver, "namespace": namespace, "endpoint": endpoint, "role_arn": role_arn}
    return {key: value for key, value in given.items() if value is not None}


@clusters_app.command("register")
def clusters_register(
    cluster_id: ClusterArgument,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A JSON record (as `get --json` prints); options override it."),
    ] = None,
    cloud: Annotated[str | None, typer.Option(help="aws, gcp, local, a datacenter's name.")] = None,
    region: Annotated[str | None, typer.Option(help="e.g. eu-west-1.")] = None,
    latitude: Annotated[float | None, typer.Option(help="Where it is, -90 to 90.")] = None,
    longitude: Annotated[float | None, typer.Option(help="Where it is, -180 to 180.")] = None,
    kind: Annotated[str | None, typer.Option(help="cloud or self-hosted.")] = None,
    capacity: Annotated[
        list[str] | None, typer.Option(help="GPUs by type, repeatable: --capacity H100=16.")
    ] = None,
    priority: Annotated[int | None, typer.Option(help="Lower is preferred (default 100).")] = None,
    gpu_hour_cost: Annotated[float | None, typer.Option(help="Breaks priority ties.")] = None,
    max_gpus: Annotated[int | None, typer.Option(help="Hybrid: GPUs filled here first.")] = None,
    spill_over_to: Annotated[
        str | None, typer.Option(help="Hybrid: the registered cluster that takes the rest.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Repeatable: --label residency=eu.")
    ] = None,
    gateway_url: Annotated[str | None, typer.Option(help="The cluster's gateway.")] = None,
    driver: Annotated[
        str | None, typer.Option(help="local, kubernetes or kubernetes-assumed-role.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Kubernetes API server URL.")] = None,
    role_arn: Annotated[str | None, typer.Option(help="Role assumed (self-hosted).")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Register a cluster (from options, or --file with options overriding its fields)."""
    with connect(url, None, api_key) as (client, _):
        scalars = {
            "cloud": cloud,
            "region": region,
            "kind": kind,
            "priority": priority,
            "gpu_hour_cost": gpu_hour_cost,
            "max_gpus": max_gpus,
            "spill_over_to": spill_over_to,
            "gateway_url": gateway_url,
        }
        record = cluster_record(
            cluster_id,
            record_from_file(file) if file else {},
            scalars,
            (latitude, longitude),
            capacity or [],
            label or [],
            _driver_fields(driver, namespace, endpoint, role_arn),
        )
        item = client.register_cluster(record)
        if json:
            print_json(item)
            return
        make_console().print(f"registered cluster {escape(cluster_id)}")


def cluster_record(
    cluster_id: str,
    record: dict[str, Any],
    scalars: dict[str, Any],
    location: tuple[float | None, float | None],
    capacity: list[str],
    labels: list[str],
    driver_fields: dict[str, str],
) -> dict[str, Any]:
    """The record to register: the file's record with every given option laid over it."""
    record.update({key: value for key, value in scalars.items() if value is not None})
    latitude, longitude = location
    if (latitude is None) != (longitude is None):
        raise PlinthError("give both --latitude and --longitude, or neither")
    if latitude is not None:
        record["location"] = {"latitude": latitude, "longitude": longitude}
    if capacity:
        record["capacity"] = parse_pairs(capacity, "--capacity", as_int=True)
    if labels:
        record["labels"] = parse_pairs(labels, "--label")
    if driver_fields:
        record["driver"] = {**record.get("driver", {}), **driver_fields}
    record["id"] = cluster_id
    return record


def _act(
    cluster_id: str, action: str, done: str, url: str | None, key: str | None, as_json: bool
) -> None:
    with connect(url, None, key) as (client, _):
        item = client.cluster_action(cluster_id, action)
        if as_json:
            print_json(item)
            return
        make_console().print(f"cluster {escape(cluster_id)} {done}")


@clusters_app.command("cordon")
def clusters_cordon(
    cluster_id: ClusterArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Send no new replicas there; running ones stay."""
    _act(cluster_id, "cordon", "cordoned: no new replicas go there", url, api_key, json)


@clusters_app.command("uncordon")
def clusters_uncordon(
    cluster_id: ClusterArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Clear cordon and drain: the cluster takes replicas again."""
    _act(cluster_id, "uncordon", "uncordoned: it takes replicas again", url, api_key, json)


@clusters_app.command("drain")
def clusters_drain(
    cluster_id: ClusterArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json: JsonOption = False,
) -> None:
    """Cordon and move its replicas elsewhere (each stops once its replacement is ready)."""
    _act(cluster_id, "drain", "draining: its replicas move elsewhere", url, api_key, json)


@clusters_app.command("remove")
def clusters_remove(
    cluster_id: ClusterArgument, url: UrlOption = None, api_key: ApiKeyOption = None
) -> None:
    """Forget a cluster (drain it first: removing stops nothing)."""
    with connect(url, None, api_key) as (client, _):
        client.remove_cluster(cluster_id)
        make_console().print(f"cluster {escape(cluster_id)} removed")


def placement_row(item: dict[str, Any]) -> list[Any]:
    shortfall = item.get("shortfall") or {}
    missing = int(shortfall.get("missing") or 0)
    return [
        escape(f"{item.get('model_id', '')}/{item.get('deployment_id', '')}"),
        escape(pairs_text({k: v for k, v in (item.get("replicas") or {}).items() if v})),
        missing,
        escape(str(shortfall.get("reason") or "-")) if missing else "-",
        format_time(item.get("updated_at")),
    ]


@clusters_app.command("placements")
def clusters_placements(
    url: UrlOption = None, api_key: ApiKeyOption = None, json: JsonOption = False
) -> None:
    """Where placement last put each deployment's replicas, and why any are missing
    (recorded by the reconciler; not applied to the clusters yet)."""
    with connect(url, None, api_key) as (client, _):
        result = client.placements()
        rows = [placement_row(item) for item in result.get("placements", [])]
        columns = ["model/deployment", "replicas by cluster", "missing", "why", "updated"]
        print_listing("placements", columns, rows, result, json)
