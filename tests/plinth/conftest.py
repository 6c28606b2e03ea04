"""Shared helpers for the plinth package tests: run the real CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60
STARTUP_TIMEOUT_S = 60

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment with no PLINTH_* leaking in from the caller; state dir in tmp."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLINTH_")}
    env["PLINTH_STATE_DIR"] = str(tmp_path / "state")
    # Never the user's own config: a test's `plinth up` registers its remote here.
    env["PLINTH_CONFIG"] = str(tmp_path / "user-config" / "config.json")
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path) -> RunCli:
    def run(
        *args: str, cwd: Path | None = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plinth.cli.main", *args],
            cwd=cwd or tmp_path,
            env=cli_env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    return run


@dataclass(frozen=True)
class RunningControlPlane:
    url: str
    api_key: str
    state_dir: Path


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"control plane exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"control plane not healthy within {STARTUP_TIMEOUT_S} s")


def _start_control_plane(
    state_dir: Path, *, background_workers: bool
) -> tuple[subprocess.Popen[bytes], RunningControlPlane]:
    port = free_port()
    api_key = "pl_test_" + "k" * 24
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLINTH_")}
    env.update(
        PLINTH_STATE_DIR=str(state_dir),
        PLINTH_HOST="127.0.0.1",
        PLINTH_PORT=str(port),
        PLINTH_BOOTSTRAP_API_KEY=api_key,
        PLINTH_RUN_BACKGROUND_WORKERS="true" if background_workers else "false",
        PLINTH_RECONCILE_INTERVAL_S="0.5",
        PYTHONPATH=str(REPO_ROOT),
    )
    log = state_dir / "control_plane.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
    except BaseException:
        _stop(proc)
        raise
    return proc, RunningControlPlane(url=url, api_key=api_key, state_dir=state_dir)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGTERM: the control plane stops its replicas (child processes) before exiting.
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    """The real control plane (`python -m control_plane`) on a free loopback port.

    Background workers are off: deployments stay BUILDING, which is all the client and most
    CLI tests need to exercise every management call.
    """
    pytest.importorskip("control_plane.app", reason="control plane app not available")
    proc, running = _start_control_plane(
        tmp_path_factory.mktemp("cp-state"), background_workers=False
    )
    try:
        yield running
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def live_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    """The real control plane with its build worker and reconciler on: pushes build, replicas
    (local processes) start, deployments become ACTIVE or FAILED."""
    pytest.importorskip("control_plane.app", reason="control plane app not available")
    proc, running = _start_control_plane(
        tmp_path_factory.mktemp("live-cp-state"), background_workers=True
    )
    try:
        yield running
    finally:
        _stop(proc)
