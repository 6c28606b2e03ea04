"""One replica process of the local cluster driver: start, probe, stop, read its log.

Kept apart from the driver's bookkeeping so each piece stays small and testable.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from control_plane.adapters._container_replica import (
    container_command,
    create_container,
    remove_container,
)
from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.model_runtime import refresh_runtime
from control_plane.ports.cluster import CustomServer, ReplicaPhase, ReplicaSpec
from plinth.contracts.replica_env import ReplicaEnv, ReplicaVar

# Variables a replica inherits from the control plane; everything else (cloud credentials,
# admin keys) stays out of model code unless the spec passes it explicitly.
INHERITED_ENV = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH",
    ReplicaVar.LOG_LEVEL, "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
)  # fmt: skip


@dataclass
class ReplicaProcess:
    """Mutable record of one replica; the driver mutates it under its lock."""

    replica_id: str
    deployment_id: str
    directory: Path
    host: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    phase: ReplicaPhase = ReplicaPhase.STARTING
    restarts: int = 0
    crash_streak: int = 0  # deaths since the process last ran stably; drives the backoff
    message: str = ""
    started_at: float = 0.0  # monotonic time of the current process's start
    restart_at: float | None = None  # monotonic time a dead process is due to restart
    failed_probes: int = 0
    generation: int = 0  # bumped on every (re)start so stale probe results are dropped
    draining_since: float | None = None  # monotonic time it was chosen for removal
    scheduled_at: float = 0.0  # epoch time of the current process's start (cold start phases)
    phase_times: dict[str, float] = field(default_factory=dict)  # the server's cold_start
    container: str | None = None  # the container runtime's working container, while it exists

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "replica.log"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_secrets(secrets_dir: Path, secrets: Mapping[str, str]) -> None:
    """One file per secret, mode 0600, in a 0700 directory; stale ones removed."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    for name in secrets:
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise ClusterError(f"secret name {name!r} cannot be a file name")
    for existing in secrets_dir.iterdir():
        if existing.name not in secrets:
            existing.unlink()
    for name, value in secrets.items():
        path = secrets_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.chmod(path, 0o600)  # the file may predate this write with other bits


def replica_env(spec: ReplicaSpec, secrets_dir: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env.update(spec.env)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(ReplicaEnv(secrets_dir=str(secrets_dir)).to_env())
    return env


class ServerPortBusy(ClusterError):
    """A custom server's fixed ``server_port`` is taken on this host (another replica?)."""


_USES_PORT = re.compile(r"\$\{?PORT\b")


def server_port_for(server: CustomServer | None, host: str) -> int:
    """The port a replica listens on: a free one, unless a custom server's start_command
    never reads ``$PORT``. Then it is the fixed ``server_port``, so this host runs one such
    replica at a time (a second would answer the first one's probes); busy, it waits."""
    if server is None or _USES_PORT.search(server.start_command):
        return free_port(host)
    with socket.socket() as sock:
        try:
            sock.bind((host, server.server_port))
        except OSError:
            raise ServerPortBusy(
                f"server_port {server.server_port} is in use on {host} (another replica or "
                "process); the local runtime runs one replica of a fixed-port server at a time:"
                " listen on $PORT in start_command to run more"
            ) from None
    return server.server_port


def _command(replica: ReplicaProcess, spec: ReplicaSpec) -> tuple[list[str], Path]:
    """What the replica runs, and in which directory."""
    if spec.custom_server is not None:
        # The user's server, in the package directory, as Truss runs it in the image.
        return ["/bin/sh", "-c", spec.custom_server.start_command], Path(spec.model_dir)
    command = [
        spec.python, "-m", "gpu_nodes.model_server", "--model-dir", spec.model_dir,
        "--port", str(replica.port), "--host", replica.host,
    ]  # fmt: skip
    return command, replica.directory


def _process_env(replica: ReplicaProcess, spec: ReplicaSpec, secrets_dir: Path) -> dict[str, str]:
    env = replica_env(spec, secrets_dir)
    if spec.custom_server is not None:
        env["PORT"] = str(replica.port)
        env["HOST"] = replica.host
        # `python`, `pip` and console scripts of the deployment's requirements come first.
        venv_bin = str(Path(spec.python).parent) if spec.python else ""
        env["PATH"] = os.pathsep.join(p for p in (venv_bin, env.get("PATH", os.defpath)) if p)
    return env


def start_process(replica: ReplicaProcess, spec: ReplicaSpec) -> None:
    """Launch the model server (or the custom server) for ``replica`` on its port."""
    replica.directory.mkdir(parents=True, exist_ok=True)
    secrets_dir = replica.directory / "secrets"
    write_secrets(secrets_dir, spec.secrets)
    # Before the port check: a replica waiting for a busy port counts as a crash loop.
    replica.started_at = time.monotonic()
    replica.port = server_port_for(spec.custom_server, replica.host)
    if replica.log_file is None:
        replica.log_file = replica.log_path.open("ab")
    if spec.image:  # the container runtime: the image's own server, in its rootfs
        replica.container = f"plinth-{replica.replica_id}"
        create_container(replica.container, spec.image)
        command = container_command(
            replica.container, spec, replica.directory, host=replica.host, port=replica.port
        )
        cwd = replica.directory
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        # An environment built by an earlier platform version links that version's runtime.
        if spec.python and refresh_runtime(Path(spec.python).parent.parent):
            note(replica, "relinked the environment's model-server runtime (the platform changed)")
        command, cwd = _command(replica, spec)
        env = _process_env(replica, spec, secrets_dir)
    try:
        replica.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=replica.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaches its children too
        )
    except OSError as exc:
        raise ClusterError(f"cannot start replica {replica.replica_id}: {exc}") from exc
    replica.started_at = time.monotonic()
    replica.scheduled_at = time.time()
    replica.phase_times = {}
    replica.generation += 1
    replica.failed_probes = 0
    replica.phase = ReplicaPhase.STARTING


def note(replica: ReplicaProcess, text: str) -> None:
    """Append a driver line to the replica's log, so ``logs()`` shows why it restarted."""
    if replica.log_file is not None:
        replica.log_file.write(f"[plinth] {text}\n".encode())
        replica.log_file.flush()


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_processes(replicas: list[ReplicaProcess], *, grace_s: float) -> None:
    """SIGTERM every replica's process group, then SIGKILL what is left after ``grace_s``."""
    live = [r.proc for r in replicas if r.proc is not None and r.proc.poll() is None]
    for proc in live:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in live:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        # The server may be gone while a child it spawned lingers: kill the group anyway.
        signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for replica in replicas:
        if replica.log_file is not None:
            replica.log_file.close()
            replica.log_file = None
        # Secret files outlive nothing that needs them.
        shutil.rmtree(replica.directory / "secrets", ignore_errors=True)
        if replica.container is not None:
            remove_container(replica.container)
            replica.container = None
        replica.phase = ReplicaPhase.STOPPED


@dataclass(frozen=True)
class ProbeResult:
    phase: ReplicaPhase | None  # None: the server did not answer
    message: str = ""
    # The server's cold_start: when it reached each phase (epoch s), e.g. model_loaded_at.
    phase_times: Mapping[str, float] = field(default_factory=dict)


def probe(client: httpx.Client, url: str, server: CustomServer | None = None) -> ProbeResult:
    """Truss health routes: ``GET /`` is liveness, ``GET /v1/models/model`` readiness; a
    custom server's own liveness and readiness endpoints instead."""
    try:
        client.get(url + (server.liveness_path if server else "/")).raise_for_status()
        ready = client.get(url + (server.readiness_path if server else "/v1/models/model"))
    except httpx.HTTPError:
        return ProbeResult(None)
    if server is not None:  # its own server: no Truss status body, no cold-start phases
        return ProbeResult(ReplicaPhase.READY if ready.status_code == 200 else ReplicaPhase.LOADING)
    body: dict[str, object] = {}
    with contextlib.suppress(ValueError):
        parsed = ready.json()
        body = parsed if isinstance(parsed, dict) else {}
    if ready.status_code == 200:
        return ProbeResult(ReplicaPhase.READY, phase_times=_phase_times(body.get("cold_start")))
    if str(body.get("status", "")).upper() == "FAILED":
        return ProbeResult(ReplicaPhase.FAILED, str(body.get("error") or "model load failed"))
    weights = body.get("weights")  # the model server is still fetching weights
    if isinstance(weights, dict):
        return ProbeResult(ReplicaPhase.LOADING, progress_message(weights))
    return ProbeResult(ReplicaPhase.LOADING)


def _phase_times(raw: object) -> dict[str, float]:
    """The numeric entries of a readiness body's ``cold_start`` (anything else is dropped)."""
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float) and v == v}


def progress_message(weights: Mapping[str, Any]) -> str:
    """``fetching weights 120/512 MB (3/7 files)`` from a model server's readiness body."""
    mib = 1 << 20
    done = int(weights.get("bytes_done") or 0)
    total = int(weights.get("bytes_total") or 0)
    text = f"fetching weights {done / mib:.0f}/{total / mib:.0f} MB"
    if weights.get("files_total"):
        text += f" ({int(weights.get('files_done') or 0)}/{int(weights['files_total'])} files)"
    return text


def tail_lines(path: Path, count: int, *, block: int = 64 * 1024) -> list[str]:
    """The last ``count`` lines of a text file, reading backwards from its end."""
    if count <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= count:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]
