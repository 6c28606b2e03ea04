"""A real `plinth up` platform (control plane + gateway + local replicas) for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from plinth.local import LocalPlatform, start_platform
from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 300


@dataclass
class Cli:
    state_dir: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PLINTH_STATE_DIR=str(self.state_dir), NO_COLOR="1", COLUMNS="200")
        proc = subprocess.run(
            [sys.executable, "-m", "plinth.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            cwd=REPO_ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"plinth {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state_dir = tmp_path_factory.mktemp("plinth-state")
    running = start_platform(state_dir, "127.0.0.1", free_port(), free_port())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cli(platform: LocalPlatform) -> Cli:
    return Cli(platform.state_dir)


@pytest.fixture(scope="module")
def api(platform: LocalPlatform) -> Iterator[httpx.Client]:
    ep = platform.endpoints
    headers = {"Authorization": f"Api-Key {ep.api_key}"}
    with httpx.Client(base_url=ep.control_plane_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def gateway(platform: LocalPlatform) -> Iterator[httpx.Client]:
    ep = platform.endpoints
    headers = {"Authorization": f"Api-Key {ep.api_key}"}
    with httpx.Client(base_url=ep.gateway_url, headers=headers, timeout=60) as client:
        yield client
