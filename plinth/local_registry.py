"""The embedded OCI registry of ``plinth up --runtime container``: Debian's ``docker-registry``
(the CNCF distribution registry) on a loopback port, storing under the state dir.

Plain HTTP on 127.0.0.1 only, no auth: nothing off this machine can reach it, and the
images it holds are the ones this machine built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from plinth.exceptions import PlinthError

REGISTRY_BINARY = "docker-registry"


class RegistryError(PlinthError):
    """The local registry could not be started."""


def registry_config(storage_dir: Path, port: int) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage_dir}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )


def start_registry(
    state_dir: Path, port: int, log_path: Path, *, timeout_s: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start the registry on ``127.0.0.1:port``; returns once ``/v2/`` answers."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RegistryError(
            f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry); "
            "it is needed for --runtime container"
        )
    root = state_dir / "registry"
    (root / "storage").mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    config.write_text(registry_config(root / "storage", port))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},  # nothing of ours
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RegistryError(f"registry exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RegistryError(f"registry did not answer on 127.0.0.1:{port} within {timeout_s:.0f}s")
