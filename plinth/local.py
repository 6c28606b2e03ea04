"""`plinth up`: the whole platform on one machine with embedded defaults.

Three processes, as in a real install: the control plane (which also runs the local
cluster driver, i.e. the replicas are its child processes), and the gateway, which only
reads the routing table and talks to replicas directly. The gateway therefore keeps
serving while the control plane is down. This module supervises both and stops them
cleanly on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from rich.console import Console

from plinth.async_worker_process import SupervisedWorker
from plinth.exceptions import PlinthError
from plinth.local_clusters import LOCAL_PLACEMENT_ENV, LocalRegion, register_clusters
from plinth.local_registry import start_registry
from plinth.state_lock import StateDirLock, acquire_state_dir_lock
from plinth.user_config import LOCAL_REMOTE, save_remote

STARTUP_TIMEOUT_S = 60.0
RUNTIMES = ("process", "container")
DEFAULT_REGISTRY_PORT = 8802
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class LocalEndpoints:
    control_plane_url: str
    gateway_url: str
    api_key: str
    internal_token: str


@dataclass
class LocalPlatform:
    """The running control plane and gateway processes of one state directory."""

    state_dir: Path
    endpoints: LocalEndpoints
    control_plane: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    lock: StateDirLock
    async_worker: SupervisedWorker | None = None
    # `--clusters`: the gateways of the clusters after the first (which is ``gateway``).
    cluster_gateways: list[subprocess.Popen[bytes]] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # cluster id -> gateway URL
    # The loopback OCI registry of --runtime container (None with the process runtime).
    registry: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Async worker and gateway first (no new traffic), then the control plane (which
        stops the replicas); the state dir is unlocked only once all are gone."""
        try:
            if self.async_worker is not None:
                self.async_worker.stop()
            for proc in (*self.cluster_gateways, self.gateway, self.control_plane):
                _terminate(proc)
            if self.registry is not None:
                _terminate(self.registry)
        finally:
            self.lock.release()

    def pids(self) -> dict[str, int]:
        pids = {"control_plane": self.control_plane.pid, "gateway": self.gateway.pid}
        for i, proc in enumerate(self.cluster_gateways, start=2):
            pids[f"gateway_{i}"] = proc.pid
        if self.registry is not None:
            pids["registry"] = self.registry.pid
        if self.async_worker is not None:
            pids["async_worker"] = self.async_worker.proc.pid
        return pids


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _load_or_create_secret(path: Path, prefix: str) -> str:
    """A per-state-dir secret, created once (0600) and reused on every `plinth up`."""
    if path.exists():
        return path.read_text().strip()
    value = prefix + secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PlinthError(f"{what} exited with code {proc.returncode} at startup:\n{tail}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise PlinthError(
        f"{what} did not answer at {url} within {STARTUP_TIMEOUT_S:.0f} s (log: {log})"
    )


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_platform(
    state_dir: Path,
    host: str = "127.0.0.1",
    control_plane_port: int = 8800,
    gateway_port: int = 8801,
    clusters: Sequence[LocalRegion] = (),
    *,
    runtime: str = "process",
    registry_port: int = DEFAULT_REGISTRY_PORT,
) -> LocalPlatform:
    """Start the control plane and the gateway; return once both answer.

    With ``clusters`` (``plinth up --clusters``) each local cluster gets its own gateway, on
    ``gateway_port``, ``gateway_port + 1``, ... With ``runtime="container"`` a loopback
    registry starts first, every deployment is built as an image pushed there, and replicas
    run from their images. Raises StateDirBusyError at once when another instance serves
    ``state_dir``.
    """
    if runtime not in RUNTIMES:
        raise PlinthError(f"--runtime {runtime!r} must be one of {', '.join(RUNTIMES)}")
    state_dir = state_dir.resolve()
    cp_url = f"http://{host}:{control_plane_port}"
    lock = acquire_state_dir_lock(state_dir, cp_url)
    try:
        ports = {"--port": control_plane_port, "--gateway-port": gateway_port}
        for i in range(1, len(clusters)):
            ports[f"--gateway-port (+{i}, cluster {clusters[i].cluster_id})"] = gateway_port + i
        if runtime == "container":
            ports["--registry-port"] = registry_port
        check_ports_free(host, ports)
        registry = None
        if runtime == "container":
            registry = start_registry(state_dir, registry_port, state_dir / "logs/registry.log")
            lock.record(cp_url, f"http://{host}:{gateway_port}", [registry.pid])
        try:
            return _start_locked(
                state_dir,
                lock,
                host,
                (control_plane_port, gateway_port),
                clusters,
                registry,
                registry_port,
            )
        except BaseException:
            if registry is not None:
                _terminate(registry)
            raise
    except BaseException:
        lock.release()
        raise


def check_ports_free(host: str, ports_by_flag: dict[str, int]) -> None:
    """Fail at once, naming the port and its flag, instead of after a startup timeout."""
    if len(set(ports_by_flag.values())) < len(ports_by_flag):
        raise PlinthError(f"{' and '.join(ports_by_flag)} must be different ports: {ports_by_flag}")
    for flag, port in ports_by_flag.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As uvicorn binds: SO_REUSEADDR, so a port held only by TIME_WAIT counts as free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise PlinthError(
                    f"port {port} on {host} ({flag}) is not available: {why};"
                    f" free it or pass another {flag}"
                ) from exc


def _start_locked(
    state_dir: Path,
    lock: StateDirLock,
    host: str,
    ports: tuple[int, int],  # control plane, first gateway
    clusters: Sequence[LocalRegion],
    registry: subprocess.Popen[bytes] | None = None,
    registry_port: int = DEFAULT_REGISTRY_PORT,
) -> LocalPlatform:
    control_plane_port, gateway_port = ports
    api_key = _load_or_create_secret(state_dir / "admin_api_key", "pl_")
    internal_token = _load_or_create_secret(state_dir / "internal_token", "int_")
    cp_url = f"http://{host}:{control_plane_port}"
    gw_url = f"http://{host}:{gateway_port}"
    env = _children_env(state_dir, host, control_plane_port, gw_url, internal_token, api_key)
    if clusters:
        env.update(LOCAL_PLACEMENT_ENV)
    gateway_urls = {
        region.cluster_id: f"http://{host}:{gateway_port + i}" for i, region in enumerate(clusters)
    }
    extra = [registry.pid] if registry is not None else []
    if registry is not None:
        env.update(PLINTH_RUNTIME="container", PLINTH_REGISTRY=f"127.0.0.1:{registry_port}")
    logs = state_dir / "logs"
    cp = _spawn([sys.executable, "-m", "control_plane"], env, logs / "control_plane.log")
    lock.record(cp_url, gw_url, [*extra, cp.pid])
    try:
        _wait_healthy(f"{cp_url}/healthz", cp, "control plane", logs / "control_plane.log")
        first = clusters[0].cluster_id if clusters else None
        gw_args = _gateway_args(cp_url, host, gateway_port, state_dir, first)
        gw = _spawn(gw_args, env, logs / "gateway.log")
        lock.record(cp_url, gw_url, [*extra, cp.pid, gw.pid])
    except BaseException:
        _terminate(cp)
        raise
    platform = LocalPlatform(
        state_dir,
        LocalEndpoints(cp_url, gw_url, api_key, internal_token),
        cp,
        gw,
        lock,
        registry=registry,
    )
    platform.clusters = gateway_urls

    def record_pids(*more: int) -> None:
        gateways = [p.pid for p in platform.cluster_gateways]
        lock.record(cp_url, gw_url, [*extra, cp.pid, gw.pid, *gateways, *more])

    try:
        _start_cluster_gateways(platform, env, host, clusters[1:], gateway_port + 1, record_pids)
        _wait_healthy(f"{gw_url}/healthz", gw, "gateway", logs / "gateway.log")
        if clusters:  # once every gateway runs: their heartbeats follow the first at once
            register_clusters(cp_url, api_key, {r: gateway_urls[r.cluster_id] for r in clusters})
        platform.async_worker = SupervisedWorker(
            env, logs / "async_worker.log", on_spawn=lambda pid: record_pids(pid)
        )
    except BaseException:
        platform.stop()
        raise
    _write_cli_config(platform)
    return platform


def _children_env(
    state_dir: Path, host: str, port: int, gw_url: str, internal_token: str, api_key: str
) -> dict[str, str]:
    """What every child process gets (secrets only through the environment, never argv)."""
    env = dict(os.environ)
    env.update(
        PLINTH_STATE_DIR=str(state_dir),
        PLINTH_HOST=host,
        PLINTH_PORT=str(port),
        PLINTH_GATEWAY_URL=gw_url,
        PLINTH_INTERNAL_TOKEN=internal_token,
        PLINTH_BOOTSTRAP_API_KEY=api_key,
        PYTHONUNBUFFERED="1",
    )
    return env


def _gateway_args(
    cp_url: str, host: str, port: int, state_dir: Path, cluster_id: str | None
) -> list[str]:
    # The internal token reaches the gateway through the inherited PLINTH_INTERNAL_TOKEN,
    # never its argv: /proc/<pid>/cmdline (ps) is readable by every user of the host.
    cache = "gateway_routing.json" if cluster_id is None else f"gateway_routing_{cluster_id}.json"
    args = [
        sys.executable, "-m", "gpu_nodes.gateway",
        "--control-plane-url", cp_url, "--host", host, "--port", str(port),
        "--cache-file", str(state_dir / cache),
    ]  # fmt: skip
    return args if cluster_id is None else [*args, "--cluster-id", cluster_id]


def _start_cluster_gateways(
    platform: LocalPlatform,
    env: dict[str, str],
    host: str,
    clusters: Sequence[LocalRegion],
    first_port: int,
    record_pids: Callable[..., None],
) -> None:
    """The gateways of the clusters after the first, each on the next port."""
    cp_url = platform.endpoints.control_plane_url
    logs = platform.state_dir / "logs"
    started = []
    for i, region in enumerate(clusters):
        port = first_port + i
        args = _gateway_args(cp_url, host, port, platform.state_dir, region.cluster_id)
        log = logs / f"gateway-{region.cluster_id}.log"
        proc = _spawn(args, env, log)
        platform.cluster_gateways.append(proc)
        record_pids()
        started.append((proc, port, log, region))
    for proc, port, log, region in started:
        _wait_healthy(f"http://{host}:{port}/healthz", proc, f"gateway of {region.cluster_id}", log)


def _write_cli_config(platform: LocalPlatform) -> None:
    """cli.json lets `plinth push` etc. find this platform without flags (0600: it holds a key)."""
    path = platform.state_dir / "cli.json"
    body = {
        "control_plane_url": platform.endpoints.control_plane_url,
        "gateway_url": platform.endpoints.gateway_url,
        "api_key": platform.endpoints.api_key,
        "pids": platform.pids(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)
    # The user-level remote: the CLI finds this platform from any directory.
    ep = platform.endpoints
    save_remote(LOCAL_REMOTE, ep.control_plane_url, ep.gateway_url, ep.api_key)


def banner_console(**options: Any) -> Console:
    from rich.console import Console

    # soft_wrap: a narrow terminal must not break a URL the user copies.
    return Console(soft_wrap=True, **options)


def print_banner(
    console: Console,
    state_dir: Path,
    ep: LocalEndpoints,
    clusters: dict[str, str] | None = None,
    *,
    registry: str | None = None,
) -> None:
    """Where everything is. The console soft-wraps: no URL is ever broken across lines."""
    console.print(f"[bold green]Plinth is up[/] (state in {state_dir})")
    console.print(
        f"  control plane  {ep.control_plane_url}   (API docs: {ep.control_plane_url}/docs)"
    )
    console.print(f"  gateway        {ep.gateway_url}")
    for cluster_id, url in (clusters or {}).items():
        console.print(f"  cluster        {cluster_id}: gateway {url}")
    if registry is not None:
        console.print(f"  registry       {registry}   (--runtime container: replicas run images)")
    console.print(f"  API key        {ep.api_key}")
    console.print(
        "  next: plinth init my-model && plinth push my-model --promote    (Ctrl-C stops)"
    )


def run_platform(
    state_dir: Path,
    host: str,
    control_plane_port: int,
    gateway_port: int,
    clusters: Sequence[LocalRegion] = (),
    *,
    runtime: str = "process",
    registry_port: int = DEFAULT_REGISTRY_PORT,
) -> None:
    """Foreground `plinth up`: start, print where things are, supervise until a signal."""
    console = banner_console()
    platform = start_platform(
        state_dir,
        host,
        control_plane_port,
        gateway_port,
        clusters,
        runtime=runtime,
        registry_port=registry_port,
    )
    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    registry = f"127.0.0.1:{registry_port}" if platform.registry is not None else None
    print_banner(
        console, platform.state_dir, platform.endpoints, platform.clusters, registry=registry
    )
    reported_exit = False
    while not stopping:
        time.sleep(0.5)
        if platform.control_plane.poll() is not None and not reported_exit:
            # The gateway keeps serving from its last routing table; say so once.
            console.print(
                "[yellow]control plane exited; the gateway keeps serving. Ctrl-C to stop.[/]"
            )
            reported_exit = True
    console.print("stopping...")
    platform.stop()
    console.print("stopped.")
