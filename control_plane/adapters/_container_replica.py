"""The container runtime of the local driver: a replica runs inside its image's root
filesystem, pulled back from the registry by digest (the same image a cluster pulls).

``buildah from`` makes a working container of the image (pulled on first use), and
``buildah run --isolation chroot`` starts the image's model server in it. Chroot isolation
shares the host's network, so the replica listens on the free loopback port it is given,
as a process replica does. The secrets directory is bind-mounted read-only; nothing else of
the host is visible. Each (re)start gets a fresh container, as a pod's restart would.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from control_plane.adapters.base_image import tool_env
from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.image_context import (
    IMAGE_MODEL_DIR,
    IMAGE_SECRETS_DIR,
    IMAGE_VENV,
    model_server_command,
)
from control_plane.ports.cluster import ReplicaSpec
from plinth.contracts.replica_env import ReplicaVar

PULL_TIMEOUT_S = 600.0
# The image's PATH after its venv (a custom server finds `python` and its tools there).
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host directories a replica's weights live in (the node cache shared by every replica of the
# machine, the replica's own mount root and status dir): mounted at the same paths, so the
# variables that name them mean the same inside the container.
WEIGHTS_DIR_VARIABLES = (
    ReplicaVar.WEIGHTS_CACHE_DIR, ReplicaVar.WEIGHTS_MOUNT_ROOT, ReplicaVar.WEIGHTS_STATUS_DIR,
)  # fmt: skip


def _buildah(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=tool_env(Path(tempfile.gettempdir())),
        check=False,
    )


def pull_image(image: str) -> None:
    """Fetch ``image`` by digest into local storage (a no-op when it is already there)."""
    done = _buildah("pull", "--tls-verify=false", "--quiet", image, timeout_s=PULL_TIMEOUT_S)
    if done.returncode != 0:
        raise ClusterError(f"cannot pull {image}: {done.stderr.strip()[-500:]}")


def create_container(name: str, image: str) -> None:
    """A fresh working container ``name`` of ``image`` (pulled by digest when not local)."""
    remove_container(name)
    done = _buildah("from", "--tls-verify=false", "--name", name, image, timeout_s=PULL_TIMEOUT_S)
    if done.returncode != 0:
        raise ClusterError(f"cannot pull {image}: {done.stderr.strip()[-500:]}")


def remove_container(name: str) -> None:
    _buildah("rm", name)  # absent is fine


def container_command(
    name: str, spec: ReplicaSpec, replica_dir: Path, *, host: str, port: int
) -> list[str]:
    """``buildah run`` of the image's model server with the replica's variables.

    The variables are on the command line (``buildah run`` reads no env file); secrets never
    are: they are files in the mounted directory."""
    env = {**spec.env, "PYTHONUNBUFFERED": "1", ReplicaVar.SECRETS_DIR: IMAGE_SECRETS_DIR}
    command = ["buildah", "run", "--isolation", "chroot"]
    command += ["-v", f"{replica_dir / 'secrets'}:{IMAGE_SECRETS_DIR}:ro"]
    for variable in WEIGHTS_DIR_VARIABLES:
        if spec.env.get(variable):
            # Relative paths mean the replica's directory (a process replica's cwd).
            host_dir = (replica_dir / spec.env[variable]).resolve()
            host_dir.mkdir(parents=True, exist_ok=True)
            command += ["-v", f"{host_dir}:{host_dir}"]
            env[variable] = str(host_dir)
    server = model_server_command(port=port, host=host)
    if spec.custom_server is not None:
        # The user's server, in the image's package directory, as Truss runs it in its image.
        env.update(PORT=str(port), HOST=host, PATH=f"{IMAGE_VENV}/bin:{IMAGE_PATH}")
        command += ["--workingdir", IMAGE_MODEL_DIR]
        server = ["/bin/sh", "-c", spec.custom_server.start_command]
    for key, value in sorted(env.items()):
        command += ["--env", f"{key}={value}"]
    return [*command, name, "--", *server]
