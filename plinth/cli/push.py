"""`plinth push`: strict-load the config, archive, upload, create a deployment, wait."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from plinth.cli.output import make_console, status_text
from plinth.cli.target import PlatformTarget
from plinth.client import PlinthClient, predict_url
from plinth.exceptions import ConfigError
from plinth.spec import ArchiveInfo, TrussConfig, create_archive, load_config_with_warnings
from plinth.spec.checks import (
    OPENAI_METHOD_NAMES,
    check_model_class,
    check_model_name,
    model_class_methods,
)

FAILED_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class PushOptions:
    promote: bool = False
    environment: str | None = None
    wait: bool = True
    timeout: float = 900.0
    poll: float = 1.0
    # `truss push --model-name`: names a package whose config.yaml has no model_name.
    model_name: str | None = None


def log_line_text(entry: Any) -> str:
    """A log entry as one line, whether the server sends strings or objects."""
    if isinstance(entry, dict):
        text = entry.get("line") or entry.get("message") or entry.get("text") or ""
        source = entry.get("replica_id") or entry.get("replica") or entry.get("source")
        return f"[{source}] {text}" if source else str(text)
    return str(entry).rstrip("\n")


def load_push_config(package_dir: Path, model_name: str | None = None) -> TrussConfig:
    """Strict load: unknown keys are errors at push, as in Truss; warnings are printed.
    `model_name` (from --model-name) overrides the config's."""
    loaded = load_config_with_warnings(package_dir, strict=True)
    for warning in loaded.warnings:
        make_console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}")
    config = loaded.config
    if model_name:
        config = config.model_copy(update={"model_name": model_name})
    if not config.model_name:
        raise ConfigError(
            "config.yaml: field 'model_name' is required to push (or give --model-name NAME)",
            field="model_name",
        )
    check_model_name(config.model_name)
    check_model_class(package_dir, config)
    return config


def _upload(client: PlinthClient, info: ArchiveInfo, console: Console) -> bool:
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task("uploading", total=info.size)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return client.upload_archive(info.path, info.sha256, progress=advance)


def _target_environment(options: PushOptions) -> str:
    if options.promote:
        return "production"
    return options.environment or "development"


def _print_failure(
    client: PlinthClient, model_id: str, deployment: dict[str, Any], console: Console
) -> None:
    errors = make_console(stderr=True)
    deployment_id = str(deployment["id"])
    message = deployment.get("status_message") or ""
    errors.print(f"[red]deployment {escape(deployment_id)} FAILED[/] {escape(str(message))}")
    logs = client.deployment_logs(model_id, deployment_id)
    entries = [*logs["build"], *logs["replicas"]]
    # The build log keeps the failed replicas' last lines too: print each line once.
    lines = list(dict.fromkeys(log_line_text(entry) for entry in entries))
    if lines:
        errors.print(f"[bold]last {min(len(lines), FAILED_LOG_TAIL_LINES)} log lines:[/]")
        for line in lines[-FAILED_LOG_TAIL_LINES:]:
            errors.print(escape(line))


def run_push(
    package_dir: Path, target: PlatformTarget, options: PushOptions, console: Console
) -> int:
    """Push a package; returns the exit code (1 when the deployment FAILED)."""
    config = load_push_config(package_dir, options.model_name)
    model_name = str(config.model_name)
    with tempfile.TemporaryDirectory(prefix="plinth-push-") as workdir:
        info = create_archive(package_dir, Path(workdir) / "package.tar.gz")
        console.print(
            f"packaged {info.file_count} files ({info.size:,} bytes), sha256 {info.sha256[:12]}"
        )
        with PlinthClient(target.control_plane_url, target.api_key) as client:
            if _upload(client, info, console):
                console.print("uploaded archive")
            else:
                console.print("archive unchanged: already on the control plane, upload skipped")
            openai_api = _serves_openai(package_dir, config)
            return _deploy(client, target, model_name, config, info, options, console, openai_api)


def _serves_openai(package_dir: Path, config: TrussConfig) -> bool:
    """An engine, a custom server, or a Model class with Truss's OpenAI-style methods."""
    if config.engine is not None or config.docker_server is not None:
        return True
    methods = model_class_methods(package_dir, config)
    return bool(methods and methods & OPENAI_METHOD_NAMES)


def _deploy(
    client: PlinthClient,
    target: PlatformTarget,
    model_name: str,
    config: TrussConfig,
    info: ArchiveInfo,
    options: PushOptions,
    console: Console,
    openai_api: bool = False,
) -> int:
    created = client.create_deployment(
        model_name, info.sha256, config.to_dict(), options.environment, options.promote
    )
    for warning in created.get("warnings") or []:
        make_console(stderr=True).print(f"[yellow]warning:[/] {escape(str(warning))}")
    model_id = str(created["model_id"])
    deployment = created["deployment"]
    deployment_id = str(deployment["id"])
    console.print(f"model id:       {escape(model_id)} ({escape(model_name)})")
    console.print(f"deployment id:  {escape(deployment_id)}")
    if options.wait:
        started = time.monotonic()

        def show(current: dict[str, Any]) -> None:
            note = current.get("status_message") or ""
            elapsed = time.monotonic() - started
            console.print(
                f"  {elapsed:6.1f}s  {status_text(current.get('status'))} {escape(str(note))}"
            )

        deployment = client.wait_for_deployment(
            model_id, deployment_id, timeout=options.timeout, poll=options.poll, on_status=show
        )
        if deployment.get("status") == "FAILED":
            _print_failure(client, model_id, deployment, console)
            return 1
        if deployment.get("image"):  # built as an OCI image (plinth up --runtime container)
            console.print(f"image:          {escape(str(deployment['image']))}")
    environment = _target_environment(options)
    env_url = predict_url(target.gateway_url, model_id, environment=environment)
    dep_url = predict_url(target.gateway_url, model_id, deployment_id=deployment_id)
    console.print(f"predict ({escape(environment)}):  POST {escape(env_url)}")
    console.print(f"predict (this deployment): POST {escape(dep_url)}")
    if openai_api:
        base_url = env_url.removesuffix("/predict") + "/v1"
        console.print(f"OpenAI base_url ({escape(environment)}): {escape(base_url)}")
        console.print(
            f"  model={escape(model_name)!r}; or base_url {escape(target.gateway_url)}/v1"
        )
    return 0
