"""`plinth up` as a subprocess: it starts the platform, writes cli.json, and other commands
find the platform through it with no flags; Ctrl-C (SIGINT) stops everything."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.servers import free_port

RunCli = Callable[..., subprocess.CompletedProcess[str]]
STARTUP_TIMEOUT_S = 90.0

pytestmark = pytest.mark.integration


def test_up_then_commands_use_cli_json(
    cli_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    cp_port, gw_port = free_port(), free_port()
    command = [sys.executable, "-m", "plinth.cli.main", "up"]
    command += ["--port", str(cp_port), "--gateway-port", str(gw_port)]
    log = (tmp_path / "up.log").open("wb")
    started: list[int] = []
    proc = subprocess.Popen(command, env=cli_env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (state / "cli.json").exists():
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "plinth up wrote no cli.json in time"
            time.sleep(0.2)
        saved = json.loads((state / "cli.json").read_text())
        assert saved["control_plane_url"] == f"http://127.0.0.1:{cp_port}"
        assert (state / "cli.json").stat().st_mode & 0o077 == 0
        started += list(saved["pids"].values())
        models = run_cli("models")
        assert models.returncode == 0, models.stderr
        assert "models" in models.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    assert proc.returncode == 0, (tmp_path / "up.log").read_text()
    # Ctrl-C stopped the control plane and the gateway too, not just `plinth up` itself.
    _gone, alive = psutil.wait_procs(
        [p for p in map(_process_or_none, started) if p is not None], timeout=15
    )
    assert alive == []


def _process_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
