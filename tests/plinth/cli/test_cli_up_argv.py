"""No secret on a command line: every process `plinth up` starts (and `plinth up` itself) has
neither the internal token nor the admin API key in /proc/<pid>/cmdline, which `ps` shows to
every user of the host. They travel through inherited environment and 0600 files instead."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.servers import free_port

STARTUP_TIMEOUT_S = 90.0

pytestmark = pytest.mark.integration


def _cmdline(pid: int) -> str:
    # The raw file, not psutil's parsing: what `ps` and any other user of the host read.
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_no_child_of_plinth_up_has_a_secret_in_its_cmdline(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    command = [sys.executable, "-m", "plinth.cli.main", "up"]
    command += ["--port", str(free_port()), "--gateway-port", str(free_port())]
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=cli_env, cwd=tmp_path, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not (state / "cli.json").exists():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "plinth up wrote no cli.json in time"
                time.sleep(0.2)
            saved = json.loads((state / "cli.json").read_text())
            secrets = {
                "internal token": (state / "internal_token").read_text().strip(),
                "admin API key": saved["api_key"],
            }
            assert all(len(value) > 8 for value in secrets.values())
            processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
            # The control plane and the gateway at least: the check must see real children.
            assert len(processes) >= 3, [_cmdline(p.pid) for p in processes]
            for process in processes:
                cmdline = _cmdline(process.pid)
                for what, value in secrets.items():
                    assert value not in cmdline, f"the {what} is in the argv of pid {process.pid}"
            # The gateway is healthy only once it has read the routing table with the token it
            # now takes from its environment.
            assert httpx.get(saved["gateway_url"] + "/healthz", timeout=5.0).status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
