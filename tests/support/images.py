"""Shared set-up of the image tests: a loopback registry, a builder, pulling back by digest.

The base image is cached in buildah's storage under a tag naming its inputs, and the pip
download cache and the base image's lock live in one directory shared by every test worker
and run (``shared_image_cache``), so the suite makes the base image at most once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plinth.local_registry import start_registry
from tests.support.servers import free_port

IMAGE_TOOLS = ("buildah", "mmdebstrap", "docker-registry")


def missing_image_tools() -> list[str]:
    return [tool for tool in IMAGE_TOOLS if shutil.which(tool) is None]


def shared_image_cache() -> Path:
    path = Path(os.environ.get("PLINTH_TEST_IMAGE_CACHE") or tempfile.gettempdir())
    cache = path / "plinth-image-cache" if "PLINTH_TEST_IMAGE_CACHE" not in os.environ else path
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@contextmanager
def local_registry(state_dir: Path) -> Iterator[str]:
    """A registry on a free loopback port for the block; yields ``127.0.0.1:<port>``."""
    port = free_port()
    proc = start_registry(state_dir, port, state_dir / "registry.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_in_image(reference: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Pull ``reference`` back from its registry (by digest) and run ``command`` in it."""
    name = f"plinth-test-{os.getpid()}-{free_port()}"
    pulled = subprocess.run(
        ["buildah", "from", "--tls-verify=false", "--name", name, reference],
        capture_output=True,
        text=True,
        check=False,
    )
    if pulled.returncode != 0:
        raise AssertionError(f"cannot pull {reference}: {pulled.stderr}")
    try:
        return subprocess.run(
            ["buildah", "run", "--isolation", "chroot", name, "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)
